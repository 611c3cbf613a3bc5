"""Builds one use case's asset graph from its spec: the only place that knows the stage order."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtProject

from assay.spec import UseCase
from assets.deployment import build_deployments
from assets.features import build_feature_assets
from assets.ingest import build_raw_assets
from assets.models import build_models
from assets.monitoring import build_monitoring
from assets.training_set import build_training_set


def daily_partitions(spec: UseCase) -> dg.DailyPartitionsDefinition:
    # A fixed end date: the replayed year exists in full whatever today's date is.
    return dg.DailyPartitionsDefinition(
        start_date=spec.partitions.start.isoformat(), end_date=spec.partitions.end.isoformat()
    )


def build_use_case(spec: UseCase, dbt_project: DbtProject) -> list[dg.AssetsDefinition]:
    partitions = daily_partitions(spec)
    return [
        *build_raw_assets(spec, partitions),
        *build_feature_assets(spec, dbt_project, partitions),
        build_training_set(spec),
        *build_models(spec),
        *build_deployments(spec),
        *build_monitoring(spec, partitions),
    ]
