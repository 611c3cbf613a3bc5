"""Features: the use case's dbt models (staging and point-in-time features), as Dagster assets.

dbt does the SQL; dagster-dbt turns each model into an asset and each dbt test into a blocking
asset check. One dbt invocation builds a whole partition range (a single-run backfill), because
dbt's start-up costs more than a day's worth of SQL.
"""


import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from assay.spec import UseCase
from automation.conditions import follows_gated_partitions
from resources.warehouse import Warehouse


class UseCaseTranslator(DagsterDbtTranslator):
    """Maps dbt nodes onto the use case's asset keys: `models/<use case>/...` -> `<use case>/<model>`,
    and source `<use case>.raw_<table>` -> the raw asset `<use case>/raw_<table>`."""

    def __init__(self, spec: UseCase):
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_code_references=True))
        self.spec = spec

    def get_asset_key(self, props: Mapping[str, Any]) -> dg.AssetKey:
        if props["resource_type"] == "source":
            return dg.AssetKey([props["source_name"], props["name"]])
        return dg.AssetKey([props["fqn"][1], props["name"]])

    def get_group_name(self, props: Mapping[str, Any]) -> str:
        return f"{self.spec.name}_features"

    def get_owners(self, props: Mapping[str, Any]) -> list[str]:
        return [self.spec.owner]

    def get_tags(self, props: Mapping[str, Any]) -> Mapping[str, str]:
        stage = "features" if props["name"] in self.spec.features.dbt_models else "staging"
        return {**super().get_tags(props), "stage": stage, "use_case": self.spec.name}

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id.startswith("source."):
            return spec
        return spec.replace_attributes(
            freshness_policy=dg.FreshnessPolicy.time_window(fail_window=self.spec.freshness.features),
            # Features follow each raw day that loads and passed its data gates.
            automation_condition=follows_gated_partitions(),
        )


def dbt_vars(window: dg.TimeWindow) -> dict[str, str]:
    """The partition range as dbt vars; end is exclusive, as in Dagster's time windows."""
    return {"start_date": window.start.date().isoformat(), "end_date": window.end.date().isoformat()}


def build_feature_assets(
    spec: UseCase, project: DbtProject, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        # The use case's folder: its feature models, their staging, and what their tests refer to.
        select=f"path:models/{spec.name}",
        name=f"{spec.name}_features",
        partitions_def=partitions,
        dagster_dbt_translator=UseCaseTranslator(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def features(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        os.environ["ASSAY_WAREHOUSE_PATH"] = warehouse.path  # read by dbt_project/profiles.yml
        args = ["build", "--vars", json.dumps(dbt_vars(context.partition_time_window))]
        with warehouse.exclusive():
            yield from dbt.cli(args, context=context).stream()

    return features
