"""The serving model's metric on live traffic, once the outcomes of what it predicted have landed.

A prediction is logged when it is made (its key, score, model version and time); its outcome lands
later, with the day's data (a flight's arrival, the next hour's reading). Joining the two on the key
gives the only performance figure that is about the traffic the model actually serves, rather than
about a holdout drawn from the past. Metrics are per model version, because during a shadow or
canary rollout two versions score the same traffic and each must be judged on its own rows.

The metrics are training/evaluation.py's, so a live ROC AUC and a holdout ROC AUC are computed by
the same code and can be compared against the same floor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from training.evaluation import metrics

# Whether a higher value of each live metric is better: a floor is a minimum or a maximum.
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "rmse": False, "mae": False}
TASKS = ("binary_classification", "regression")


@dataclass(frozen=True)
class LivePerformance:
    model_version: str
    task: str
    predictions: int  # distinct requests this version scored
    rows: int  # of them, those whose outcome has landed (the rows the metrics are computed on)
    metrics: dict[str, float] = field(default_factory=dict)  # only the metrics defined on these rows
    note: str = ""  # why an expected metric is missing

    @property
    def pending(self) -> int:
        """Predictions not scored yet: no outcome landed (a cancelled flight never arrives), or no score logged."""
        return self.predictions - self.rows

    @classmethod
    def from_metadata(cls, metadata: dict) -> LivePerformance:
        """Back from `to_metadata` (metrics rounded to 4 places)."""
        known = {"model_version", "task", "predictions", "rows", "pending", "note"}
        return cls(str(metadata["model_version"]), metadata["task"], int(metadata["predictions"]),
                   int(metadata["rows"]), {k: float(v) for k, v in metadata.items() if k not in known},
                   metadata.get("note", ""))

    def to_metadata(self) -> dict[str, object]:
        return {"model_version": self.model_version, "task": self.task, "predictions": self.predictions,
                "rows": self.rows, "pending": self.pending,
                **{name: round(value, 4) for name, value in self.metrics.items()},
                **({"note": self.note} if self.note else {})}


def join_outcomes(
    predictions: pl.DataFrame,
    outcomes: pl.DataFrame,
    *,
    key: str,
    target: str,
    outcome_key: str | None = None,
    prediction: str = "prediction",
    model_version: str = "model_version",
    predicted_at: str | None = "predicted_at",
) -> pl.DataFrame:
    """Logged predictions with their landed outcome: columns key, model_version, prediction, target.

    A request logged twice by the same version (a client retry) counts once, its latest score (by
    `predicted_at` when given, else the last logged row). Outcomes must be unique per key (a flight
    arrives once): a repeated key is an upstream bug that would silently weigh some rows twice, so it
    is an error. Predictions without an outcome yet stay out (an inner join); so do null outcomes
    and null scores.
    """
    outcome_key = outcome_key or key
    logged_columns = [key, prediction, model_version, *([predicted_at] if predicted_at else [])]
    for side, frame, needed in (("predictions", predictions, logged_columns),
                                ("outcomes", outcomes, [outcome_key, target])):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"the {side} have no column {missing}")
    logged = _latest_per_request(predictions, key, model_version, predicted_at)
    landed = outcomes.select(pl.col(outcome_key).alias(key), pl.col(target)).drop_nulls(target)
    repeated = landed.filter(pl.col(key).is_duplicated())
    if repeated.height:
        raise ValueError(f"outcomes repeat {repeated[key].n_unique()} keys (e.g. {repeated[key][0]!r}); "
                         "one outcome per key is expected")
    return (logged.select(key, pl.col(model_version).cast(pl.String).alias("model_version"), prediction)
            .drop_nulls(prediction)
            .join(landed, on=key, how="inner"))


def live_performance(
    predictions: pl.DataFrame,
    outcomes: pl.DataFrame,
    task: str,
    *,
    key: str,
    target: str,
    outcome_key: str | None = None,
    prediction: str = "prediction",
    model_version: str = "model_version",
    predicted_at: str | None = "predicted_at",
) -> dict[str, LivePerformance]:
    """The live metric of each model version (by version string), on the predictions whose outcome landed.

    Binary classification: ROC AUC and PR AUC (plus ECE and the positive rate) when both classes are
    among the joined outcomes; with one class only, no AUC exists and `note` says so. Regression:
    RMSE and MAE.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    joined = join_outcomes(predictions, outcomes, key=key, target=target, outcome_key=outcome_key,
                           prediction=prediction, model_version=model_version, predicted_at=predicted_at)
    logged = (_latest_per_request(predictions, key, model_version, predicted_at)
              .group_by(pl.col(model_version).cast(pl.String).alias("model_version")).len())
    counts = dict(zip(logged["model_version"].to_list(), logged["len"].to_list(), strict=True))
    result = {}
    for version in sorted(counts):
        rows = joined.filter(pl.col("model_version") == version)
        y = rows[target].cast(pl.Float64).to_numpy()
        p = rows[prediction].cast(pl.Float64).to_numpy()
        if task == "binary_classification" and not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"{target}: a binary outcome must be 0/1 or a boolean, got {sorted(set(y))[:5]}")
        if rows.height == 0:
            scores, note = {}, "no outcome has landed yet"
        else:
            scores = {k: v for k, v in metrics(y, p, task).items() if not math.isnan(v)}
            note = ("only one class among the landed outcomes: ROC AUC and PR AUC are undefined"
                    if task == "binary_classification" and "roc_auc" not in scores else "")
        result[version] = LivePerformance(version, task, counts[version], rows.height, scores, note)
    return result


def floor_crossings(performance: LivePerformance, floors: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(metric, value, floor) for each floor the live metric is on the wrong side of.

    A metric the rows cannot define (an AUC with one class) crosses nothing: no figure is not a bad one.
    """
    crossed = []
    for metric, floor in floors.items():
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"no live metric {metric!r}; known: {sorted(HIGHER_IS_BETTER)}")
        value = performance.metrics.get(metric)
        if value is None:
            continue
        if (value < floor) if HIGHER_IS_BETTER[metric] else (value > floor):
            crossed.append((metric, value, floor))
    return crossed


def _latest_per_request(predictions: pl.DataFrame, key: str, model_version: str,
                        predicted_at: str | None) -> pl.DataFrame:
    ordered = predictions.with_row_index("_logged")
    if predicted_at:
        ordered = ordered.sort(predicted_at, "_logged", nulls_last=False)
    return ordered.unique([key, model_version], keep="last", maintain_order=True).drop("_logged")
