"""Training-set snapshots: the feature rows of a use case's training window, read from the warehouse
and frozen as a Parquet file named by its sha256, the dataset version every later stage records.
The training-set asset (assets/training_set.py) makes one per materialization; benchmarks too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dagster as dg
import polars as pl

from assay import sql
from assay.spec import UseCase
from resources.warehouse import Warehouse


def training_columns(spec: UseCase) -> list[str]:
    f = spec.features
    return [f.entity, f.timestamp, *f.columns.numeric, *f.columns.categorical, f.target]


def read_training_window(warehouse: Warehouse, spec: UseCase) -> pl.DataFrame:
    """Rows of the last `window_days` days of features that have a known label."""
    f = spec.features
    columns = sql.identifiers(training_columns(spec))
    table = sql.table(spec.name, f.training_model)
    target, timestamp, entity = sql.identifier(f.target), sql.identifier(f.timestamp), sql.identifier(f.entity)
    with warehouse.reader() as connection:
        frame = connection.execute(
            f"""
            SELECT {columns} FROM {table}
            WHERE {target} IS NOT NULL
              AND {timestamp} > (SELECT max({timestamp}) FROM {table}) - INTERVAL (?) DAY
            ORDER BY {entity}
            """, [spec.training.window_days]
        ).pl()
    if frame.is_empty():
        raise dg.Failure(f"{spec.name}.{f.training_model} has no labelled rows yet: materialize the features first")
    return frame


def write_snapshot(frame: pl.DataFrame, folder: Path) -> tuple[Path, str]:
    """Write once, name by content: the same rows always give the same file and hash."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".snapshot.{os.getpid()}.partial"
    frame.write_parquet(partial, compression="zstd", statistics=False)
    digest = hashlib.sha256(partial.read_bytes()).hexdigest()
    target = folder / f"{digest}.parquet"
    os.replace(partial, target)
    return target, digest
