"""Dimension tables have no days: their views follow them, and a new dimension file never makes
automation ask for every day of the year."""

from __future__ import annotations

from datetime import date

import dagster as dg

from harness.replay import replay
from definitions import current_definitions
from harness.ticks import run_sensor_requests, tick_automation, tick_sensor
from conftest import only_use_case

FEATURES = dg.AssetKey(["flights", "flight_features"])
PLANES_VIEW = dg.AssetKey(["flights", "stg_flights__planes"])


def test_the_first_day_with_its_dimension_files_builds_that_day_only(assay_home, instance, landing, flights_spec,
                                                                      tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_USECASES_DIR", str(only_use_case(tmp_path, "flights")))
    defs = current_definitions()
    _, _, cursor = tick_automation(defs, instance)  # the daemon runs before anything lands
    replay(flights_spec, landing, date(2013, 1, 1), 1)
    requests, _, _ = tick_sensor(defs, instance, "flights_landing", None)
    assert all(r.success for r in run_sensor_requests(defs, instance, "flights_landing", requests))

    result, runs, cursor = tick_automation(defs, instance, cursor)
    assert result.get_requested_partitions(PLANES_VIEW) == {None}
    assert result.get_requested_partitions(FEATURES) == set()  # waits for the views' checks, not 365 days
    assert all(r.success for r in runs)

    result, runs, _ = tick_automation(defs, instance, cursor)  # the next tick, half a minute later
    assert result.get_requested_partitions(FEATURES) == {"2013-01-01"}
    assert [r.success for r in runs] == [True]
