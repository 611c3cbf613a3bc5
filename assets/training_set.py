"""The training set: the feature rows of the spec's training window, frozen as a Parquet snapshot.

A snapshot rather than a view, because a model must be reproducible after the warehouse moved on:
the file is named by its content hash, and that hash is the dataset version every later stage
(training, the registry, the audit) records.
"""


import dagster as dg
import polars as pl

from assay import asset_keys
from assay.settings import state
from assay.spec import UseCase
from resources.snapshots import read_training_window, write_snapshot
from resources.warehouse import Warehouse


def _label_summary(frame: pl.DataFrame, spec: UseCase) -> dict[str, float]:
    target = frame[spec.features.target]
    if spec.features.task == "binary_classification":
        return {"positive_rate": round(float(target.mean()), 4)}
    return {"target_mean": round(float(target.mean()), 4), "target_std": round(float(target.std()), 4)}


def build_training_set(spec: UseCase) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_keys.training_set(spec),
        deps=[asset_keys.dbt_model(spec, spec.features.training_model)],
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
