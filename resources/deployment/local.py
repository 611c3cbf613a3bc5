"""The local deployer: each deployment environment (staging, production) is its own MLServer process on
loopback (resources/deployment/model_server.py), behind resources/deployment/deployer.py's interface."""

from __future__ import annotations

from pathlib import Path

from resources.deployment.deployer import Deployer
from resources.deployment.model_server import LocalModelServer
from serving.inference_log import read_day

# Loopback ports of each environment's server (HTTP; gRPC and metrics take the next two).
DEFAULT_PORTS = {"staging": 8080, "production": 8090}


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

    def _serve(self, registry, name: str, environment: str, versions: list[str]) -> LocalModelServer:
        """Replace this use case's versions in the environment's server; other use cases keep theirs."""
        server = self.server(environment)
        keep = [(n, v) for n, v in server.staged() if n != name] if Path(server.root, "models").exists() else []
        server.serve(registry, sorted([*keep, *((name, str(v)) for v in versions)]))
        self._record_incumbent(environment, name, versions[0])
        return server

    def deploy(self, registry, name, environment, version):
        return self._serve(registry, name, environment, [str(version)])

    def stage(self, registry, name, environment, incumbent, candidate, step, weight):
        # Locally both versions load in one MLServer; the replayed traffic is split by the caller
        # (resources/deployment/rollout.py), as Seldon's Experiment splits it on Kubernetes.
        return self._serve(registry, name, environment, [str(incumbent), str(candidate)])

    def _incumbent_file(self, environment: str, name: str) -> Path:
        return Path(self.root) / environment / "incumbents" / name

    def _record_incumbent(self, environment: str, name: str, version: str) -> None:
        path = self._incumbent_file(environment, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{version}\n")

    def withdraw(self, registry, name, environment):
        server = self.server(environment)
        keep = [(n, v) for n, v in server.staged() if n != name] if Path(server.root, "models").exists() else []
        if keep:
            server.serve(registry, keep)
        else:  # nothing else to serve: no server
            server.stop()
            server.unstage_all_but(set())
        self._incumbent_file(environment, name).unlink(missing_ok=True)

    def incumbent(self, name, environment):
        path = self._incumbent_file(environment, name)
        if not path.exists() or self.server(environment).pid() is None:
            return None
        return path.read_text().strip() or None

    def inference_log(self, name, environment, day):
        lines = read_day(self.server(environment).inference_log, name, day)
        return [{**line, "environment": environment} for line in lines]

    def servers(self) -> dict[str, LocalModelServer]:
        return {environment: self.server(environment) for environment in self.ports}
