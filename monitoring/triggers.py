"""Whether monitoring asks for a retraining run, and the run tags that say why.

A retrain is requested only when all three hold:

1. something crossed its threshold: a watched feature or the prediction drifted (PSI and test
   together, see drift.py), or the serving model's live metric fell through its floor on enough
   joined rows;
2. the latest data gates passed: drift measured on a broken feed is the feed, not the world, and a
   model retrained on it would learn the breakage;
3. the minimum interval since the last request for this use case has elapsed: drift that persists
   is seen again at every evaluation, and one retrain per interval is what it warrants, not one per
   sensor tick.

The decision always says why, requested or not, so a sensor can log it and a person can tell "not
requested: the data gates failed" from "not requested: nothing crossed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from monitoring.drift import DriftReport
from monitoring.live_performance import LivePerformance, floor_crossings

Source = Literal["live_performance", "prediction_drift", "feature_drift"]
Refusal = Literal["data_gates_failed", "nothing_crossed", "inside_min_interval"]

TAG_REASON = "assay/retrain_reason"
TAG_METRIC = "assay/retrain_metric"
TAG_FEATURE = "assay/retrain_feature"
TAG_VALUE = "assay/retrain_value"
TAG_THRESHOLD = "assay/retrain_threshold"
TAG_CROSSINGS = "assay/retrain_crossings"


@dataclass(frozen=True)
class Crossing:
    """One threshold crossed: which measure, its value, and the threshold it crossed."""

    source: Source
    metric: str  # "psi" for drift; the live metric's name (roc_auc, pr_auc, rmse, mae) otherwise
    value: float
    threshold: float
    feature: str | None = None  # the drifted column, for drift
    p_value: float | None = None  # the drift test's p-value, for drift

    def describe(self) -> str:
        if self.source == "live_performance":
            side = "below the floor" if self.value < self.threshold else "above the ceiling"
            return f"live {self.metric} {self.value:.4f} {side} {self.threshold}"
        what = "prediction" if self.source == "prediction_drift" else f"feature {self.feature}"
        return f"{what} drifted: PSI {self.value:.3f} >= {self.threshold} (p-value {self.p_value:.3g})"

    def to_metadata(self) -> dict[str, object]:
        return {"source": self.source, "metric": self.metric, "feature": self.feature,
                "value": _figure(self.value), "threshold": self.threshold,
                "p_value": None if self.p_value is None else _figure(self.p_value)}


@dataclass(frozen=True)
class RetrainDecision:
    use_case: str
    requested: bool
    reason: str  # one line: what crossed, or why no retrain is requested
    refusal: Refusal | None  # None when requested
    crossings: tuple[Crossing, ...] = ()  # listed even when refused, so the log shows what was seen
    tags: dict[str, str] = field(default_factory=dict)  # run tags for the retraining run; empty if refused
    next_allowed_at: datetime | None = None  # set when refused inside the minimum interval

    @property
    def primary(self) -> Crossing | None:
        return self.crossings[0] if self.crossings else None

    def to_metadata(self) -> dict[str, object]:
        return {"use_case": self.use_case, "requested": self.requested, "reason": self.reason,
                "refusal": self.refusal, "crossings": [c.to_metadata() for c in self.crossings],
                "tags": dict(self.tags),
                "next_allowed_at": None if self.next_allowed_at is None else self.next_allowed_at.isoformat()}


def crossings(drift: DriftReport | None, live: LivePerformance | None, floors: Mapping[str, float],
              min_live_rows: int) -> tuple[Crossing, ...]:
    """Every threshold crossed, most telling first: the live metric (it measures harm, not a
    symptom), then prediction drift, then feature drift by decreasing PSI.

    A live metric on fewer than `min_live_rows` joined rows crosses nothing, as a drifting column
    with too few rows does not: it is noise, not evidence.
    """
    found: list[Crossing] = []
    if live is not None and live.rows >= min_live_rows:
        found += [Crossing("live_performance", metric, value, floor)
                  for metric, value, floor in floor_crossings(live, floors)]
    if drift is not None:
        psi = drift.thresholds.psi
        if drift.prediction_drifted:
            found.append(Crossing("prediction_drift", "psi", drift.prediction.psi, psi,
                                  drift.prediction.name, drift.prediction.p_value))
        drifted = sorted((f for f in drift.features if f.drifted), key=lambda f: -f.psi)
        found += [Crossing("feature_drift", "psi", f.psi, psi, f.name, f.p_value) for f in drifted]
    return tuple(found)


def retrain_decision(
    *,
    use_case: str,
    drift: DriftReport | None,
    live: LivePerformance | None,
    floors: Mapping[str, float],
    data_gates_passed: bool,
    last_requested_at: datetime | None,
    now: datetime,
    min_interval: timedelta,
    min_live_rows: int = 200,
) -> RetrainDecision:
    """Decide whether to request a retraining run for `use_case`, and say why either way.

    `drift` and `live` may be None when not measured (no logged predictions yet, no outcomes yet).
    `floors` are the live metric floors by metric name (UseCase.live_floors). `last_requested_at`
    is when the previous retrain was requested for this use case (None: never); `now` and it must
    both be timezone-aware or both naive.
    """
    found = crossings(drift, live, floors, min_live_rows)

    def refuse(refusal: Refusal, reason: str, next_allowed_at: datetime | None = None) -> RetrainDecision:
        return RetrainDecision(use_case, False, reason, refusal, found, {}, next_allowed_at)

    if not data_gates_passed:
        seen = f" (would otherwise have been: {found[0].describe()})" if found else ""
        return refuse("data_gates_failed", f"not requested: the latest data gates failed{seen}")
    if not found:
        return refuse("nothing_crossed",
                      "not requested: nothing crossed its threshold; " + _quiet(drift, live, min_live_rows))
    if last_requested_at is not None:
        next_allowed_at = last_requested_at + min_interval
        if now < next_allowed_at:
            return refuse("inside_min_interval",
                          f"not requested: the last retrain was requested at {last_requested_at.isoformat()}, "
                          f"inside the minimum interval of {_interval(min_interval)} (next allowed at "
                          f"{next_allowed_at.isoformat()}); seen: {found[0].describe()}", next_allowed_at)
    primary = found[0]
    tags = {
        "use_case": use_case,
        TAG_REASON: primary.source,
        TAG_METRIC: primary.metric,
        TAG_VALUE: _figure_text(primary.value),
        TAG_THRESHOLD: _figure_text(primary.threshold),
        TAG_CROSSINGS: str(len(found)),
        **({TAG_FEATURE: primary.feature} if primary.feature else {}),
    }
    others = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return RetrainDecision(use_case, True, f"requested: {primary.describe()}{others}", None, found, tags)


def _quiet(drift: DriftReport | None, live: LivePerformance | None, min_live_rows: int) -> str:
    parts = [drift.describe() if drift is not None else "drift not measured"]
    if live is None:
        parts.append("live performance not measured")
    elif live.rows < min_live_rows:
        parts.append(f"live performance on {live.rows} joined rows (needs {min_live_rows})")
    else:
        parts.append("live " + ", ".join(f"{k} {v:.4f}" for k, v in live.metrics.items()) + " within the floors")
    return "; ".join(parts)


def _interval(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(interval)


def _figure(value: float) -> float:
    return float(f"{value:.4g}")


def _figure_text(value: float) -> str:
    return f"{value:.4g}"
