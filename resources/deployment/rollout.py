"""Progressive rollout: a candidate earns traffic step by step, judged on live figures.

This module replays a step's traffic and judges it; the release sequence (release.py) stages each
step through the deployer, records its verdict and stops at the first that fails.

A step serves the candidate beside the incumbent and replays real traffic at it: the latest rows of
the candidate's holdout days (real, labelled, seen by neither model), one request per row.
- shadow: the incumbent answers every request; each is mirrored to the candidate, whose answers
  are scored but never returned. Both see the same rows, so agreement and accuracy compare exactly.
- canary: the candidate answers its share of requests (a stable hash of the row picks them) and
  the incumbent the rest; each is judged on the requests it answered.
A step passes when the candidate's error rate is no worse than the incumbent's, its p99 latency is
within `max_latency_ratio` of the incumbent's, its accuracy on the labelled rows it answered is not
worse than the incumbent's by more than the no-regression tolerance, and (shadow, where both answer
the same rows) it agrees with the incumbent often enough unless the labels already show it at least
as accurate. Too few labelled rows is reported, not gated: a tiny canary share cannot prove
accuracy either way.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from assay.spec import ROLLOUT_STEPS, UseCase
from serving.requests import predictions, v2_request


def gate_name(step: str) -> str:
    """The asset check that holds a step's verdict."""
    return f"rollout_{step}"


@dataclass(frozen=True)
class LiveFigures:
    """What one version did with the requests it answered (or, in shadow, scored)."""

    version: str
    requests: int
    errors: int
    latencies_ms: tuple[float, ...]
    rows: tuple[int, ...]  # which replayed rows it answered, for joining to labels and the other version
    scores: tuple[float, ...]  # its prediction for each of those rows (NaN on an error)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else float("nan")


@dataclass(frozen=True)
class StepVerdict:
    step: str
    passed: bool
    description: str
    metadata: dict


def takes_canary(row: int, weight: int, salt: str) -> bool:
    """Whether the candidate answers this row: a stable hash, so a rerun routes the same rows."""
    digest = hashlib.sha256(f"{salt}:{row}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < weight


def replay_traffic(endpoint, spec: UseCase, rows: pl.DataFrame, incumbent: str, candidate: str, step: str,
                   weight: int) -> tuple[LiveFigures, LiveFigures]:
    """Send each row as one request, as callers would, at the spec's concurrency."""
    if step not in ROLLOUT_STEPS:
        raise ValueError(f"step must be one of {ROLLOUT_STEPS}, not {step!r}")
    columns = spec.features.columns
    bodies = [v2_request(rows[i : i + 1], columns.numeric, columns.categorical) for i in range(rows.height)]

    def call(version: str, row: int) -> tuple[str, int, bool, float, float]:
        began = time.perf_counter()
        status, body = endpoint.infer(spec.name, bodies[row], version=version)
        elapsed = (time.perf_counter() - began) * 1000
        score = predictions(body)[0] if status == 200 else float("nan")
        return version, row, status == 200, elapsed, score

    def request(row: int) -> list[tuple[str, int, bool, float, float]]:
        if step == "shadow":  # the answer is the incumbent's; the mirror is the candidate's
            return [call(incumbent, row), call(candidate, row)]
        return [call(candidate if takes_canary(row, weight, f"{spec.name}:{candidate}") else incumbent, row)]

    with ThreadPoolExecutor(spec.release.latency_concurrency) as pool:
        outcomes = [o for batch in pool.map(request, range(rows.height)) for o in batch]

    def figures(version: str) -> LiveFigures:
        mine = sorted((o for o in outcomes if o[0] == version), key=lambda o: o[1])
        return LiveFigures(version, len(mine), sum(not o[2] for o in mine),
                           tuple(o[3] for o in mine if o[2]), tuple(o[1] for o in mine), tuple(o[4] for o in mine))

    return figures(incumbent), figures(candidate)


def _agree(a: np.ndarray, b: np.ndarray, spec: UseCase) -> np.ndarray:
    if spec.features.task == "binary_classification":
        return (a >= 0.5) == (b >= 0.5)
    return np.abs(a - b) <= spec.release.agreement_tolerance


def _accuracy(figures: LiveFigures, labels: np.ndarray, task: str) -> tuple[str, float | None, int]:
    """(metric, value, labelled rows): ROC AUC for classification, RMSE for regression."""
    rows = np.array(figures.rows, dtype=int)
    scores = np.array(figures.scores, dtype=float)
    keep = ~np.isnan(scores) & ~np.isnan(labels[rows]) if rows.size else np.array([], dtype=bool)
    y, p = labels[rows][keep] if rows.size else labels[:0], scores[keep]
    if task == "regression":
        return "rmse", (float(np.sqrt(np.mean((y - p) ** 2))) if y.size else None), int(y.size)
    if y.size == 0 or len(set(y.tolist())) < 2:
        return "roc_auc", None, int(y.size)
    from sklearn.metrics import roc_auc_score

    return "roc_auc", float(roc_auc_score(y, p)), int(y.size)


def judge(step: str, spec: UseCase, incumbent: LiveFigures, candidate: LiveFigures,
          labels: np.ndarray) -> StepVerdict:
    """The step's gate: the candidate's live figures against the incumbent's."""
    release, problems, notes = spec.release, [], []
    metadata: dict = {"incumbent_version": incumbent.version, "candidate_version": candidate.version,
                      "candidate_requests": candidate.requests, "incumbent_requests": incumbent.requests}

    if candidate.requests == 0:
        return StepVerdict(step, False, f"the candidate answered no requests in the {step} step", metadata)

    metadata.update(candidate_error_rate=candidate.error_rate, incumbent_error_rate=incumbent.error_rate)
    if candidate.error_rate > incumbent.error_rate:
        problems.append(f"error rate {candidate.error_rate:.1%} above the incumbent's {incumbent.error_rate:.1%}")

    metadata.update(candidate_p99_ms=round(candidate.p99_ms, 2), incumbent_p99_ms=round(incumbent.p99_ms, 2))
    if candidate.latencies_ms and incumbent.latencies_ms:
        if candidate.p99_ms > release.max_latency_ratio * incumbent.p99_ms:
            problems.append(f"p99 {candidate.p99_ms:.1f} ms over {release.max_latency_ratio}x the incumbent's "
                            f"{incumbent.p99_ms:.1f} ms")

    metric, theirs, their_rows = _accuracy(incumbent, labels, spec.features.task)
    _, ours, our_rows = _accuracy(candidate, labels, spec.features.task)
    metadata.update({f"candidate_{metric}": ours, f"incumbent_{metric}": theirs, "candidate_labelled_rows": our_rows})
    judged = not (ours is None or theirs is None or min(our_rows, their_rows) < release.min_labelled_rows)
    at_least_as_good = False
    if not judged:
        notes.append(f"accuracy not gated: {our_rows} labelled rows answered by the candidate "
                     f"(at least {release.min_labelled_rows} needed on each side)")
    else:
        worse = (theirs - ours) if metric == "roc_auc" else (ours - theirs)
        at_least_as_good = worse <= spec.gates.max_regression
        if not at_least_as_good:
            problems.append(f"live {metric} {ours:.4f} worse than the incumbent's {theirs:.4f} "
                            f"(tolerance {spec.gates.max_regression})")
        else:
            notes.append(f"live {metric} {ours:.4f} vs the incumbent's {theirs:.4f}")

    if step == "shadow":
        # Agreement guards against a silently different model where outcomes cannot judge it; a
        # candidate proven at least as accurate on labelled rows may disagree (the incumbent may
        # be the one that decayed).
        a = np.array(incumbent.scores, dtype=float)
        b = np.array(candidate.scores, dtype=float)
        answered = ~np.isnan(a) & ~np.isnan(b)
        agreement = float(np.mean(_agree(a[answered], b[answered], spec))) if answered.any() else 0.0
        metadata["agreement"] = round(agreement, 4)
        if agreement < release.min_agreement:
            text = (f"agrees with the incumbent on {agreement:.1%} of rows (at least "
                    f"{release.min_agreement:.0%} required)")
            if at_least_as_good:
                notes.append(f"{text}, not gated: it is at least as accurate on labelled rows")
            else:
                problems.append(text)

    summary = (f"{step}: v{candidate.version} against v{incumbent.version} over {candidate.requests} requests; "
               f"error rate {candidate.error_rate:.1%}, p99 {candidate.p99_ms:.1f} ms vs {incumbent.p99_ms:.1f} ms"
               + (f", agreement {metadata['agreement']:.1%}" if "agreement" in metadata else ""))
    description = "; ".join([summary, *problems, *notes])
    return StepVerdict(step, not problems, description, metadata)


def traffic_rows(snapshot: pl.DataFrame, spec: UseCase) -> pl.DataFrame:
    """The replayed traffic: the latest rows of the candidate's holdout days, which neither the
    candidate nor (trained earlier) the incumbent learned from."""
    stamp = pl.col(spec.features.timestamp)
    holdout = snapshot.filter(stamp > stamp.max() - pl.duration(days=spec.training.holdout_days))
    return holdout.sort(spec.features.timestamp).tail(spec.release.rollout_requests)
