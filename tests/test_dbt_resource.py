"""The dbt resource reads dbt-core's version from the installed package instead of running
`dbt --version` before every run, and loads no dbt adapter into the orchestrating process."""

import subprocess
from importlib.metadata import version as installed_version

import dagster_dbt.core.resource
from dagster_dbt import DbtCliResource
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


def _listing(dbt, tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))  # read by profiles.yml
    manifest = f"{dbt.project_dir}/target/manifest.json"
    invocation = dbt.cli(["ls", "--select", "path:models/flights"], manifest=manifest, target_path=tmp_path / "t")
    listed = [event for event in invocation.stream_raw_events()]
    assert invocation.is_successful() and listed
    return invocation


def test_a_dbt_run_loads_no_adapter_into_the_orchestrating_process(tmp_path, monkeypatch):
    ours = build_resources(StateLayout(tmp_path))["dbt"]
    assert _listing(ours, tmp_path, monkeypatch).adapter is None
    stock = DbtCliResource(project_dir=ours.project_dir, profiles_dir=ours.profiles_dir, dbt_executable=ours.dbt_executable)
    assert _listing(stock, tmp_path, monkeypatch).adapter is not None  # what the stock resource costs
