"""Partition dates from year/month/day, one `date` column or one `timestamp` column (its day in the use
case's timezone), validated at spec load and loaded end to end by the raw asset into DuckDB."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
import pytest
import yaml

from harness.replay import replay
from assay.settings import REPO_ROOT
from assay.spec import SpecError, load_spec
from conftest import weather_platform, why_failed

RAW_WEATHER = dg.AssetKey(["weather", "raw_weather"])
RAW_READINGS = dg.AssetKey(["weather", "raw_readings"])
READINGS = {
    "description": "Daily river levels, dated by a date column.",
    "partitioned": True,
    "date_columns": ["reading_date"],
    "key": ["station", "reading_date"],
    "columns": {"station": {"type": "string"}, "reading_date": {"type": "date"},
                "level": {"type": "float", "nullable": True, "min": 0, "max": 50},
                "read_at": {"type": "timestamp", "nullable": True}},
}


def _spec_file(tmp_path, edit) -> object:
    spec = yaml.safe_load((REPO_ROOT / "usecases" / "weather.yaml").read_text())
    edit(spec)
    path = tmp_path / "weather.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_an_unknown_timezone_fails_at_load_naming_the_field(tmp_path):
    with pytest.raises(SpecError, match=r"timezone: .*'Mars/Olympus' is not an IANA time zone name"):
        load_spec(_spec_file(tmp_path, lambda s: s.update(timezone="Mars/Olympus")))
    assert load_spec(_spec_file(tmp_path, lambda s: s.update(timezone="America/New_York"))).timezone == "America/New_York"
    assert load_spec(REPO_ROOT / "usecases" / "weather.yaml").timezone == "UTC"


@pytest.mark.parametrize(("date_columns", "message"), [
    (["temp"], "a single date column must be of type date or timestamp, not float"),
    (["origin", "year", "month"], "must be int columns"),
    (["year", "month"], "must be [year, month, day] or one date or timestamp column"),
])
def test_date_columns_must_be_year_month_day_or_one_date_or_timestamp_column(tmp_path, date_columns, message):
    with pytest.raises(SpecError) as error:
        load_spec(_spec_file(tmp_path, lambda s: s["tables"]["weather"].update(date_columns=date_columns)))
    assert "tables.weather" in str(error.value) and message in str(error.value)


def test_a_partition_date_column_cannot_be_nullable(tmp_path):
    def edit(spec):
        spec["tables"]["readings"] = {**READINGS, "columns": {**READINGS["columns"],
                                      "reading_date": {"type": "date", "nullable": True}}}
    with pytest.raises(SpecError, match="date_columns cannot be nullable"):
        load_spec(_spec_file(tmp_path, edit))


@pytest.fixture(scope="module")
def platform(assay_home, instance, tmp_path_factory):
    def edit(spec):
        spec["timezone"] = "America/New_York"  # the airports' local days, as year/month/day are
        spec["tables"]["weather"]["date_columns"] = ["time_hour"]
        spec["tables"]["readings"] = READINGS

    with weather_platform(tmp_path_factory.mktemp("uc"), edit) as (defs, spec):
        yield defs, spec


def _materialize(defs, instance, key, partition):
    return dg.materialize(assets=list(defs.assets), resources=defs.resources, instance=instance,
                          selection=[key], partition_key=partition, raise_on_error=False)


def test_a_table_dated_by_a_date_column_loads_end_to_end(platform, instance, landing, warehouse):
    defs, _ = platform
    path = landing.path_for("weather", "readings", "2013-01-02")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("station,reading_date,level,read_at\nA,2013-01-02,3.5,2013-01-02 08:00:00\n"
                    "B,2013-01-02,NA,NA\n")

    result = _materialize(defs, instance, RAW_READINGS, "2013-01-02")

    assert result.success, why_failed(result)
    with warehouse.reader() as connection:
        rows = connection.execute("SELECT station, reading_date, level, read_at, _partition "
                                  "FROM weather.raw_readings ORDER BY station").fetchall()
        kinds = dict(connection.execute("SELECT column_name, data_type FROM information_schema.columns "
                                        "WHERE table_schema = 'weather' AND table_name = 'raw_readings'").fetchall())
    day = date(2013, 1, 2)
    assert rows == [("A", day, 3.5, datetime(2013, 1, 2, 13), day), ("B", day, None, None, day)]
    assert kinds["reading_date"] == "DATE" and kinds["read_at"] == "TIMESTAMP"


def test_a_table_dated_by_a_timestamp_column_takes_its_days_in_the_use_case_timezone(
        platform, instance, landing, warehouse):
    defs, spec = platform
    weather_only = spec.model_copy(update={"tables": {"weather": spec.tables["weather"]}})
    landed = replay(weather_only, landing, date(2013, 1, 2), 1)
    # The last reading of the local day is after midnight UTC: dated in UTC, it would be refused.
    assert [entry.partition for entry in landed] == ["2013-01-02"]

    result = _materialize(defs, instance, RAW_WEATHER, "2013-01-02")

    assert result.success, why_failed(result)
    with warehouse.reader() as connection:
        first, last, days = connection.execute(
            "SELECT min(time_hour), max(time_hour), count(DISTINCT day) FROM weather.raw_weather "
            "WHERE _partition = '2013-01-02'").fetchone()
    assert (first, last, days) == (datetime(2013, 1, 2, 5), datetime(2013, 1, 3, 4), 1)
