"""Holdout metrics and the model gates computed from them.

Pure functions of labels and predictions, so the gates a release depends on can be unit-tested
with cases built to fail them, and recomputed by anyone from the logged holdout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

# The metric each task is ranked and compared by, and whether higher is better.
PRIMARY = {"binary_classification": ("roc_auc", True), "regression": ("rmse", False)}


@dataclass
class Gate:
    name: str
    passed: bool
    description: str
    metadata: dict[str, object] = field(default_factory=dict)


def metrics(y: np.ndarray, p: np.ndarray, task: str) -> dict[str, float]:
    # Imported here: the code location reads PRIMARY from this module and should not pay for sklearn.
    from sklearn.metrics import average_precision_score, mean_absolute_error, mean_squared_error, roc_auc_score

    if task == "binary_classification":
        if len(np.unique(y)) < 2:
            return {"roc_auc": float("nan"), "pr_auc": float("nan"), "ece": expected_calibration_error(y, p)}
        return {
            "roc_auc": float(roc_auc_score(y, p)),
            "pr_auc": float(average_precision_score(y, p)),
            "ece": expected_calibration_error(y, p),
            "positive_rate": float(np.mean(y)),
        }
    return {"rmse": float(np.sqrt(mean_squared_error(y, p))), "mae": float(mean_absolute_error(y, p))}


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over equal-width bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(float(y[mask].mean()) - float(p[mask].mean()))
    return float(error)


def slice_table(holdout: pl.DataFrame, y: np.ndarray, p: np.ndarray, slices: list[str], task: str) -> pl.DataFrame:
    """The primary metric for every value of every slice column, with its row count."""
    metric, _ = PRIMARY[task]
    rows = []
    for column in slices:
        values = holdout[column].fill_null("(missing)").cast(pl.String).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            rows.append({"slice": column, "value": value, "rows": int(mask.sum()),
                         metric: metrics(y[mask], p[mask], task)[metric]})
    return pl.DataFrame(rows, schema={"slice": pl.String, "value": pl.String, "rows": pl.Int64, metric: pl.Float64})


def floor_gate(scores: dict[str, float], task: str, gates: dict) -> Gate:
    limits = (
        {"roc_auc": gates.get("min_roc_auc"), "pr_auc": gates.get("min_pr_auc")}
        if task == "binary_classification"
        else {"rmse": gates.get("max_rmse"), "mae": gates.get("max_mae")}
    )
    higher = task == "binary_classification"
    misses = []
    for name, limit in limits.items():
        if limit is None:
            continue
        value = scores[name]
        ok = value >= limit if higher else value <= limit
        if not ok or np.isnan(value):
            misses.append(f"{name} {value:.4f} {'below' if higher else 'above'} the floor {limit}")
    checked = {k: v for k, v in limits.items() if v is not None}
    return Gate(
        "performance_floor", not misses,
        "; ".join(misses) if misses else
        ", ".join(f"{k} {scores[k]:.4f} ({'>=' if higher else '<='} {v})" for k, v in checked.items()),
        {**{k: round(scores[k], 4) for k in checked}, **{f"limit_{k}": v for k, v in checked.items()}},
    )


def no_regression_gate(candidate: float | None, champion: float | None, task: str, tolerance: float,
                       champion_version: str | None, champion_refused: str | None = None) -> Gate:
    metric, higher = PRIMARY[task]
    if champion_refused is not None:
        return Gate("no_regression", True, f"champion v{champion_version} not compared: its stored model was "
                    f"refused ({champion_refused})", {"champion_version": champion_version,
                    "champion_refused": champion_refused, metric: round(candidate, 4)})
    if champion is None:
        return Gate("no_regression", True, "no champion yet: the first model of this use case passes by default",
                    {"champion_version": None, metric: round(candidate, 4)})
    delta = candidate - champion if higher else champion - candidate
    passed = delta >= -tolerance
    return Gate(
        "no_regression", passed,
        f"{metric} {candidate:.4f} vs champion v{champion_version} {champion:.4f} on the same holdout "
        f"({'+' if delta >= 0 else ''}{delta:.4f}; tolerance {tolerance})",
        {"champion_version": champion_version, metric: round(candidate, 4),
         f"champion_{metric}": round(champion, 4), "delta": round(delta, 4), "tolerance": tolerance},
    )


def slice_parity_gate(table: pl.DataFrame, task: str, max_gap: float | dict[str, float] | None,
                      min_size: int) -> Gate:
    """Largest metric gap between values of each slice column, over slices of at least `min_size` rows.

    `max_gap` is one limit, or a limit per slice column: how much a metric may differ between
    carriers is a different question from how much it may differ between airports. Best and worst
    follow the metric's direction (highest ROC AUC, lowest RMSE is best). A column with fewer than two
    slices of `min_size` rows cannot be judged: the gate says so by name (it cannot fail on it).
    """
    metric, higher = PRIMARY[task]
    trusted = table.filter((pl.col("rows") >= min_size) & pl.col(metric).is_not_nan())
    gaps, not_judged = {}, {}
    for column in table["slice"].unique(maintain_order=True).to_list():
        values = trusted.filter(pl.col("slice") == column).sort(metric, descending=higher)
        if values.height >= 2:
            best, worst = values.row(0, named=True), values.row(-1, named=True)
            gaps[column] = {"gap": round(abs(best[metric] - worst[metric]), 4), "best": best["value"],
                            "worst": worst["value"]}
        else:
            not_judged[column] = (f"{values.height} slice(s) of >= {min_size} rows with a {metric}, needs 2")
    unjudged = "; ".join(f"{c}: not judged ({why})" for c, why in not_judged.items())
    if max_gap is None:
        return Gate("slice_parity", True, "; ".join(filter(None, ["no slice-gap limit in the spec", unjudged])),
                    {"gaps": gaps, "not_judged": not_judged})
    limits = max_gap if isinstance(max_gap, dict) else {column: max_gap for column in gaps}
    breaches = {c: g for c, g in gaps.items() if c in limits and g["gap"] > limits[c]}
    judged = (f"largest {metric} gap per slice within its limit {limits} (slices of >= {min_size} rows)"
              if gaps else "")
    return Gate(
        "slice_parity", not breaches,
        "; ".join(f"{c}: {metric} gap {g['gap']} between best {g['best']} and worst {g['worst']} above {limits[c]}"
                  for c, g in breaches.items())
        if breaches else "; ".join(filter(None, [judged, unjudged])),
        {"gaps": gaps, "limits": limits, "min_slice_size": min_size, "not_judged": not_judged,
         "ignored_small_slices": int(table.height - trusted.height)},
    )


def calibration_gate(scores: dict[str, float], task: str, max_error: float | None) -> Gate:
    ece = scores["ece"]
    if max_error is None:
        return Gate("calibration", True, f"ECE {ece:.4f} (no limit in the spec)", {"ece": round(ece, 4)})
    return Gate("calibration", ece <= max_error, f"expected calibration error {ece:.4f} (limit {max_error})",
                {"ece": round(ece, 4), "max_calibration_error": max_error})


def leakage_gate(features: list[str], target: str, known_after: list[str], scores: dict[str, float],
                 task: str, max_plausible_roc_auc: float | None) -> Gate:
    reasons = []
    if target in features:
        reasons.append(f"the target {target!r} is a feature")
    late = sorted(set(features) & set(known_after))
    if late:
        reasons.append(f"features known only after the prediction time: {late}")
    if task == "binary_classification" and max_plausible_roc_auc is not None:
        if scores["roc_auc"] > max_plausible_roc_auc:
            reasons.append(f"holdout ROC AUC {scores['roc_auc']:.4f} is implausibly high "
                           f"(above {max_plausible_roc_auc}): a feature likely carries the outcome")
    return Gate("leakage", not reasons, "; ".join(reasons) or "no feature is the target or known after prediction; "
                "the holdout score is plausible", {"features": len(features), "known_after_prediction": known_after})
