"""The landing sensor, evaluated on a real instance: a file whose name is no day of the partitions is
quarantined with its reason, and the tick still asks for every well-named file."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from harness.replay import replay
from harness.ticks import run_sensor_requests, tick_sensor
from conftest import weather_platform

SENSOR = "weather_landing"
RAW = dg.AssetKey(["weather", "raw_weather"])


@pytest.fixture(scope="module")
def defs(assay_home, instance, tmp_path_factory):
    with weather_platform(tmp_path_factory.mktemp("uc"), lambda spec: None) as (defs, _):
        yield defs


def test_a_misnamed_landing_file_is_quarantined_with_a_reason_and_the_other_files_are_requested(
        defs, instance, landing, weather_spec):
    replay(weather_spec, landing, date(2013, 4, 1), 2)
    folder = landing.path_for("weather", "weather", "2013-04-01").parent
    good = (folder / "2013-04-01.csv").read_bytes()
    for name in ("2013-02-30.csv", "weather-2013-04-03.csv", "2014-01-01.csv", "20130405.csv"):
        (folder / name).write_bytes(good)

    requests, cursor, _ = tick_sensor(defs, instance, SENSOR, None)

    assert [(r.partition_key, r.asset_selection) for r in requests] == [("2013-04-01", [RAW]), ("2013-04-02", [RAW])]
    assert sorted(p.name for p in folder.glob("*.csv")) == ["2013-04-01.csv", "2013-04-02.csv"]
    for stem in ("2013-02-30", "weather-2013-04-03", "2014-01-01", "20130405"):
        [reason] = landing.quarantined("weather", "weather", stem)
        assert "is not a day of the partitions" in reason["reason"] and "2013-01-01 to 2013-12-31" in reason["reason"]
    assert all(run.success for run in run_sensor_requests(defs, instance, SENSOR, requests))

    (folder / "notes.csv").write_text("not a delivery\n")
    again, _, skipped = tick_sensor(defs, instance, SENSOR, cursor)  # the next tick does not fail either
    assert again == [] and "quarantined 1 misnamed" in skipped
    assert landing.quarantined("weather", "weather", "notes")


def test_a_dimension_file_with_another_name_is_quarantined(tmp_path, flights_spec):
    from automation.landing import scan

    folder = tmp_path / "flights" / "planes"
    folder.mkdir(parents=True)
    (folder / "planes.csv").write_text("tailnum\n")
    (folder / "planes_v2.csv").write_text("tailnum\n")
    _, changed, refused = scan(tmp_path, flights_spec, {})
    assert [(t, p) for t, p, _ in changed] == [("planes", None)]
    assert [(t, v.path.name) for t, v in refused] == [("planes", "planes_v2.csv")]
    assert "not this dimension's (planes.csv)" in refused[0][1].reason
