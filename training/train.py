"""The training entrypoint: one program for every environment, run through Dagster Pipes.

    python -m training.train      (launched by Assay: a subprocess locally, a GPU pod on Kubernetes)

It imports `dagster_pipes`, never Dagster: the same code runs in a pod built from any image that has
the training stack. It reads the frozen training-set snapshot, splits it by time, trains one model
family, scores it (and the current champion, loaded only once its files hash to its recorded
`assay.model_sha256`) on the same holdout, logs everything to MLflow, registers a model version
with its provenance and two hashes (the payload's, taken before logging, and the whole logged
model's, taken after), and reports the metadata and the gates back.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
from dagster_pipes import PipesContext, open_dagster_pipes

from training.artifacts import ArtifactMismatch, load_verified, model_sha256, payload_sha256
from training.evaluation import (
    PRIMARY,
    Gate,
    calibration_gate,
    floor_gate,
    leakage_gate,
    metrics,
    no_regression_gate,
    slice_parity_gate,
    slice_table,
)
from training.job import TrainingJob
from training.tabular import FeatureSet
from training.tags import (
    DAGSTER_RUN_ID_TAG,
    FAMILY_TAG,
    GATES_TAG,
    MODEL_SHA256_TAG,
    PAYLOAD_SHA256_TAG,
    PRIMARY_METRIC_TAG,
    PRIMARY_VALUE_TAG,
    gate_tag,
)

TRAINING_DIR = Path(__file__).resolve().parent


def split_by_time(frame: pl.DataFrame, timestamp: str, holdout_days: int):
    """Holdout = the last `holdout_days` of the window; early-stopping rows = the last fifth before it."""
    frame = frame.sort(timestamp)
    cutoff = frame[timestamp].max() - timedelta(days=holdout_days)
    earlier, holdout = frame.filter(pl.col(timestamp) <= cutoff), frame.filter(pl.col(timestamp) > cutoff)
    if earlier.height < 50 or holdout.height < 20:
        raise ValueError(f"too few rows to train ({earlier.height}) or evaluate ({holdout.height}); "
                         f"the training window must be longer than the holdout of {holdout_days} days")
    boundary = int(earlier.height * 0.8)
    return earlier[:boundary], earlier[boundary:], holdout


def _train(family: str, train, valid, features: FeatureSet, seed: int):
    if family == "lightgbm":
        from training import lightgbm_family as module
    elif family == "torch":
        from training import torch_family as module
    else:
        raise ValueError(f"unknown model family {family!r}")
    return module.train(train, valid, features, seed)


def model_input(frame: pl.DataFrame, features: FeatureSet):
    """The frame a registered model is called with: numeric inputs as doubles (an int column cannot
    carry the nulls real rows have), categoricals as strings, in the feature set's order."""
    return frame.select(
        *(pl.col(c).cast(pl.Float64) for c in features.numeric), *(pl.col(c).cast(pl.String) for c in features.categorical)
    ).to_pandas()


def model_signature(features: FeatureSet, task: str):
    """Every input optional: nulls are legitimate (a plane missing from the registry, a missing reading)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("double", c, required=False) for c in features.numeric]
    inputs += [ColSpec("string", c, required=False) for c in features.categorical]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", "prediction")]))


def _champion_score(job: TrainingJob, holdout: pl.DataFrame, y: np.ndarray) -> tuple[float | None, str | None]:
    """(the champion's score on this holdout, or None; why it was not loaded, or None).

    The champion's files are hashed before it is unpickled: a replaced model must not run here either.
    A champion whose stored model changed is not compared with, and the refusal is the no-regression
    gate's evidence; failing the retrain instead would leave the tampered version champion for good."""
    if not job.champion:
        return None, None
    try:
        model = load_verified(job.champion.uri, job.champion.model_sha256)
    except ArtifactMismatch as refusal:
        return None, str(refusal)
    predictions = np.asarray(model.predict(model_input(holdout, job.features)), dtype=float)
    return metrics(y, predictions, job.features.task)[PRIMARY[job.features.task][0]], None


def _plots(job: TrainingJob, y, p, model, folder: Path) -> dict[str, Path]:
    from training import plots

    made = {"feature_importance": plots.feature_importance(model.feature_importance(), folder / "feature_importance.png")}
    if job.features.task == "binary_classification":
        made["roc"] = plots.roc_curve(y, p, folder / "roc.png")
        made["precision_recall"] = plots.precision_recall_curve(y, p, folder / "precision_recall.png")
        made["calibration"] = plots.calibration_curve(y, p, folder / "calibration.png")
    else:
        made["residuals"] = plots.residuals(y, p, folder / "residuals.png")
    return made


def _inline(path: Path) -> str:
    """A PNG as a Markdown image, so the Dagster UI shows the plot on the materialization itself."""
    return f"![{path.stem}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"


def _log_and_register(job, model, scores, table, plots, gates, payload, sha256, train_rows, holdout, scratch):
    import mlflow

    from training.pyfunc import AssayPyfunc, pip_requirements

    mlflow.set_experiment(job.experiment)
    example = model_input(holdout.head(5), job.features)
    with mlflow.start_run(run_name=f"{job.family}-{job.provenance.get(DAGSTER_RUN_ID_TAG, 'manual')[:8]}") as run:
        mlflow.log_params({**{k: v for k, v in model.params.items()}, "family": job.family, "seed": job.seed,
                           "holdout_days": job.holdout_days, "train_rows": train_rows, "holdout_rows": holdout.height})
        mlflow.log_metrics({k: v for k, v in scores.items() if np.isfinite(v)})
        for path in plots.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        mlflow.log_table(table.to_pandas(), artifact_file="slices.json")
        mlflow.set_tags({**job.provenance, FAMILY_TAG: job.family})
        info = mlflow.pyfunc.log_model(
            name="model", python_model=AssayPyfunc(), artifacts={"payload": str(payload)},
            code_paths=[str(TRAINING_DIR)], input_example=example,
            signature=model_signature(job.features, job.features.task),
            pip_requirements=pip_requirements(job.family),
        )
        version = mlflow.register_model(info.model_uri, job.registered_model)
        # The whole logged model can only be hashed once MLflow has written it (MLmodel names the
        # run and the logged model): hash the folder as the registry hands it out.
        scratch.mkdir(parents=True, exist_ok=True)
        logged = model_sha256(Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{job.registered_model}/{version.version}", dst_path=str(scratch))))
    client = mlflow.MlflowClient()
    tags = {
        **job.provenance,
        FAMILY_TAG: job.family,
        PAYLOAD_SHA256_TAG: sha256,
        MODEL_SHA256_TAG: logged,
        PRIMARY_METRIC_TAG: PRIMARY[job.features.task][0],
        PRIMARY_VALUE_TAG: f"{scores[PRIMARY[job.features.task][0]]:.6f}",
        GATES_TAG: json.dumps(sorted(g.name for g in gates)),
        **{gate_tag(g.name): "passed" if g.passed else "failed" for g in gates},
    }
    for key, value in tags.items():
        client.set_model_version_tag(job.registered_model, version.version, key, value)
    return run.info.run_id, version.version, logged


def run(job: TrainingJob, log=print) -> tuple[dict, list[Gate]]:
    frame = pl.read_parquet(job.snapshot)
    train, valid, holdout = split_by_time(frame, job.timestamp, job.holdout_days)
    began = time.perf_counter()
    model = _train(job.family, train, valid, job.features, job.seed)
    train_seconds = time.perf_counter() - began
    log(f"trained {job.family} on {train.height} rows in {train_seconds:.1f}s")

    y = holdout[job.features.target].to_numpy().astype(float)
    p = model.predict(holdout)
    task = job.features.task
    scores = metrics(y, p, task)
    table = slice_table(holdout, y, p, job.slices, task)
    metric = PRIMARY[task][0]
    champion, champion_refused = _champion_score(job, holdout, y)
    columns = job.features.numeric + job.features.categorical
    gates = [
        floor_gate(scores, task, job.gates),
        no_regression_gate(scores[metric], champion, task, job.gates.get("max_regression", 0.0),
                           job.champion.version if job.champion else None, champion_refused),
        slice_parity_gate(table, task, job.gates.get("max_slice_gap"), job.gates.get("min_slice_size", 100)),
        *([calibration_gate(scores, task, job.gates.get("max_calibration_error"))]
          if task == "binary_classification" else []),
        leakage_gate(columns, job.features.target, job.known_after_prediction, scores, task,
                     job.gates.get("max_plausible_roc_auc")),
    ]

    with tempfile.TemporaryDirectory() as scratch:
        payload = Path(scratch) / "payload"
        model.save(payload)
        sha256 = payload_sha256(payload)
        plots = _plots(job, y, p, model, Path(scratch))
        mlflow_run, version, logged = _log_and_register(job, model, scores, table, plots, gates, payload, sha256,
                                                        train.height + valid.height, holdout, Path(scratch) / "logged")
        inline = "\n\n".join(_inline(path) for path in plots.values())

    metadata = {
        "model_version": {"raw_value": str(version), "type": "text"},
        "registered_model": job.registered_model,
        "mlflow_run_id": mlflow_run,
        "family": job.family,
        "artifact_sha256": sha256,
        "model_sha256": logged,
        "training_set_sha256": job.snapshot_sha256,
        "train_seconds": round(train_seconds, 2),
        "train_rows": train.height + valid.height,
        "holdout_rows": holdout.height,
        "primary_metric": metric,
        **{k: round(v, 4) for k, v in scores.items() if np.isfinite(v)},
        "slices": {"raw_value": _markdown_table(table), "type": "md"},
        "plots": {"raw_value": inline, "type": "md"},
    }
    return metadata, gates


def _markdown_table(table: pl.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
            for row in table.iter_rows()]
    return "\n".join([header, *rows])


def _report(pipes: PipesContext, metadata: dict, gates: list[Gate]) -> None:
    pipes.report_asset_materialization(metadata=metadata, data_version=metadata["artifact_sha256"])
    for gate in gates:
        pipes.report_asset_check(
            check_name=gate.name, passed=bool(gate.passed), severity="ERROR",
            metadata={"description": gate.description,
                      **{k: v if isinstance(v, (int, float, str, bool)) or v is None
                         else {"raw_value": v, "type": "json"} for k, v in gate.metadata.items()}},
        )


def main() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with open_dagster_pipes() as pipes:
        job = TrainingJob.from_extras(dict(pipes.extras))
        metadata, gates = run(job, log=pipes.log.info)
        _report(pipes, metadata, gates)


if __name__ == "__main__":
    main()
