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
"""

from __future__ import annotations

import sys
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

from dagster_dbt import DbtCliResource
from packaging import version

from assay.settings import DBT_PROJECT_DIR


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
