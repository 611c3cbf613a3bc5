"""dbt as the platform runs it: this environment's dbt-core, driven through dagster-dbt.

Two costs `DbtCliResource` pays before every dbt run, which Assay does not need (bench/foundation.py
times a day's features run with the stock resource and with this one; see bench/RESULTS.md):

- It asks the executable for its version (`dbt --version`, a second start-up of dbt, 1.5-2 s on 2
  cores), to choose between dbt-core and dbt Fusion. The answer is cached on the resource, but
  Dagster builds the resource afresh for each run. The executable here is always the dbt-core
  installed beside the platform (`dbt_executable` below), so its version is that package's.
- It loads dbt's adapter into the orchestrating process (about 1.2 s: dbt's config, the DuckDB
  adapter, its macros). Only `fetch_row_counts()` and `fetch_column_metadata()` use it, and Assay
  calls neither: row counts and schemas come from the raw assets and dbt's own tests.

Also what a dbt build of a use case is handed: a partition window as dbt vars, and which of its models
read only dimension tables (built apart, without days). The feature assets and benchmarks use both.
"""

from __future__ import annotations

import json
import sys
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging import version

from assay.settings import DBT_PROJECT_DIR
from assay.spec import UseCase


class InstalledDbtCli(DbtCliResource):
    """`DbtCliResource` for the dbt-core in this environment: its version from the package, and no
    adapter in this process (dbt itself, in its own process, still connects as before)."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(installed_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):
        return None


def installed_dbt() -> InstalledDbtCli:
    return InstalledDbtCli(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=str(Path(sys.executable).parent / "dbt"),
    )


def dbt_vars(window: dg.TimeWindow) -> dict[str, str]:
    """The partition range as dbt vars; end is exclusive, as in Dagster's time windows."""
    return {"start_date": window.start.date().isoformat(), "end_date": window.end.date().isoformat()}


def dimension_models(manifest_path, spec: UseCase) -> list[str]:
    """The use case's dbt models that read only dimension tables (no days), from the manifest."""
    manifest = json.loads(manifest_path.read_text())
    dimensions = {f"source.assay.{spec.name}.raw_{table}" for table in spec.dimension_tables}
    found = []
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or not node["original_file_path"].startswith(f"models/{spec.name}/"):
            continue
        upstream = set(node["depends_on"]["nodes"])
        if upstream and upstream <= dimensions:
            found.append(node["name"])
    return sorted(found)
