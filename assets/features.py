"""Features: the use case's dbt models (staging and point-in-time features), as Dagster assets.

dbt does the SQL; dagster-dbt turns each model into an asset and each dbt test into a blocking
asset check. One dbt invocation builds a whole partition range (a single-run backfill), because
dbt's start-up costs more than a day's worth of SQL.

Two sets of assets per use case: the daily models (partitioned like the raw days they read) and the
staging views over dimension tables, which have no days. Were the dimension views partitioned too,
a new planes file would make every day of the year "missing" a planes view, and automation would
ask for all of them at once.

A use case's models are those under `models/<use case>/` (their first folder also names their schema:
macros/generate_schema_name.sql). A spec naming a model that is not there, or a use case whose folder
holds no models, fails when the code location loads, naming the spec file and the model.
"""


import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from assay import asset_keys
from assay.settings import usecases_dir
from assay.spec import SpecError, UseCase
from automation.conditions import follows_gated_partitions, follows_gated_upstream
from resources.dbt import dbt_vars, dimension_models
from resources.warehouse import Warehouse


class UseCaseTranslator(DagsterDbtTranslator):
    """Maps dbt nodes onto the use case's asset keys: `models/<use case>/...` -> `<use case>/<model>`,
    and source `<use case>.raw_<table>` -> the raw asset `<use case>/raw_<table>`."""

    def __init__(self, spec: UseCase, dimension_models: frozenset[str] = frozenset()):
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_code_references=True))
        self.spec = spec
        self.dimension_models = dimension_models

    def get_asset_key(self, props: Mapping[str, Any]) -> dg.AssetKey:
        if props["resource_type"] == "source":
            return asset_keys.raw(props["source_name"], props["name"].removeprefix("raw_"))
        return asset_keys.dbt_model(props["fqn"][1], props["name"])

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
            # Features follow each raw day that loads and passed its data gates; the dimension views
            # follow their (undated) tables.
            automation_condition=(follows_gated_upstream() if spec.key.path[-1] in self.dimension_models
                                  else follows_gated_partitions()),
        )


def check_feature_models(manifest_path, spec: UseCase) -> None:
    """The spec's dbt models exist in its folder (models/<use case>/), and the folder has models: found
    when the code location loads, not when the first feature run cannot select anything."""
    manifest = json.loads(manifest_path.read_text())
    spec_file = usecases_dir() / f"{spec.name}.yaml"
    folder = f"models/{spec.name}/"
    found = {node["name"] for node in manifest["nodes"].values()
             if node["resource_type"] == "model" and node["original_file_path"].startswith(folder)}
    if not found:
        raise SpecError(f"{spec_file}: features.dbt_models: use case {spec.name!r} has no dbt models: "
                        f"dbt_project/{folder} holds none in {manifest_path} (add them, then `assay dbt-parse`)")
    missing = [m for m in spec.features.dbt_models if m not in found]
    if missing:
        raise SpecError(f"{spec_file}: features.dbt_models: {', '.join(repr(m) for m in missing)} "
                        f"not among the dbt models of dbt_project/{folder}: {sorted(found)}")


def build_feature_assets(
    spec: UseCase, project: DbtProject, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    check_feature_models(project.manifest_path, spec)
    dimensions = dimension_models(project.manifest_path, spec)
    translator = UseCaseTranslator(spec, frozenset(dimensions))

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        # The use case's folder: its feature models, their staging, and what their tests refer to.
        select=f"path:models/{spec.name}",
        exclude=" ".join(dimensions),
        name=f"{spec.name}_features",
        partitions_def=partitions,
        dagster_dbt_translator=translator,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def features(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        os.environ["ASSAY_WAREHOUSE_PATH"] = warehouse.path  # read by dbt_project/profiles.yml
        args = ["build", "--vars", json.dumps(dbt_vars(context.partition_time_window))]
        with warehouse.exclusive():
            yield from dbt.cli(args, context=context).stream()

    if not dimensions:
        return [features]

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        select=" ".join(dimensions),
        name=f"{spec.name}_dimension_views",
        dagster_dbt_translator=translator,
    )
    def dimension_views(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        os.environ["ASSAY_WAREHOUSE_PATH"] = warehouse.path
        with warehouse.exclusive():
            # cautious: the daily models' tests that refer to these views (relationships) run with
            # the daily models, not here, where those tables may not exist yet
            yield from dbt.cli(["build", "--indirect-selection", "cautious"], context=context).stream()

    return [features, dimension_views]
