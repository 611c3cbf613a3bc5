"""The raw tables in the warehouse: each created from its table's contract, with lineage columns, and
one partition (or a whole dimension) replaced in one transaction, so a rerun replaces and never
duplicates. The raw assets (assets/ingest.py) load through it, and so do benchmarks.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import polars as pl

from assay import sql
from assay.contract import DUCKDB_TYPES, raw_table_sql
from assay.spec import Table
from resources.warehouse import Warehouse

LINEAGE_COLUMNS = {"_landing_file": "VARCHAR", "_landing_sha256": "VARCHAR", "_loaded_at": "TIMESTAMP"}


def _create_table(connection, use_case: str, name: str, table: Table) -> None:
    columns = [f"{sql.identifier(c)} {DUCKDB_TYPES[col.type]}" for c, col in table.columns.items()]
    if table.partitioned:
        columns.append("_partition DATE NOT NULL")
    columns += [f"{c} {t}" for c, t in LINEAGE_COLUMNS.items()]
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {sql.identifier(use_case)}")
    connection.execute(f"CREATE TABLE IF NOT EXISTS {raw_table_sql(use_case, name)} ({', '.join(columns)})")


def _trailing_counts(connection, qualified: str, partition: date, days: int) -> list[int]:
    rows = connection.execute(
        f"SELECT count(*) FROM {qualified} WHERE _partition >= ? AND _partition < ? GROUP BY _partition",
        [partition - timedelta(days=days), partition],
    ).fetchall()
    return [r[0] for r in rows]


def store_partition(
    warehouse: Warehouse, use_case: str, name: str, table: Table, frame: pl.DataFrame,
    partition: date | None, landing_file: str, landing_sha256: str,
) -> list[int]:
    """Replace one partition (or the whole dimension) atomically; return the trailing counts."""
    qualified = raw_table_sql(use_case, name)
    stamped = frame.with_columns(
        *([pl.lit(partition).alias("_partition")] if table.partitioned else []),
        pl.lit(landing_file).alias("_landing_file"),
        pl.lit(landing_sha256).alias("_landing_sha256"),
        pl.lit(datetime.now(timezone.utc).replace(tzinfo=None)).alias("_loaded_at"),
    )
    with warehouse.writer() as connection:
        _create_table(connection, use_case, name, table)
        trailing = []
        if table.partitioned and table.volume:
            trailing = _trailing_counts(connection, qualified, partition, table.volume.trailing_days)
        connection.register("incoming", stamped.to_arrow())
        connection.execute("BEGIN TRANSACTION")
        try:
            if table.partitioned:
                connection.execute(f"DELETE FROM {qualified} WHERE _partition = ?", [partition])
            else:
                connection.execute(f"DELETE FROM {qualified}")
            connection.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM incoming")
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
    return trailing
