"""Where a release goes: one interface, one implementation per environment.

Locally each deployment environment (staging, production) is its own MLServer process on loopback;
on Kubernetes the same release is rendered to Seldon resources (resources/deployment/seldon/deployer.py).

The interface is what a progressive rollout needs and no more:
- `deploy` serves one version alone (a full release, or a rollback);
- `stage` serves a candidate beside the incumbent, for a shadow or canary step;
- `incumbent` says which version answers now;
- `withdraw` stops serving a use case in an environment (a failed release with nothing to restore);
- `inference_log` returns what an environment served on a day, for monitoring.
Each returns or works on an endpoint with `url`, `infer(name, body, version=None) -> (status, body)`
and `served() -> [Served]`, so the post-deploy and rollout gates run unchanged on either.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class Served:
    """One model version an endpoint serves, and where."""
    name: str
    version: str
    url: str


class Deployer(dg.ConfigurableResource):
    def deploy(self, registry, name: str, environment: str, version: str):
        """Serve `version` of use case `name` alone in `environment`; returns the endpoint."""
        raise NotImplementedError

    def stage(self, registry, name: str, environment: str, incumbent: str, candidate: str,
              step: str, weight: int):
        """Serve `candidate` beside `incumbent` for a rollout `step` ("shadow": it scores a mirror
        of the traffic, answers none; "canary": it answers `weight` percent); returns the endpoint."""
        raise NotImplementedError

    def incumbent(self, name: str, environment: str) -> str | None:
        """The version of `name` that answers traffic in `environment` now, or None."""
        raise NotImplementedError

    def withdraw(self, registry, name: str, environment: str) -> None:
        """Serve no version of `name` in `environment` (other use cases keep theirs)."""
        raise NotImplementedError

    def inference_log(self, name: str, environment: str, day: str) -> list[dict]:
        """The predictions `environment` served for `name` on `day` (serving/inference_log.py lines,
        each with its environment)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no inference log Assay can read yet")
