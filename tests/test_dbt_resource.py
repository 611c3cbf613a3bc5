"""The dbt resource reads dbt-core's version from the installed package instead of running
`dbt --version` before every run (a second dbt start-up per features run)."""

import subprocess
from importlib.metadata import version as installed_version

import dagster_dbt.core.resource
from packaging import version

from assay.settings import StateLayout
from resources.environments import build_resources


def test_the_dbt_resource_knows_its_version_without_starting_dbt(tmp_path, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError(f"dbt was started to ask its version: {args}")

    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", no_process)
    dbt = build_resources(StateLayout(tmp_path))["dbt"]
    assert dbt._cli_version == version.parse(installed_version("dbt-core"))


def test_the_version_it_reads_is_the_one_its_executable_reports(tmp_path):
    """The shortcut holds only while the executable is this environment's dbt-core."""
    dbt = build_resources(StateLayout(tmp_path))["dbt"]
    reported = subprocess.run([dbt.dbt_executable, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"installed: {dbt._cli_version}" in reported, reported
