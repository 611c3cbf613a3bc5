"""Reading a landing file against its table's contract, and the data gates on what was read.

Two kinds of failure, deliberately kept apart:
- a *contract violation* (the file is not what the upstream system promised: columns, types,
  unparsable or truncated rows, duplicates, rows of another day) means the file cannot be loaded
  at all; it goes to quarantine and nothing stored changes;
- a *gate failure* (volume, null rates, value ranges) means the data is well-formed but suspicious;
  it is stored, and the failed blocking check keeps it from flowing downstream.

Pure functions on Polars frames: no Dagster, no DuckDB, so they are cheap to test and to reuse from
the CLI.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from statistics import median

import polars as pl

from assay.spec import Table

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # UTC, as the upstream system writes `time_hour`
POLARS_TYPES = {"int": pl.Int64, "float": pl.Float64, "string": pl.String, "timestamp": pl.Datetime("us")}
DUCKDB_TYPES = {"int": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "timestamp": "TIMESTAMP"}


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


def _split_rows(path: Path, raw: bytes, expected: list[str]) -> list[list[str]]:
    """Structural parse with exact line numbers; Polars' reader silently pads short rows."""
    if not raw.strip():
        raise ContractViolation(path, "the file is empty")
    if not raw.endswith(b"\n"):
        lines = raw.count(b"\n") + 1
        raise ContractViolation(path, "the file is truncated: its last line has no line ending", line=lines)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractViolation(path, f"not UTF-8 text (byte {exc.start})") from None
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


def _typed(path: Path, frame: pl.DataFrame, table: Table) -> pl.DataFrame:
    casts = []
    for name, column in table.columns.items():
        text = pl.col(name).str.strip_chars()
        if column.type == "timestamp":
            casts.append(text.str.to_datetime(TIMESTAMP_FORMAT, strict=False, time_unit="us").alias(name))
        elif column.type == "string":
            casts.append(pl.col(name))
        else:
            casts.append(text.cast(POLARS_TYPES[column.type], strict=False).alias(name))
    typed = frame.select(casts)
    for name, column in table.columns.items():
        unparsed = frame[name].is_not_null() & (frame[name].str.strip_chars() != "") & typed[name].is_null()
        if unparsed.any():
            row = int(unparsed.arg_max())
            raise ContractViolation(
                path, f"{frame[name][row]!r} is not a valid {column.type}", line=row + 2, column=name
            )
        if not column.nullable and typed[name].null_count():
            row = int(typed[name].is_null().arg_max())
            raise ContractViolation(path, "empty value in a non-nullable column", line=row + 2, column=name)
    return typed


def read_landing_file(path: Path, table: Table, partition: date | None) -> pl.DataFrame:
    """Parse and type a landing file, or raise ContractViolation naming file, line and field."""
    expected = list(table.columns)
    rows = _split_rows(path, path.read_bytes(), expected)
    header, body = rows[0], rows[1:]
    frame = pl.DataFrame(body, schema=header, orient="row").select(expected)
    frame = frame.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in expected)
    typed = _typed(path, frame, table)

    duplicated = typed.select(pl.struct(table.key).is_duplicated()).to_series()
    if duplicated.any():
        row = int(duplicated.arg_max())
        key = {k: typed[k][row] for k in table.key}
        raise ContractViolation(path, f"duplicate key {key}", line=row + 2, column=",".join(table.key))

    if partition is not None and table.date_columns:
        year, month, day = table.date_columns
        row_dates = typed.select(pl.date(year, month, day).alias("d"))["d"]
        wrong = row_dates != partition
        if wrong.any():
            row = int(wrong.arg_max())
            raise ContractViolation(
                path, f"row dated {row_dates[row]} in the file for partition {partition}",
                line=row + 2, column=year,
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
        values = frame[name]
        outside = pl.Series([False] * frame.height)
        if column.min is not None:
            outside = outside | (values < column.min).fill_null(False)
        if column.max is not None:
            outside = outside | (values > column.max).fill_null(False)
        if column.accepted_values is not None:
            outside = outside | (~values.is_in(column.accepted_values)).fill_null(False)
        if outside.any():
            row = int(outside.arg_max())
            problems[name] = (
                f"{int(outside.sum())} value(s) outside the contract, first {values[row]!r} at line {row + 2}"
            )
    return GateResult(
        "value_ranges", not problems,
        "; ".join(f"{k}: {v}" for k, v in problems.items()) if problems else "every value within the contract",
        {"violations": problems},
    )
