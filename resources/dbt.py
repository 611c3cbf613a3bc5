"""dbt as the platform runs it: this environment's dbt-core, driven through dagster-dbt.

`DbtCliResource` asks its executable for the version (`dbt --version`) before every invocation, to
choose flags for dbt-core or dbt Fusion. The answer is cached on the resource, but Dagster builds the
resource afresh for each run, so every run paid a second Python start-up of dbt (1.5-2 s on 2 cores,
a seventh of a daily increment). The executable here is always the dbt-core installed beside the
platform (`dbt_executable` below), so its version is that package's, read without a process.
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
    """`DbtCliResource` for the dbt-core in this environment; its version comes from the package."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(installed_version("dbt-core"))


def installed_dbt() -> InstalledDbtCli:
    return InstalledDbtCli(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=str(Path(sys.executable).parent / "dbt"),
    )
