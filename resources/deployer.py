"""Where a release goes: one interface, one implementation per environment.

Locally each deployment environment (staging, production) is its own MLServer process on loopback;
on Kubernetes the same release plan is rendered to Seldon resources (resources/seldon.py).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from resources.serving import LocalModelServer

# Loopback ports of each environment's server (HTTP; gRPC and metrics take the next two).
DEFAULT_PORTS = {"staging": 8080, "production": 8090}


class Deployer(dg.ConfigurableResource):
    """Serves `version` of model `name` in `environment` and returns an endpoint to check it."""

    def deploy(self, registry, name: str, environment: str, version: str):
        raise NotImplementedError


class LocalDeployer(Deployer):
    root: str
    ports: dict[str, int] = DEFAULT_PORTS

    def server(self, environment: str) -> LocalModelServer:
        if environment not in self.ports:
            raise ValueError(f"no local port for environment {environment!r}; known: {sorted(self.ports)} "
                             "(set ASSAY_SERVING_PORTS, e.g. staging=8080,production=8090)")
        port = self.ports[environment]
        return LocalModelServer(root=str(Path(self.root) / environment), http_port=port,
                                grpc_port=port + 1, metrics_port=port + 2)

    def deploy(self, registry, name, environment, version):
        """Replace this use case's model in the environment's server; other use cases keep theirs."""
        server = self.server(environment)
        keep = [(n, v) for n, v in server.staged() if n != name] if Path(server.root, "models").exists() else []
        server.serve(registry, sorted([*keep, (name, str(version))]))
        return server

    def servers(self) -> dict[str, LocalModelServer]:
        return {environment: self.server(environment) for environment in self.ports}
