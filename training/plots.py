"""Evaluation figures, written as small PNG files for MLflow and the audit trail.

Each function takes labels `y` and predictions `p` (probabilities for classification), writes one
figure to `path` and returns the path. Rendering uses matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from sklearn import metrics  # noqa: E402

FIGSIZE = (5, 4)
DPI = 100
TOP_FEATURES = 20
CALIBRATION_BINS = 10


def roc_curve(y: np.ndarray, p: np.ndarray, path: Path) -> Path:
    false_positive, true_positive, _ = metrics.roc_curve(y, p)
    auc = metrics.roc_auc_score(y, p)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(false_positive, true_positive, label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(title="ROC curve", xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return _write(fig, path)


def precision_recall_curve(y: np.ndarray, p: np.ndarray, path: Path) -> Path:
    precision, recall, _ = metrics.precision_recall_curve(y, p)
    average_precision = metrics.average_precision_score(y, p)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(recall, precision, label=f"model (AP {average_precision:.3f})")
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", label="base rate")
    ax.set(title="Precision-recall curve", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper right")
    return _write(fig, path)


def calibration_curve(y: np.ndarray, p: np.ndarray, path: Path) -> Path:
    """Reliability diagram: mean predicted probability against observed rate in equal-width bins."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    bins = np.clip((p * CALIBRATION_BINS).astype(int), 0, CALIBRATION_BINS - 1)
    counts = np.bincount(bins, minlength=CALIBRATION_BINS)
    filled = counts > 0
    mean_predicted = np.bincount(bins, weights=p, minlength=CALIBRATION_BINS)[filled] / counts[filled]
    observed = np.bincount(bins, weights=y, minlength=CALIBRATION_BINS)[filled] / counts[filled]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(mean_predicted, observed, marker="o", label="model")
    ax.set(title=f"Calibration ({CALIBRATION_BINS} bins)", xlabel="mean predicted probability", ylabel="observed rate", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _write(fig, path)


def residuals(y: np.ndarray, p: np.ndarray, path: Path) -> Path:
    """Regression: residual (actual - predicted) against predicted, and the residuals' histogram."""
    residual = np.asarray(y, dtype=np.float64) - np.asarray(p, dtype=np.float64)
    fig, (scatter, histogram) = plt.subplots(1, 2, figsize=(FIGSIZE[0] * 2, FIGSIZE[1]))
    scatter.scatter(p, residual, s=4, alpha=0.4)
    scatter.axhline(0.0, color="grey", linestyle="--")
    scatter.set(title="Residuals vs predicted", xlabel="predicted", ylabel="actual - predicted")
    histogram.hist(residual, bins=40)
    histogram.set(title="Residual distribution", xlabel="actual - predicted", ylabel="rows")
    return _write(fig, path)


def feature_importance(importances: dict[str, float], path: Path) -> Path:
    """Horizontal bars, most important at the top, for the TOP_FEATURES largest."""
    top = sorted(importances.items(), key=lambda item: (-item[1], item[0]))[:TOP_FEATURES]
    names = [name for name, _ in reversed(top)]
    values = [value for _, value in reversed(top)]
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(FIGSIZE[1], 0.25 * len(top) + 1)))
    ax.barh(names, values)
    ax.set(title="Feature importance", xlabel="share of importance", ylabel="feature")
    return _write(fig, path)


def _write(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path
