"""The training set: the feature rows of the spec's training window, frozen as a Parquet snapshot.

A snapshot rather than a view, because a model must be reproducible after the warehouse moved on:
the file is named by its content hash, and that hash is the dataset version every later stage
(training, the registry, the audit) records.
"""


import hashlib
import os
from pathlib import Path

import dagster as dg
import polars as pl

from assay import sql
from assay.settings import state
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


def _label_summary(frame: pl.DataFrame, spec: UseCase) -> dict[str, float]:
    target = frame[spec.features.target]
    if spec.features.task == "binary_classification":
        return {"positive_rate": round(float(target.mean()), 4)}
    return {"target_mean": round(float(target.mean()), 4), "target_std": round(float(target.std()), 4)}


def build_training_set(spec: UseCase) -> dg.AssetsDefinition:
    features_key = dg.AssetKey([spec.name, spec.features.training_model])

    @dg.asset(
        key=[spec.name, "training_set"],
        deps=[features_key],
        description=f"Rows of `{spec.features.training_model}` from the last {spec.training.window_days} days "
        f"with a known `{spec.features.target}`, frozen as a Parquet snapshot named by its sha256.",
        group_name=f"{spec.name}_training",
        owners=[spec.owner],
        kinds={"parquet", "polars"},
        tags={"stage": "training_set", "use_case": spec.name},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=spec.freshness.training_set),
    )
    def training_set(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        frame = read_training_window(warehouse, spec)
        path, digest = write_snapshot(frame, state().snapshots / spec.name / "training_set")
        timestamps = frame[spec.features.timestamp]
        context.log.info(f"froze {frame.height} rows as {path}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "dagster/row_count": frame.height,
                "snapshot": dg.MetadataValue.path(str(path)),
                "sha256": digest,
                "window_start": str(timestamps.min()),
                "window_end": str(timestamps.max()),
                "features": dg.MetadataValue.json(
                    {"numeric": spec.features.columns.numeric, "categorical": spec.features.columns.categorical}
                ),
                **_label_summary(frame, spec),
            },
        )

    return training_set
