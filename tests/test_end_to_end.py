"""A few real days through the whole graph, landing files to a frozen training set, on a real instance."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from harness.replay import replay
from definitions import current_definitions
from harness.runs import materialize_window
from assay.settings import REPO_ROOT
from cli.status import collect_status
from conftest import venv_bin

DAYS = [(date(2013, 1, 1) + timedelta(days=i)).isoformat() for i in range(6)]


@pytest.fixture(scope="module")
def defs(assay_home):
    return current_definitions()


@pytest.fixture(scope="module")
def built(defs, instance, landing, flights_spec):
    replay(flights_spec, landing, date(2013, 1, 1), len(DAYS))
    runs = materialize_window(defs, instance, flights_spec, DAYS, through="training_set")
    assert all(run.success for run in runs), [(r.what, r.partition) for r in runs if not r.success]
    return runs


def _latest(instance, *path) -> dg.AssetMaterialization:
    return instance.get_latest_materialization_event(dg.AssetKey(list(path))).asset_materialization


def test_the_window_builds_through_the_training_set(built, instance):
    assert [r.what for r in built] == ["raw dimensions", "dimension views", *["raw"] * len(DAYS), "features", "training set"]
    snapshot = _latest(instance, "flights", "training_set")
    path = Path(snapshot.metadata["snapshot"].value)
    digest = snapshot.metadata["sha256"].value
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest == path.stem
    assert snapshot.tags["dagster/data_version"] == digest
    frame = pl.read_parquet(path)
    assert frame.height == snapshot.metadata["dagster/row_count"].value > 4000
    assert set(frame["is_late"].unique()) == {0, 1}


def test_no_feature_is_known_only_after_departure(built, warehouse, flights_spec):
    with warehouse.reader() as connection:
        columns = {r[0] for r in connection.execute("DESCRIBE flights.flight_features").fetchall()}
    leaks = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}
    assert not leaks & columns
    assert not leaks & set(flights_spec.features.columns.numeric + flights_spec.features.columns.categorical)


def test_dbt_tests_ran_as_passing_blocking_checks(built, instance, defs):
    checks = [k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key.path == ["flights", "flight_features"]]
    names = {k.name for k in checks}
    assert "flight_features_point_in_time" in names
    for key in checks:
        record = instance.get_latest_asset_check_evaluation_record(key)
        assert record is not None and record.event.dagster_event.event_specific_data.passed, key.name
    assert all(spec.blocking for spec in defs.resolve_assets_def(dg.AssetKey(["flights", "flight_features"])).check_specs)


def test_rebuilding_the_features_and_snapshot_changes_nothing(built, defs, instance, flights_spec, warehouse):
    with warehouse.reader() as connection:
        before = connection.execute("SELECT count(*), count(DISTINCT flight_id) FROM flights.flight_features").fetchone()
    first = _latest(instance, "flights", "training_set").metadata["sha256"].value
    runs = materialize_window(defs, instance, flights_spec, DAYS[-2:], through="training_set")
    assert all(r.success for r in runs)
    with warehouse.reader() as connection:
        after = connection.execute("SELECT count(*), count(DISTINCT flight_id) FROM flights.flight_features").fetchone()
    assert after == before and after[0] == after[1]
    assert _latest(instance, "flights", "training_set").metadata["sha256"].value == first


def test_trailing_rates_use_only_earlier_days(built, warehouse):
    with warehouse.reader() as connection:
        first_day, later = connection.execute(
            """SELECT count(carrier_late_rate_28d) FILTER (WHERE flight_date = '2013-01-01'),
                      count(carrier_late_rate_28d) FILTER (WHERE flight_date = '2013-01-06')
               FROM flights.flight_features"""
        ).fetchone()
        worst = connection.execute(
            "SELECT max(late_rates_through - flight_date) FROM flights.flight_features"
        ).fetchone()[0]
    assert first_day == 0 and later > 0
    assert worst < 0


def test_assay_status_reports_assets_and_gates_as_json(built, assay_home):
    output = subprocess.run([venv_bin("assay"), "status", "--json"], capture_output=True, text=True, check=True)
    report = json.loads(output.stdout)["use_cases"]["flights"]
    states = {a["key"]: a for a in report["assets"]}
    assert states["flights/raw_flights"]["partitions_materialized"] == len(DAYS)
    assert states["flights/training_set"]["materialized"] and states["flights/training_set"]["fresh"]
    assert report["summary"]["gates_failed"] == 0
    assert {"asset": "flights/raw_flights", "check": "contract"}.items() <= next(
        g for g in report["gates"] if g["check"] == "contract" and g["asset"] == "flights/raw_flights").items()
    assert report["summary"]["gates_passed"] > 20


def test_every_flights_asset_through_the_training_set_is_materialized(built, defs, instance):
    assets = collect_status(defs, instance)["use_cases"]["flights"]["assets"]
    upstream = [a for a in assets if a["stage"] in ("raw", "staging", "features", "training_set")]
    assert len(upstream) >= 10 and all(a["materialized"] for a in upstream)
    assert not any(a["materialized"] for a in assets if a["stage"] in ("model", "champion", "deployment"))


def test_dagster_validates_the_workspace(assay_home):
    result = subprocess.run(
        [venv_bin("dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation successful" in result.stdout + result.stderr
