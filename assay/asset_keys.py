"""Every asset key of a use case, spelled once: each is `<use case>/<asset>`.

The assets take their keys from here, and so do the sensors, the harness, the CLI and the benchmarks
that ask for them: a key cannot be renamed on one side only. Each function takes the spec or only
the use case's name (what the CLI's status and audit know).
"""

from __future__ import annotations

import dagster as dg

from assay.spec import UseCase


def _key(use_case: UseCase | str, name: str) -> dg.AssetKey:
    return dg.AssetKey([use_case.name if isinstance(use_case, UseCase) else use_case, name])


def raw(use_case: UseCase | str, table: str) -> dg.AssetKey:
    """A spec table loaded from the landing zone (assets/ingest.py); dbt's source `<use case>.raw_<table>`."""
    return _key(use_case, f"raw_{table}")


def dbt_model(use_case: UseCase | str, model: str) -> dg.AssetKey:
    """A dbt model under `models/<use case>/`: a staging view or a feature table (assets/features.py)."""
    return _key(use_case, model)


def training_set(use_case: UseCase | str) -> dg.AssetKey:
    return _key(use_case, "training_set")


def model(use_case: UseCase | str, family: str) -> dg.AssetKey:
    """The candidate of one model family (assets/models.py)."""
    return _key(use_case, f"model_{family}")


def champion(use_case: UseCase | str) -> dg.AssetKey:
    return _key(use_case, "champion")


def deployment(use_case: UseCase | str, environment: str) -> dg.AssetKey:
    return _key(use_case, f"deployment_{environment}")


def inference_log(use_case: UseCase | str) -> dg.AssetKey:
    return _key(use_case, "inference_log")


def drift(use_case: UseCase | str) -> dg.AssetKey:
    return _key(use_case, "drift")


def live_performance(use_case: UseCase | str) -> dg.AssetKey:
    return _key(use_case, "live_performance")
