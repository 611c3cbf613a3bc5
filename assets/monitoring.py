"""Monitoring: what the served models saw and how they did, one day at a time.

- `inference_log`: every prediction the servers logged that day (serving/inference_log.py), in the
  warehouse, so audits and monitoring query one table.
- `drift`: the day's logged features and predictions against the serving version's training set
  (monitoring/drift.py: PSI and a two-sample test per watched column).
- `live_performance`: the day's logged predictions joined to the outcomes that landed since.
Their checks warn, never block: drift and decay are reasons to retrain (automation/retrain.py),
not reasons to stop serving what passed its gates.
"""

import json
from datetime import date, timedelta

import dagster as dg
import numpy as np
import polars as pl

from assay import asset_keys, sql
from assay.settings import state
from assay.spec import UseCase
from automation.retrain import monitoring_min_rows
from resources.deployment.deployer import Deployer
from resources.registry import ModelRegistry
from resources.warehouse import Warehouse
from training.tags import TRAINING_SET_SHA256_TAG

LOG_COLUMNS = {
    "environment": "VARCHAR", "request_id": "VARCHAR", "entity_id": "VARCHAR", "model_version": "VARCHAR",
    "prediction": "DOUBLE", "latency_ms": "DOUBLE", "event_time": "TIMESTAMPTZ", "features": "JSON",
}


def log_table(spec: UseCase) -> str:
    """The use case's inference log table as SQL names it, quoted."""
    return sql.table(spec.name, "inference_log")


def store_log_day(warehouse: Warehouse, spec: UseCase, day: str, lines: list[dict]) -> int:
    """Replace the day's rows atomically: a reload after more requests never duplicates."""
    frame = pl.DataFrame(
        [{**{k: line[k] for k in LOG_COLUMNS if k not in ("features",)}, "features": json.dumps(line["features"])}
         for line in lines],
        schema={"environment": pl.String, "request_id": pl.String, "entity_id": pl.String,
                "model_version": pl.String, "prediction": pl.Float64, "latency_ms": pl.Float64,
                "event_time": pl.String, "features": pl.String},
    )
    columns = ", ".join(f"{name} {kind}" for name, kind in LOG_COLUMNS.items())
    with warehouse.writer() as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {sql.identifier(spec.name)}")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {log_table(spec)} (_partition DATE, {columns})")
        connection.register("incoming", frame.to_arrow())
        connection.execute("BEGIN TRANSACTION")
        try:
            connection.execute(f"DELETE FROM {log_table(spec)} WHERE _partition = ?", [day])
            connection.execute(f"INSERT INTO {log_table(spec)} SELECT CAST(? AS DATE), environment, request_id, "
                               "entity_id, model_version, prediction, latency_ms, CAST(event_time AS TIMESTAMPTZ), "
                               "CAST(features AS JSON) FROM incoming", [day])
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
    return frame.height


def read_log_day(warehouse: Warehouse, spec: UseCase, day: str, days: int = 1) -> pl.DataFrame:
    """The logged requests of `day`, or of the `days` days ending on it."""
    last = date.fromisoformat(day)
    first = last - timedelta(days=days - 1)
    with warehouse.reader() as connection:
        return connection.execute(
            f"SELECT * EXCLUDE (features), CAST(features AS VARCHAR) AS features FROM {log_table(spec)} "
            "WHERE _partition BETWEEN ? AND ? ORDER BY event_time, entity_id", [first, last]).pl()


def logged_features(log: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The features as they were sent, one column each (numbers as doubles, categories as strings)."""
    rows = [json.loads(text) for text in log["features"].to_list()]
    return pl.DataFrame({name: [row.get(name) for row in rows] for name in columns}, strict=False)


def serving_version(log: pl.DataFrame) -> str:
    """The version that answered most of the day's requests: the one whose training set is the reference."""
    counts = log.group_by("model_version").len().sort(["len", "model_version"], descending=True)
    return counts["model_version"][0]


def reference_frame(spec: UseCase, registry: ModelRegistry, version: str) -> pl.DataFrame:
    """The version's training snapshot with its own scores on it, cached beside the snapshot."""
    sha = registry.version(spec.name, version).tags[TRAINING_SET_SHA256_TAG]
    snapshots = state().snapshots / spec.name
    cached = snapshots / "reference_scores" / f"{sha}-v{version}.parquet"
    if cached.exists():
        return pl.read_parquet(cached)
    from training.train import model_input

    frame = pl.read_parquet(state().training_snapshot(spec.name, sha))
    features = spec.features.feature_set()
    model = registry.load_model(spec.name, version)  # its files hashed against the record before unpickling
    scores = np.asarray(model.predict(model_input(frame, features)), dtype=float)
    scored = frame.with_columns(pl.Series("prediction", scores))
    cached.parent.mkdir(parents=True, exist_ok=True)
    scored.write_parquet(cached)
    return scored


def build_monitoring(spec: UseCase, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    log_key, drift_key, live_key = (asset_keys.inference_log(spec), asset_keys.drift(spec),
                                    asset_keys.live_performance(spec))
    features_key = asset_keys.dbt_model(spec, spec.features.training_model)
    common = dict(partitions_def=partitions, group_name=f"{spec.name}_monitoring", owners=[spec.owner],
                  freshness_policy=dg.FreshnessPolicy.time_window(fail_window=spec.freshness.monitoring))

    @dg.asset(
        key=log_key, **common, kinds={"duckdb"}, tags={"stage": "monitoring", "use_case": spec.name},
        description=f"Every prediction `{spec.name}`'s model servers logged that day (request, version, features, "
        "prediction, latency, time), in the warehouse.",
        metadata={"dagster/table_name": f"warehouse.{spec.name}.inference_log"},
    )
    def inference_log(context: dg.AssetExecutionContext, deployer: Deployer, warehouse: Warehouse):
        day = context.partition_key
        lines = [line for env in spec.release.environments for line in deployer.inference_log(spec.name, env, day)]
        rows = store_log_day(warehouse, spec, day, lines)
        latencies = np.array([line["latency_ms"] for line in lines]) if lines else np.array([0.0])
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows,
            "versions": dg.MetadataValue.json(sorted({line["model_version"] for line in lines})),
            "environments": dg.MetadataValue.json(sorted({line["environment"] for line in lines})),
            "latency_p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "latency_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        })

    numeric, categorical = spec.watched_features

    @dg.asset(
        key=drift_key, **common, deps=[log_key], kinds={"polars"}, tags={"stage": "monitoring", "use_case": spec.name},
        description=f"Drift of `{spec.name}`'s logged features and predictions (the day, or the spec's "
        "`drift_window_days` ending on it) against the serving version's training set: PSI and a two-sample "
        "test per watched column (thresholds in the spec's `monitoring`).",
        check_specs=[dg.AssetCheckSpec("no_drift", asset=drift_key, blocking=False,
                                       description="No watched feature and not the prediction drifted.")],
    )
    def drift(context: dg.AssetExecutionContext, warehouse: Warehouse, registry: ModelRegistry):
        from monitoring.drift import DriftThresholds, drift_report

        day, window = context.partition_key, spec.monitoring.drift_window_days
        log = read_log_day(warehouse, spec, day, days=window)
        today = log.filter(pl.col("_partition") == date.fromisoformat(day))
        if today.is_empty():
            raise dg.Failure(f"no predictions were logged on {day}: nothing to compare")
        version = serving_version(today)  # the window's other days count only where this version answered
        mine = log.filter(pl.col("model_version") == version)
        current = logged_features(mine, [*numeric, *categorical]).with_columns(prediction=mine["prediction"])
        reference = reference_frame(spec, registry, version)
        thresholds = DriftThresholds.from_monitoring(spec.monitoring, monitoring_min_rows(spec, context.instance))
        report = drift_report(reference, current, numeric, categorical, thresholds, prediction="prediction")
        worst = report.worst
        yield dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.json(report.to_metadata()),
            "serving_version": version,
            "rows": current.height,
            "window_days": window,
            "drifted_features": dg.MetadataValue.json(report.drifted_features),
            "prediction_drifted": report.prediction_drifted,
            "worst_feature": worst.name if worst else "none",
            "worst_psi": worst.psi if worst and worst.psi is not None else 0.0,
        })
        yield dg.AssetCheckResult(check_name="no_drift", passed=not report.drifted,
                                  severity=dg.AssetCheckSeverity.WARN, description=report.describe())

    @dg.asset(
        key=live_key, **common, deps=[log_key, features_key], kinds={"polars"},
        tags={"stage": "monitoring", "use_case": spec.name},
        description=f"`{spec.name}`'s logged predictions of the day joined to the outcomes that landed: the live "
        "metric per model version, against the spec's live floors.",
        check_specs=[dg.AssetCheckSpec("above_live_floor", asset=live_key, blocking=False,
                                       description="The serving version's live metric is on the right side of "
                                       "every floor (judged from the spec's min_rows joined rows).")],
    )
    def live_performance(context: dg.AssetExecutionContext, warehouse: Warehouse):
        from monitoring.live_performance import floor_crossings, live_performance as measure

        day, f = context.partition_key, spec.features
        log = read_log_day(warehouse, spec, day)
        if log.is_empty():
            raise dg.Failure(f"no predictions were logged on {day}: nothing to score")
        with warehouse.reader() as connection:
            outcomes = connection.execute(
                f"SELECT CAST({sql.identifier(f.entity)} AS VARCHAR) AS entity_id, {sql.identifier(f.target)} AS target "
                f"FROM {sql.table(spec.name, f.training_model)} WHERE CAST({sql.identifier(f.timestamp)} AS DATE) = ?",
                [day]).pl()
        found = measure(log, outcomes, f.task, key="entity_id", target="target", predicted_at="event_time")
        version = serving_version(log)
        serving = found[version]
        min_rows = monitoring_min_rows(spec, context.instance)
        judged = serving.rows >= min_rows
        crossed = floor_crossings(serving, spec.live_floors) if judged else []
        yield dg.MaterializeResult(metadata={
            "serving": dg.MetadataValue.json(serving.to_metadata()),
            "by_version": dg.MetadataValue.json({v: p.to_metadata() for v, p in found.items()}),
            "serving_version": version,
            "rows": serving.rows,
            **{name: round(value, 4) for name, value in serving.metrics.items()},
        })
        yield dg.AssetCheckResult(
            check_name="above_live_floor", passed=not crossed, severity=dg.AssetCheckSeverity.WARN,
            description=("; ".join(f"live {m} {v:.4f} beyond floor {floor}" for m, v, floor in crossed) if crossed
                         else (f"live {serving.metrics} on {serving.rows} rows within floors {spec.live_floors}"
                               if judged else f"not judged: {serving.rows} joined rows (needs "
                               f"{min_rows})")),
        )

    return [inference_log, drift, live_performance]
