"""Feature and prediction drift of a current sample against the training reference.

Each watched column gets two numbers, because each alone misleads:

- the population stability index (PSI) says *how much* the distribution moved. It compares bin
  proportions, so it does not grow with the sample size: 0.2 means the same shift on 300 rows as on
  300,000 (the usual reading: below 0.1 stable, 0.1-0.2 moderate, above 0.2 a real shift).
- a two-sample test (Kolmogorov-Smirnov for numeric columns, chi-square on the category counts for
  categorical ones) says whether the move could be *chance*. On its own it flags trivial shifts on
  large samples (a 0.1 degree change over 100,000 rows is "significant") and misses nothing on small
  ones only because it can say nothing there.

A column drifts only when both agree: PSI at or above its threshold AND the p-value below its
threshold. Below `min_rows` rows on either side a column is reported as insufficient data, never as
drift: a retrain requested from 40 rows is a retrain requested by noise.

PSI binning: numeric columns use the reference's quantiles (deciles by default), so each bin holds
about the same share of the training data and a shift anywhere in the range shows; categorical
columns use one bin per reference category and pool every category the reference never saw into
one "unseen" bin (a new carrier code is drift even when it has no reference share to compare).
Nulls are their own bin in both, so a feed that starts sending nulls drifts even when the values it
still sends look the same. Empty bins get a small epsilon, since the PSI of an empty bin is infinite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from scipy import stats

Kind = Literal["numeric", "categorical"]
Status = Literal["drift", "no_drift", "insufficient_data"]

EPSILON = 1e-4  # the share given to an empty bin, so its log ratio stays finite
UNSEEN = "(unseen)"
NULL = "(null)"


@dataclass(frozen=True)
class DriftThresholds:
    """When a column counts as drifted, and below how many rows it is not judged at all."""

    psi: float = 0.2
    p_value: float = 0.01
    min_rows: int = 200
    bins: int = 10

    def __post_init__(self) -> None:
        if not self.psi > 0:
            raise ValueError(f"psi threshold must be positive, got {self.psi}")
        if not 0 < self.p_value < 1:
            raise ValueError(f"p_value threshold must lie in (0, 1), got {self.p_value}")
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be at least 1, got {self.min_rows}")
        if self.bins < 2:
            raise ValueError(f"bins must be at least 2, got {self.bins}")

    @classmethod
    def from_monitoring(cls, monitoring: object, min_rows: int) -> DriftThresholds:
        """From a spec's `monitoring:` section (psi_threshold, p_value) and its resolved min_rows
        (the spec's, or one derived from a day's volume: UseCase.monitoring_min_rows)."""
        return cls(psi=monitoring.psi_threshold, p_value=monitoring.p_value, min_rows=min_rows)


@dataclass(frozen=True)
class FeatureDrift:
    """One column's drift: how far it moved (PSI), whether that could be chance (test), on how many rows."""

    name: str
    kind: Kind
    psi: float | None
    statistic: float | None
    p_value: float | None
    reference_rows: int
    current_rows: int
    drifted: bool
    status: Status
    test: str | None  # "ks", "chi2", or "chi2_null_rate" (a numeric column with no values on one side)

    def describe(self, thresholds: DriftThresholds) -> str:
        if self.status == "insufficient_data":
            return (f"{self.name}: insufficient data ({self.reference_rows} reference / {self.current_rows} "
                    f"current rows, needs {thresholds.min_rows} each)")
        verdict = "drifted" if self.drifted else "no drift"
        return (f"{self.name}: {verdict} (PSI {self.psi:.3f} vs {thresholds.psi}, {self.test} p-value "
                f"{self.p_value:.3g} vs {thresholds.p_value}; {self.reference_rows} reference / "
                f"{self.current_rows} current rows)")

    def to_metadata(self) -> dict[str, object]:
        return {
            "kind": self.kind, "status": self.status, "drifted": self.drifted, "psi": _round(self.psi),
            "test": self.test, "statistic": _round(self.statistic), "p_value": _round(self.p_value),
            "reference_rows": self.reference_rows, "current_rows": self.current_rows,
        }


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    thresholds: DriftThresholds
    prediction: FeatureDrift | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def insufficient_data(self) -> list[str]:
        return [f.name for f in self.features if f.status == "insufficient_data"]

    @property
    def prediction_drifted(self) -> bool:
        return self.prediction is not None and self.prediction.drifted

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features) or self.prediction_drifted

    @property
    def worst(self) -> FeatureDrift | None:
        """The drifted feature with the highest PSI; if none drifted, the highest PSI measured."""
        measured = [f for f in self.features if f.psi is not None]
        pool = [f for f in measured if f.drifted] or measured
        return max(pool, key=lambda f: f.psi) if pool else None

    def feature(self, name: str) -> FeatureDrift:
        for item in self.features:
            if item.name == name:
                return item
        raise KeyError(f"no drift result for {name!r}; watched: {[f.name for f in self.features]}")

    def describe(self) -> str:
        if self.drifted:
            parts = [self.feature(n).describe(self.thresholds) for n in self.drifted_features]
            if self.prediction_drifted:
                parts.append(self.prediction.describe(self.thresholds))
            return "; ".join(parts)
        worst = self.worst
        tail = f"; largest PSI {worst.name} {worst.psi:.3f}" if worst else ""
        short = f"; insufficient data: {self.insufficient_data}" if self.insufficient_data else ""
        return f"no drift in {len(self.features)} watched features{tail}{short}"

    @classmethod
    def from_metadata(cls, metadata: dict) -> DriftReport:
        """The report back from `to_metadata` (as stored on a materialization; floats rounded)."""
        def column(name: str, values: dict) -> FeatureDrift:
            return FeatureDrift(name=name, **{k: values[k] for k in (
                "kind", "psi", "statistic", "p_value", "reference_rows", "current_rows", "drifted", "status", "test")})

        prediction = metadata.get("prediction")
        return cls(
            features=tuple(column(name, values) for name, values in metadata["features"].items()),
            thresholds=DriftThresholds(**metadata["thresholds"]),
            prediction=column(metadata.get("prediction_column", "prediction"), prediction) if prediction else None,
        )

    def to_metadata(self) -> dict[str, object]:
        """Plain JSON-able values (rounded floats, no NaN) for Dagster metadata or a run tag."""
        worst = self.worst
        return {
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "insufficient_data": self.insufficient_data,
            "worst": None if worst is None else {"name": worst.name, **worst.to_metadata()},
            "thresholds": {"psi": self.thresholds.psi, "p_value": self.thresholds.p_value,
                           "min_rows": self.thresholds.min_rows, "bins": self.thresholds.bins},
            "features": {f.name: f.to_metadata() for f in self.features},
            "prediction": None if self.prediction is None else self.prediction.to_metadata(),
            "prediction_column": None if self.prediction is None else self.prediction.name,
        }


def drift_report(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    thresholds: DriftThresholds = DriftThresholds(),
    prediction: str | None = None,
) -> DriftReport:
    """Drift of every watched column of `current` against `reference` (the training rows).

    `prediction` names a numeric prediction column present in both frames (scores on the training
    holdout as reference, logged predictions as current); its drift is reported apart from the
    features. A watched column missing from either frame is an error, not drift: it means the
    caller compares different things.
    """
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise ValueError(f"columns listed as both numeric and categorical: {overlap}")
    watched = [*numeric, *categorical, *([prediction] if prediction else [])]
    for side, frame in (("reference", reference), ("current", current)):
        missing = [c for c in watched if c not in frame.columns]
        if missing:
            raise ValueError(f"the {side} sample has no column {missing}")
    features = tuple(
        column_drift(name, reference[name], current[name], kind, thresholds)
        for kind, names in (("numeric", numeric), ("categorical", categorical))
        for name in names
    )
    predicted = (column_drift(prediction, reference[prediction], current[prediction], "numeric", thresholds)
                 if prediction else None)
    return DriftReport(features, thresholds, predicted)


def prediction_drift(reference: pl.Series, current: pl.Series,
                     thresholds: DriftThresholds = DriftThresholds(), kind: Kind = "numeric") -> FeatureDrift:
    """Drift of the model's output: the same measures as a feature, on the prediction column.

    It can move while no single watched feature does (a shift spread thinly over many features, or
    in an unwatched one), and it needs no outcomes, so it is the earliest live warning there is.
    """
    return column_drift(reference.name or "prediction", reference, current, kind, thresholds)


def column_drift(name: str, reference: pl.Series, current: pl.Series, kind: Kind,
                 thresholds: DriftThresholds = DriftThresholds()) -> FeatureDrift:
    ref_rows, cur_rows = reference.len(), current.len()
    if min(ref_rows, cur_rows) < thresholds.min_rows:
        return FeatureDrift(name, kind, None, None, None, ref_rows, cur_rows, False, "insufficient_data", None)
    if kind == "numeric":
        ref, cur = _numeric(name, reference), _numeric(name, current)
        psi = numeric_psi(ref, cur, thresholds.bins)
        statistic, p_value, test = _numeric_test(ref, cur)
    elif kind == "categorical":
        ref_counts, cur_counts = categorical_counts(reference, current)
        psi = _psi(ref_counts, cur_counts)
        statistic, p_value = _chi2(ref_counts, cur_counts)
        test = "chi2"
    else:
        raise ValueError(f"{name}: kind must be numeric or categorical, not {kind!r}")
    drifted = psi >= thresholds.psi and p_value < thresholds.p_value
    return FeatureDrift(name, kind, psi, statistic, p_value, ref_rows, cur_rows, drifted,
                        "drift" if drifted else "no_drift", test)


def numeric_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI over the reference's quantile bins, a bin per mass point, and one bin for nulls (NaN)."""
    ref_values = reference[~np.isnan(reference)]
    cur_values = current[~np.isnan(current)]
    edges = (np.unique(np.quantile(ref_values, np.linspace(0, 1, bins + 1)[1:-1])) if ref_values.size
             else np.array([]))
    # A value that holds a large share of the reference on its own (precipitation 0, visibility 10
    # miles) swallows several quantile edges; it gets its own bin, else everything below it would
    # share one bin and a move among the other values would not show.
    mass = np.array([np.mean(ref_values == e) >= 1 / (2 * bins) for e in edges], dtype=bool)
    width = 2 * edges.size + 2  # intervals, then a point slot per edge, then nulls
    ref_counts = np.bincount(_bin(edges, mass, ref_values), minlength=width)
    cur_counts = np.bincount(_bin(edges, mass, cur_values), minlength=width)
    ref_counts[-1] = reference.size - ref_values.size
    cur_counts[-1] = current.size - cur_values.size
    return _psi(ref_counts, cur_counts)


def _bin(edges: np.ndarray, mass: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Interval i is (edge[i-1], edge[i]] (open-ended at both ends); a mass point's own slot follows them."""
    index = np.searchsorted(edges, values, side="left")
    if not edges.size:
        return index
    inside = index < edges.size
    at = np.minimum(index, edges.size - 1)
    point = inside & (values == edges[at]) & mass[at]
    return np.where(point, edges.size + 1 + at, index)


def categorical_counts(reference: pl.Series, current: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Counts per reference category, then one bin for unseen categories, then one for nulls."""
    ref = reference.cast(pl.String)
    cur = current.cast(pl.String)
    categories = sorted(ref.drop_nulls().unique().to_list())
    ref_map, cur_map = _counts(ref), _counts(cur)
    known = set(categories)
    unseen = sum(n for c, n in cur_map.items() if c not in known)
    ref_counts = np.array([ref_map.get(c, 0) for c in categories] + [0, ref.null_count()], dtype=float)
    cur_counts = np.array([cur_map.get(c, 0) for c in categories] + [unseen, cur.null_count()], dtype=float)
    return ref_counts, cur_counts


def _counts(series: pl.Series) -> dict[str, int]:
    counts = series.drop_nulls().value_counts()
    return dict(zip(counts.to_series(0).to_list(), counts.to_series(1).to_list(), strict=True))


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    ref = np.maximum(ref_counts / ref_counts.sum(), EPSILON)
    cur = np.maximum(cur_counts / cur_counts.sum(), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _numeric(name: str, series: pl.Series) -> np.ndarray:
    try:
        values = series.cast(pl.Float64)
    except pl.exceptions.InvalidOperationError as exc:
        raise ValueError(f"{name}: declared numeric but holds {series.dtype}") from exc
    return values.fill_nan(None).to_numpy(allow_copy=True).astype(float)  # nulls become NaN


def _numeric_test(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float, str]:
    ref_values, cur_values = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if ref_values.size and cur_values.size:
        result = stats.ks_2samp(ref_values, cur_values)
        return float(result.statistic), float(result.pvalue), "ks"
    # One side has no values at all: the only thing left to test is the null rate itself.
    statistic, p_value = _chi2(np.array([ref_values.size, ref.size - ref_values.size], dtype=float),
                               np.array([cur_values.size, cur.size - cur_values.size], dtype=float))
    return statistic, p_value, "chi2_null_rate"


def _chi2(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]  # a bin empty on both sides carries no information
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def _round(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return float(f"{value:.4g}")
