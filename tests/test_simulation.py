"""A short replay through the same sensors and automation the daemon runs: the first model when the
window fills, served predictions logged and monitored, a retrain caused by measured drift and
rate-limited by the spec, and none while the latest data gates fail."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import dagster as dg
import pytest

from assets.monitoring import read_log_day
from harness.simulation import Simulation
from harness.ticks import run_sensor_requests, tick_sensor
from conftest import weather_platform

START = date(2013, 4, 1)
DAYS = 12


@pytest.fixture(scope="module")
def replayed(assay_home, instance, landing, tmp_path_factory):
    def edit(spec):
        spec["training"] = {"window_days": 7, "holdout_days": 2}  # a first model after a week, not two
        spec["monitoring"]["retrain_min_interval"] = "3d"
        spec["monitoring"]["min_rows"] = 50  # a day holds 72 readings
        spec["release"]["latency_p99_ms"] = 2000

    with weather_platform(tmp_path_factory.mktemp("uc"), edit) as (defs, weather):
        simulation = Simulation(defs, instance, weather)
        for offset in range(DAYS):
            simulation.run_day(START + timedelta(days=offset), landing)
        yield defs, weather, simulation


def _retrains(instance) -> list[dg.RunRecord]:
    return sorted(instance.get_run_records(dg.RunsFilter(tags={"assay/trigger": "retrain"})),
                  key=lambda r: r.dagster_run.tags["assay/data_day"])


def test_the_first_model_is_trained_when_the_window_fills_and_then_served(replayed, instance):
    defs, spec, simulation = replayed
    first = _retrains(instance)[0].dagster_run.tags
    assert first["assay/retrain_reason"] == "first_model"
    assert first["assay/data_day"] == (START + timedelta(days=spec.training.window_days - 1)).isoformat()
    assert defs.resources["deployer"].incumbent("weather", "staging") is not None
    assert all(r.success for day in simulation.timeline for r in day.runs if "raw" in " ".join(r.assets))


def test_every_served_prediction_lands_in_the_inference_log(replayed):
    defs, spec, simulation = replayed
    served_days = [d for d in simulation.timeline if d.requests]
    assert len(served_days) >= 3
    for day in served_days:
        log = read_log_day(defs.resources["warehouse"], spec, day.day)
        assert log.height == day.scored > 0
        assert log["event_time"].dt.date().cast(str).unique().to_list() == [day.day]
        assert set(json.loads(log["features"][0])) == {*spec.features.columns.numeric, *spec.features.columns.categorical}
        assert day.drift.startswith("drift:") and day.live.startswith("live v")


def test_a_retrain_is_caused_by_measured_drift_and_never_inside_the_minimum_interval(replayed, instance):
    _, spec, _ = replayed
    retrains = _retrains(instance)
    measured = [r.dagster_run.tags for r in retrains if r.dagster_run.tags["assay/retrain_reason"] != "first_model"]
    assert measured, "no retrain was triggered by drift or decay in these days"
    assert {t["assay/retrain_reason"] for t in measured} <= {"feature_drift", "prediction_drift", "live_performance"}
    assert all(float(t["assay/retrain_value"]) >= 0 and t["assay/retrain_threshold"] for t in measured)
    days = [date.fromisoformat(r.dagster_run.tags["assay/data_day"]) for r in retrains]
    assert all(later - earlier >= spec.monitoring.retrain_min_interval for earlier, later in zip(days, days[1:]))


def test_no_retrain_is_requested_while_the_latest_data_gates_fail(replayed, instance, landing):
    defs, spec, simulation = replayed
    bad_day = START + timedelta(days=DAYS)
    from harness.replay import replay

    replay(spec, landing, bad_day, 1)
    path = landing.path_for("weather", "weather", bad_day.isoformat())
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, *rows[:3], rows[3].rsplit(",", 2)[0]]) + "\n")
    requests, _, _ = tick_sensor(defs, instance, "weather_landing", simulation.cursors["weather_landing"])
    assert [r.success for r in run_sensor_requests(defs, instance, "weather_landing", requests)] == [False]

    cursor = json.loads(simulation.cursors["weather_retrain"])
    cursor.pop("evaluated_day"), cursor.pop("last_requested_at")  # as if the last day had never been judged
    requests, _, skipped = tick_sensor(defs, instance, "weather_retrain", json.dumps(cursor))
    assert requests == []
    assert "the latest data gates failed" in skipped and "weather/raw_weather:contract" in skipped
