"""The warehouse's inference log: a day reloads without duplicating, and drift reads a window of days."""

from __future__ import annotations

from assets.monitoring import read_log_day, store_log_day


def _line(day: str, i: int, version: str = "3") -> dict:
    return {"environment": "staging", "request_id": f"{day}-{i}", "entity_id": f"{day}-{i}",
            "model_version": version, "prediction": 0.1 * i, "latency_ms": 2.0,
            "event_time": f"{day}T12:00:0{i}+00:00", "features": {"temp": 30.0 + i, "origin": "EWR"}}


def test_reloading_a_day_replaces_its_rows(warehouse, flights_spec):
    store_log_day(warehouse, flights_spec, "2013-03-01", [_line("2013-03-01", i) for i in range(3)])
    store_log_day(warehouse, flights_spec, "2013-03-01", [_line("2013-03-01", i) for i in range(5)])

    assert read_log_day(warehouse, flights_spec, "2013-03-01").height == 5


def test_a_window_reads_the_days_ending_on_the_monitored_day_and_no_later_one(warehouse, flights_spec):
    for day, rows in (("2013-03-02", 2), ("2013-03-03", 3), ("2013-03-04", 4), ("2013-03-05", 6)):
        store_log_day(warehouse, flights_spec, day, [_line(day, i) for i in range(rows)])

    window = read_log_day(warehouse, flights_spec, "2013-03-04", days=2)

    assert window.height == 3 + 4
    assert sorted({str(d) for d in window["_partition"]}) == ["2013-03-03", "2013-03-04"]
    assert read_log_day(warehouse, flights_spec, "2013-03-04").height == 4
