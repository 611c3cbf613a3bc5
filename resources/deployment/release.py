"""A release: the champion served in one environment, gated after deploy, and the one rollback.

A new champion reaches an environment by the spec's strategy: shadow and canary steps against the
version serving there (rollout.py), each gated on live figures, then the full release. Post-deploy
gates then prove the served model is the one that passed the model gates: it is ready, it answers a
sample exactly as the registered model does offline, it meets the latency budget at the stated
concurrency, and it rejects malformed input with a 4xx. When a rollout or post-deploy gate fails,
the version that served before is restored and the champion alias rolled back; with nothing to
restore, the failed version is barred (it loses the champion alias and can never be promoted again)
and withdrawn: the environment serves nothing rather than a version that failed. An environment that
needs approval deploys nothing without an approval of this very artifact (its whole-model sha256).
The offline predictions compared with the served ones come from the registry's verified load (the
files hashed before unpickling). Every step, deployment and rollback is appended to the release log
(assay/releases.py), witnessed by the registry.

No Dagster here: the deployment asset (assets/deployment.py) turns these results into asset checks
and a materialization, `assay rollback` calls the same `roll_back`, and a benchmark can run the
post-deploy gates on their own. Everything works through the Deployer interface (deployer.py) and
the ModelRegistry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from assay.approvals import find_approval
from assay.contract import GateResult
from assay.releases import ReleaseEvent, record
from assay.settings import state
from assay.spec import ROLLOUT_STEPS, UseCase
from resources.deployment.deployer import Deployer
from resources.deployment.rollout import StepVerdict, gate_name, judge, replay_traffic, traffic_rows
from resources.registry import ModelRegistry, PromotionRefused, Version
from serving.requests import predictions, v2_request
from training.tags import MODEL_SHA256_TAG, TRAINING_SET_SHA256_TAG

GATES = {
    "approval": "A person approved this model version for this environment (who, when, why): "
    "production changes only by a recorded decision.",
    "ready": "The served endpoint reports ready and serves the champion's version.",
    "smoke_equals_offline": "The served predictions on a holdout sample equal the registered model's offline "
    "predictions within the spec's tolerance: what serves is what passed the model gates.",
    "latency_p99": "p99 latency of single-row requests at the spec's concurrency is within its budget.",
    "rejects_malformed": "A request with a missing feature gets a 4xx, not a 500 or a prediction.",
}


def rollout_gates(spec: UseCase) -> dict[str, str]:
    """The gate of each staged step of the spec's strategy, with its description."""
    return {gate_name(step): f"The candidate passed the {step} step against the incumbent on replayed traffic: "
            "error rate, p99 latency, agreement and accuracy on labelled rows (see resources/deployment/rollout.py)."
            for step in spec.release.strategy if step in ROLLOUT_STEPS}


def _snapshot(spec: UseCase, version: Version) -> pl.DataFrame:
    """The training-set snapshot the version was trained on."""
    sha = version.tags[TRAINING_SET_SHA256_TAG]
    return pl.read_parquet(state().training_snapshot(spec.name, sha))


def _sample(spec: UseCase, version: Version) -> pl.DataFrame:
    """The last rows of the snapshot the version was trained on: its holdout end."""
    return _snapshot(spec, version).tail(50)


def approval_gate(spec: UseCase, environment: str, champion: Version) -> GateResult:
    """Whether a person approved this very artifact (number and whole-model sha256) for `environment`."""
    sha256 = champion.tags.get(MODEL_SHA256_TAG)
    approval = find_approval(state().root / "approvals.jsonl", spec.name, environment, champion.version, sha256)
    if approval is None:
        return GateResult("approval", False, f"no recorded approval of {spec.name} v{champion.version} (sha256 "
                          f"{str(sha256)[:12]}…) for {environment}: run `assay approve {spec.name} --environment "
                          f"{environment} --version {champion.version} --by <you> --reason <why>`",
                          {"version": champion.version})
    return GateResult("approval", True, f"approved by {approval.by} at {approval.at}: {approval.reason}",
                      {"by": approval.by, "at": approval.at, "reason": approval.reason})


WARM_UP_REQUESTS = 20


def latency_budget(release, timed) -> tuple[float | None, str]:
    """The spec's `release.latency_p99_ms`, else one derived from a sequential warm-up of the served model
    (`timed(i)` sends one single-row request, returning its status and milliseconds). At concurrency c a
    server answering one request at a time keeps each waiting about c answers long, so the derived budget
    is twice c times the warm-up's p99: it bounds what concurrency costs, whatever the model costs.
    Returns (None, why) when the warm-up cannot derive it, which fails the gate naming the field."""
    if release.latency_p99_ms is not None:
        return float(release.latency_p99_ms), f"{release.latency_p99_ms} ms, release.latency_p99_ms"
    warm_up = [timed(i) for i in range(WARM_UP_REQUESTS)]
    answered = [ms for code, ms in warm_up if code == 200]
    if len(answered) < len(warm_up):
        return None, (f"release.latency_p99_ms is not set and the warm-up could not derive it: "
                      f"{len(answered)} of {len(warm_up)} sequential single-row requests answered 200")
    warm_p99 = float(np.percentile(answered, 99))
    budget = round(2 * release.latency_concurrency * warm_p99, 2)
    return budget, (f"{budget} ms derived: 2 x concurrency {release.latency_concurrency} x p99 {warm_p99:.1f} ms "
                    f"of {WARM_UP_REQUESTS} sequential requests")


def post_deploy_checks(spec: UseCase, endpoint, registry: ModelRegistry, version: Version) -> list[GateResult]:
    """The post-deploy gates of `version` as `endpoint` serves it: ready, smoke_equals_offline, latency_p99,
    rejects_malformed."""
    from training.train import model_input

    f, release = spec.features, spec.release
    served = {(s.name, s.version) for s in endpoint.served()}
    ready = (spec.name, version.version) in served
    checks = [GateResult("ready", ready, f"serving {sorted(served)} at {endpoint.url}", {"url": endpoint.url})]

    sample = _sample(spec, version)
    status, body = endpoint.infer(spec.name, v2_request(sample, f.columns.numeric, f.columns.categorical))
    features = f.feature_set()
    offline = np.asarray(registry.load_model(spec.name, version.version).predict(model_input(sample, features)),
                         dtype=float)
    if status == 200:
        gap = float(np.max(np.abs(np.asarray(predictions(body)) - offline)))
        checks.append(GateResult(
            "smoke_equals_offline", gap <= release.smoke_tolerance,
            f"largest difference {gap:.2e} over {sample.height} rows (tolerance {release.smoke_tolerance})",
            {"rows": sample.height, "max_abs_difference": gap}))
    else:
        checks.append(GateResult("smoke_equals_offline", False, f"the served model answered {status}: {body}"))

    rows = [v2_request(sample[i : i + 1], f.columns.numeric, f.columns.categorical) for i in range(sample.height)]

    def timed(i: int) -> tuple[int, float]:
        began = time.perf_counter()
        code, _ = endpoint.infer(spec.name, rows[i % len(rows)])
        return code, (time.perf_counter() - began) * 1000

    budget, budget_from = latency_budget(release, timed)
    with ThreadPoolExecutor(release.latency_concurrency) as pool:
        results = list(pool.map(timed, range(release.latency_requests)))
    latencies = np.array([ms for _, ms in results])
    errors = sum(code != 200 for code, _ in results)
    p99 = float(np.percentile(latencies, 99))
    checks.append(GateResult(
        "latency_p99", budget is not None and p99 <= budget and errors == 0,
        f"p99 {p99:.1f} ms, p50 {np.percentile(latencies, 50):.1f} ms over {len(results)} single-row requests at "
        f"concurrency {release.latency_concurrency} (budget {budget_from}); {errors} errors",
        {"p99_ms": round(p99, 2), "p50_ms": round(float(np.percentile(latencies, 50)), 2), "errors": errors,
         "budget_ms": budget, "budget_from": budget_from, "concurrency": release.latency_concurrency},
    ))

    malformed = v2_request(sample.head(1), f.columns.numeric, f.columns.categorical)
    malformed["inputs"] = malformed["inputs"][1:]
    status, body = endpoint.infer(spec.name, malformed)
    checks.append(GateResult("rejects_malformed", 400 <= status < 500,
                             f"a request without {f.columns.numeric[0]!r} got {status}: {str(body)[:200]}",
                             {"status": status}))
    return checks


def progressive_rollout(spec: UseCase, environment: str, registry: ModelRegistry, deployer: Deployer,
                        champion: Version, incumbent: str | None, by: str, log: logging.Logger) -> list[StepVerdict]:
    """Shadow and canary steps of the spec's strategy, stopping at the first failed gate.

    With nothing serving, or the champion already serving, there is nothing to compare against:
    each step passes and says so, as the no-regression gate does for a first model."""
    steps = [step for step in spec.release.strategy if step in ROLLOUT_STEPS]
    if incumbent is None or incumbent == champion.version:
        why = (f"nothing served in {environment} yet" if incumbent is None
               else f"v{champion.version} already serves {environment}")
        return [StepVerdict(step, True, f"{step}: {why}; nothing to compare", {}) for step in steps]
    rows = traffic_rows(_snapshot(spec, champion), spec)
    labels = rows[spec.features.target].cast(pl.Float64).to_numpy()
    verdicts = []
    for step in steps:
        endpoint = deployer.stage(registry, spec.name, environment, incumbent, champion.version, step,
                                  spec.release.canary_weight)
        before, after = replay_traffic(endpoint, spec, rows, incumbent, champion.version, step,
                                       spec.release.canary_weight)
        verdict = judge(step, spec, before, after, labels)
        verdicts.append(verdict)
        record(state().root, ReleaseEvent(spec.name, step, champion.version, environment, incumbent,
                                           by=by, reason=verdict.description, passed=verdict.passed), witness=registry)
        log.info(verdict.description)
        if not verdict.passed:
            break
    return verdicts


@dataclass(frozen=True)
class Restored:
    """An environment serving an earlier version again, in place of `replaced`."""

    environment: str
    version: str
    replaced: str
    endpoint: Any


@dataclass(frozen=True)
class Rollback:
    champion: Version | None  # the champion again; None where the registry had none and the failed version was barred
    restored: list[Restored]
    refused: str | None = None  # why the registry could not roll back


def roll_back(registry: ModelRegistry, deployer: Deployer, name: str, environments: Mapping[str, str | None],
              by: str, reason: str, failed: Version | None = None) -> Rollback:
    """The one rollback: after a release's gate failed (`failed`, the version released) or asked by a person.

    The registry's previous champion becomes the champion again, and the version rolled back from can never
    be promoted again (ModelRegistry.rollback); for a person's rollback the registry records who asked. With
    no previous champion a person's rollback is refused (PromotionRefused, nothing changed), while a failed
    version is barred anyway. Then each of `environments` serves again what served there before the failed
    release (its value), else the restored champion: in place of the failed version, or for a person's
    rollback of whatever serves there, and only where something else serves. Each restore is recorded as
    `rolled_back` in the release log."""
    try:
        champion, refused = registry.rollback(name, reason=reason if failed else f"by {by}: {reason}"), None
    except PromotionRefused as refusal:
        if failed is None:
            raise
        registry.bar(name, failed.version, reason=reason)
        champion, refused = None, str(refusal)
    restored = []
    for environment, served_before in environments.items():
        replacing = failed.version if failed else deployer.incumbent(name, environment)
        version = served_before if served_before not in (None, replacing) else (champion and champion.version)
        if replacing is None or version in (None, replacing):
            continue
        endpoint = deployer.deploy(registry, name, environment, version)
        record(state().root, ReleaseEvent(name, "rolled_back", version, environment, replacing, by=by,
                                          reason=reason), witness=registry)
        restored.append(Restored(environment, version, replacing, endpoint))
    return Rollback(champion, restored, refused)


@dataclass(frozen=True)
class Release:
    """How a release of `version` ended: what serves now (None: nothing, the failed version withdrawn)."""

    version: str
    incumbent: str | None  # what served before
    serving: str | None
    endpoint: Any | None
    gates: list[GateResult]  # the rollout steps' gates, then the post-deploy gates of what serves

    @property
    def rolled_back_to(self) -> str | None:
        return self.serving if self.serving not in (None, self.version) else None


def roll_out(spec: UseCase, environment: str, registry: ModelRegistry, deployer: Deployer, champion: Version,
             by: str, log: logging.Logger) -> Release:
    """Roll `champion` out in `environment` by the spec's strategy, gate it after deploy, and roll back
    (`roll_back`) when a gate fails; `by` names who or what released, in the release log."""
    incumbent = deployer.incumbent(spec.name, environment)
    verdicts = progressive_rollout(spec, environment, registry, deployer, champion, incumbent, by, log)
    stopped_at = next((v.step for v in verdicts if not v.passed), None)
    endpoint = None
    if stopped_at is None:
        endpoint = deployer.deploy(registry, spec.name, environment, champion.version)
        if incumbent != champion.version:
            record(state().root, ReleaseEvent(spec.name, "deployed", champion.version, environment, incumbent,
                                              by=by, reason="every rollout step passed"), witness=registry)
        checks = post_deploy_checks(spec, endpoint, registry, champion)
        failed = [c.name for c in checks if not c.passed]
    else:
        checks, failed = [], [gate_name(stopped_at)]

    serving = champion.version
    if failed:
        reason = f"gates failed in {environment}: {failed}"
        rollback = roll_back(registry, deployer, spec.name, {environment: incumbent}, by, reason, failed=champion)
        if rollback.refused:
            log.error(f"{reason} and {rollback.refused}: v{champion.version} is barred")
        if rollback.restored:
            endpoint, serving = rollback.restored[0].endpoint, rollback.restored[0].version
            log.warning(f"rolled back {spec.name} in {environment} to v{serving}")
            if not checks:  # the release stopped in a rollout step: prove the restored version serves
                checks = post_deploy_checks(spec, endpoint, registry, registry.version(spec.name, serving))
        elif stopped_at is None:  # nothing to return to: serve nothing rather than what failed
            deployer.withdraw(registry, spec.name, environment)
            serving = None
            record(state().root, ReleaseEvent(spec.name, "withdrawn", champion.version, environment, incumbent,
                                              by=by, reason=reason), witness=registry)
            log.error(f"withdrew {spec.name} v{champion.version} from {environment}: nothing serves it")
    rollout = [GateResult(gate_name(v.step), v.passed, v.description, v.metadata) for v in verdicts]
    return Release(champion.version, incumbent, serving, endpoint, rollout + checks)
