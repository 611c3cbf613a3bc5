"""Reading a landing file against its table's contract, and the data gates on what was read.

Two kinds of failure, deliberately kept apart:
- a *contract violation* (the file is not what the upstream system promised: columns, types,
  unparsable or truncated rows, a null in a non-nullable column, a value outside its range or
  accepted values, duplicates, rows of another day) means the file cannot be loaded at all; it goes
  to quarantine and nothing stored changes;
- a *gate failure* (volume, null rates) is a property of the whole partition: the data is
  well-formed but suspicious; it is stored, and the failed blocking check keeps it from flowing
  downstream. The value_ranges gate re-checks the stored rows' values (it passes on every file the
  contract let through; it is kept so a rule that only a gate holds still shows in the graph).

Values: the table's null markers (empty, NA, NULL, NaN by default) are nulls in every column type;
timestamps are ISO 8601, with an offset or `Z`, or without one and then in the use case's
timezone, and are stored as naive UTC; dates are ISO 8601 dates.

Pure functions on Polars frames: no Dagster, no DuckDB, so they are cheap to test and to reuse from
the CLI.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from statistics import median
from zoneinfo import ZoneInfo

import polars as pl

from assay import sql
from assay.spec import Column, Table

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # UTC, as the landing zone writes timestamps
POLARS_TYPES = {"int": pl.Int64, "float": pl.Float64, "string": pl.String, "timestamp": pl.Datetime("us"),
                "date": pl.Date}
DUCKDB_TYPES = {"int": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "timestamp": "TIMESTAMP",
                "date": "DATE"}
UTC = ZoneInfo("UTC")
BOM = "\ufeff"
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8


# The blocking checks on every raw partition: the contract itself, then the data gates on what was stored.
DATA_GATES = {
    "contract": "The landing file has the contract's columns and types, parses completely, has nulls only "
    "where allowed, every value within its range and accepted values, no duplicate keys and only rows of "
    "its own day. A failing file is quarantined and nothing stored changes.",
    "volume": "The partition's row count is within the contract's ratio of the trailing median: "
    "protects against a partial or doubled delivery.",
    "null_rates": "No column has more nulls than the contract allows: protects features from a "
    "silently broken upstream field.",
    "value_ranges": "Every stored value lies within the contract's range or accepted values: protects "
    "against unit changes and sentinel values. The contract refuses such a file before it is stored; "
    "this check records that the stored rows hold the rule.",
}

def raw_table_name(use_case: str, table: str) -> str:
    """Where a use case's raw table lives in the warehouse (`<use case>.raw_<table>`)."""
    return f"{use_case}.raw_{table}"


def raw_table_sql(use_case: str, table: str) -> str:
    """The raw table as SQL names it, quoted."""
    return sql.table(*raw_table_name(use_case, table).split("."))


class ContractViolation(ValueError):
    """A landing file that breaks its contract; says which file, row (line in the file) and field."""

    def __init__(self, path: Path, reason: str, *, line: int | None = None, column: str | None = None):
        self.path, self.reason, self.line, self.column = path, reason, line, column
        where = [str(path)]
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"field {column!r}")
        super().__init__(f"{', '.join(where)}: {reason}")

    def as_metadata(self) -> dict[str, object]:
        return {"file": str(self.path), "line": self.line, "field": self.column, "reason": self.reason}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _not_utf8(path: Path, raw: bytes, error: UnicodeDecodeError) -> ContractViolation:
    """The violation for a file that is not UTF-8, naming the line and field of the first bad byte."""
    reason = f"not UTF-8 text: byte 0x{raw[error.start]:02x} at offset {error.start}"
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix(BOM)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    try:
        for row in reader:
            for index, value in enumerate(row):
                if _UNDECODABLE.search(value):
                    if header is None:
                        return ContractViolation(path, f"{reason}, in header column {index + 1}", line=1)
                    name = header[index] if index < len(header) else None
                    return ContractViolation(path, reason, line=reader.line_num, column=name)
            if header is None:
                header = row
    except csv.Error:
        pass  # the structure breaks before the bad byte: its physical line is the best we can say
    return ContractViolation(path, reason, line=raw.count(b"\n", 0, error.start) + 1)


def _split_rows(path: Path, raw: bytes, expected: list[str]) -> list[list[str]]:
    """Structural parse with exact line numbers; Polars' reader silently pads short rows."""
    if not raw.strip():
        raise ContractViolation(path, "the file is empty")
    if not raw.endswith(b"\n"):
        lines = raw.count(b"\n") + 1
        raise ContractViolation(path, "the file is truncated: its last line has no line ending", line=lines)
    try:
        text = raw.decode("utf-8")  # not "utf-8-sig": its error offsets would not count the mark
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, raw, exc) from None
    # A byte-order mark (Excel and other Windows tools write one) is not part of the first column's name.
    text = text.removeprefix(BOM)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        missing = [c for c in expected if c not in header]
        extra = [c for c in header if c not in expected]
        if missing:
            raise ContractViolation(path, f"missing columns {missing}", line=1, column=missing[0])
        if extra:
            raise ContractViolation(path, f"columns not in the contract {extra}", line=1, column=extra[0])
        if len(set(header)) != len(header):
            raise ContractViolation(path, "a column appears twice in the header", line=1)
        rows = [header]
        for row in reader:
            if len(row) != len(header):
                raise ContractViolation(
                    path, f"unparsable row: {len(row)} fields where the header has {len(header)}",
                    line=reader.line_num,
                )
            rows.append(row)
    except csv.Error as exc:
        raise ContractViolation(path, f"unparsable row: {exc}", line=reader.line_num) from None
    if len(rows) == 1:
        raise ContractViolation(path, "the file has a header but no rows", line=1)
    return rows


def _parse_date(text: str, zone: ZoneInfo) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date (ISO 8601, like 2013-01-31)") from None


def _parse_timestamp(text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 timestamp as naive UTC; one without an offset is wall-clock time in `zone`."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid timestamp (ISO 8601, like 2013-01-31T05:00:00Z)") from None
    try:
        if parsed.tzinfo is None:
            local = parsed.replace(tzinfo=zone)
            # A wall-clock time the clocks skipped (spring forward) names no instant; an ambiguous one
            # (fall back) is read as the first of its two instants.
            if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != parsed:
                raise ValueError(f"{text!r} does not exist in {zone.key} (the clocks skipped it)")
            parsed = local
        return parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # year 1 or 9999 moved across a year boundary by its offset
        raise ValueError(f"{text!r} is outside the timestamps that can be stored") from None


def parse_values(values: pl.Series, column_type: str, timezone: str = "UTC") -> tuple[pl.Series, dict[str, str]]:
    """Text (null markers already made nulls) typed as `column_type`: (the typed values with null where
    a value did not parse, {unparsable text: why} where a reason better than "not a valid <type>" is known)."""
    if column_type == "string":
        return values, {}
    if column_type in ("int", "float"):
        return values.cast(POLARS_TYPES[column_type], strict=False), {}
    parse, zone = {"date": _parse_date, "timestamp": _parse_timestamp}[column_type], ZoneInfo(timezone)
    # Parsed once per distinct text: a day's file repeats each hour's timestamp hundreds of times.
    parsed, errors = {}, {}
    for text in values.drop_nulls().unique().to_list():
        try:
            parsed[text] = parse(text, zone)
        except ValueError as error:
            errors[text] = str(error)
    return values.replace_strict(parsed, default=None, return_dtype=POLARS_TYPES[column_type]), errors


def _typed(path: Path, frame: pl.DataFrame, table: Table, timezone: str) -> pl.DataFrame:
    typed = {}
    for name, column in table.columns.items():
        text = frame[name].str.strip_chars()
        is_null = text.is_in(pl.Series(table.null_markers_of(name), dtype=pl.String).implode())
        if not column.nullable and is_null.any():
            row = int(is_null.arg_max())
            raise ContractViolation(path, f"null ({frame[name][row]!r}) in a non-nullable column",
                                    line=row + 2, column=name)
        values = frame[name] if column.type == "string" else text
        values, errors = parse_values(pl.select(pl.when(is_null).then(None).otherwise(values)).to_series(),
                                      column.type, timezone)
        unparsed = ~is_null & values.is_null()
        if column.type == "float":
            # "nan" or "inf" that is not a declared null marker is not a measurement
            unparsed = unparsed | (values.is_nan() | values.is_infinite()).fill_null(False)
        if unparsed.any():
            row = int(unparsed.arg_max())
            raise ContractViolation(
                path, errors.get(text[row], f"{frame[name][row]!r} is not a valid {column.type}"),
                line=row + 2, column=name,
            )
        typed[name] = values.alias(name)
    return pl.DataFrame(typed)


def _outside(values: pl.Series, column: Column) -> tuple[pl.Series, pl.Series]:
    """(outside min/max, not an accepted value) masks of one column; nulls are neither."""
    outside = pl.Series([False] * len(values))
    if column.min is not None:
        outside = outside | (values < column.min).fill_null(False)
    if column.max is not None:
        outside = outside | (values > column.max).fill_null(False)
    unaccepted = pl.Series([False] * len(values))
    if column.accepted_values is not None:
        unaccepted = (~values.is_in(column.accepted_values)).fill_null(False)
    return outside, unaccepted


def _within_contract(path: Path, typed: pl.DataFrame, table: Table) -> None:
    """Range and accepted-value rules hold row by row, before anything is stored: a value outside
    them is a broken promise of the upstream system, like a wrong type, not a statistical doubt."""
    for name, column in table.columns.items():
        outside, unaccepted = _outside(typed[name], column)
        bad = outside | unaccepted
        if bad.any():
            row = int(bad.arg_max())
            value = typed[name][row]
            reason = (f"{value!r} is outside the contract's range {column.min}..{column.max}" if outside[row]
                      else f"{value!r} is not one of the accepted values {column.accepted_values}")
            raise ContractViolation(path, reason, line=row + 2, column=name)


def partition_dates(frame: pl.DataFrame, table: Table, timezone: str = "UTC") -> pl.Series:
    """Each row's day, from [year, month, day], a date column, or a (naive UTC) timestamp's day in `timezone`."""
    if len(table.date_columns) == 3:
        return frame.select(pl.date(*table.date_columns)).to_series()
    name = table.date_columns[0]
    if table.columns[name].type == "date":
        return frame[name]
    return frame[name].dt.replace_time_zone("UTC").dt.convert_time_zone(timezone).dt.date()


def read_landing_file(path: Path, table: Table, partition: date | None, timezone: str = "UTC") -> pl.DataFrame:
    """Parse and type a landing file, or raise ContractViolation naming file, line and field.
    `timezone` is the use case's: the zone of timestamps without an offset, and of a timestamp's day."""
    expected = list(table.columns)
    rows = _split_rows(path, path.read_bytes(), expected)
    header, body = rows[0], rows[1:]
    frame = pl.DataFrame(body, schema=header, orient="row").select(expected)
    typed = _typed(path, frame, table, timezone)
    _within_contract(path, typed, table)

    rows_of_key = typed.select(table.key).with_row_index("_row").with_columns(
        pl.col("_row").min().over(table.key).alias("_first"))
    repeats = rows_of_key.filter(pl.col("_row") != pl.col("_first"))
    if repeats.height:
        row, first = int(repeats["_row"][0]), int(repeats["_first"][0])
        key = {k: typed[k][row] for k in table.key}
        raise ContractViolation(path, f"duplicate key {key}, first at line {first + 2}",
                                line=row + 2, column=",".join(table.key))

    if partition is not None and table.date_columns:
        row_dates = partition_dates(typed, table, timezone)
        wrong = row_dates != partition
        if wrong.any():
            row = int(wrong.arg_max())
            raise ContractViolation(
                path, f"row dated {row_dates[row]} in the file for partition {partition}",
                line=row + 2, column=table.date_columns[0],
            )
    return typed


def content_hash(frame: pl.DataFrame, table: Table) -> str:
    """A hash of the data itself, independent of row order, column order and file formatting.

    Used as the Dagster data version of a raw partition, and recomputable later from the warehouse,
    which is what lets an audit tell whether a stored partition changed.
    """
    canonical = frame.select(list(table.columns)).sort(table.key)
    return hashlib.sha256(canonical.write_csv(datetime_format="%Y-%m-%dT%H:%M:%S").encode()).hexdigest()


@dataclass
class GateResult:
    name: str
    passed: bool
    description: str
    metadata: dict[str, object] = field(default_factory=dict)


def volume_gate(rows: int, table: Table, trailing_counts: list[int]) -> GateResult:
    volume = table.volume
    if volume is None or not trailing_counts:
        why = "no volume rule in the contract" if volume is None else "no trailing partitions to compare with yet"
        return GateResult("volume", True, why, {"rows": rows, "trailing_partitions": len(trailing_counts)})
    typical = median(trailing_counts)
    ratio = rows / typical if typical else float("inf")
    passed = volume.min_ratio <= ratio <= volume.max_ratio
    return GateResult(
        "volume", passed,
        f"{rows} rows is {ratio:.2f}x the median of the last {len(trailing_counts)} partitions "
        f"(allowed {volume.min_ratio}-{volume.max_ratio}x)",
        {"rows": rows, "trailing_median": float(typical), "ratio": round(ratio, 4),
         "min_ratio": volume.min_ratio, "max_ratio": volume.max_ratio},
    )


def null_rate_gate(frame: pl.DataFrame, table: Table) -> GateResult:
    rates = {name: frame[name].null_count() / max(frame.height, 1) for name in table.columns}
    breaches = {
        name: round(rates[name], 4)
        for name, column in table.columns.items()
        if column.max_null_rate is not None and rates[name] > column.max_null_rate
    }
    worst = max(rates, key=rates.get)
    return GateResult(
        "null_rates", not breaches,
        f"null rate above the contract's limit in {sorted(breaches)}" if breaches
        else f"every null rate within its limit (highest: {worst} {rates[worst]:.1%})",
        {"breaches": breaches, "null_rates": {k: round(v, 4) for k, v in rates.items() if v}},
    )


def value_range_gate(frame: pl.DataFrame, table: Table) -> GateResult:
    problems: dict[str, str] = {}
    for name, column in table.columns.items():
        outside, unaccepted = _outside(frame[name], column)
        bad = outside | unaccepted
        if bad.any():
            row = int(bad.arg_max())
            problems[name] = (
                f"{int(bad.sum())} value(s) outside the contract, first {frame[name][row]!r} at line {row + 2}"
            )
    return GateResult(
        "value_ranges", not problems,
        "; ".join(f"{k}: {v}" for k, v in problems.items()) if problems else "every value within the contract",
        {"violations": problems},
    )


def data_gates(frame: pl.DataFrame, table: Table, trailing: list[int]) -> list[GateResult]:
    """The gates a stored partition must pass besides its contract; `trailing` is what
    `resources.raw_tables.store_partition` returns (the earlier days' row counts the volume gate compares with)."""
    return [volume_gate(frame.height, table, trailing), null_rate_gate(frame, table), value_range_gate(frame, table)]
