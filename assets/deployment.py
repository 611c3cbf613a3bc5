"""Deployments: one asset per environment in the spec, serving the champion, gated after deploy.

A new champion reaches an environment by the spec's strategy: shadow and canary steps against the
version serving there (assets/rollout.py), each gated on live figures, then the full release.
Post-deploy gates then prove the served model is the one that passed the model gates: it is ready,
it answers a sample exactly as the registered model does offline, it meets the latency budget at the
stated concurrency, and it rejects malformed input with a 4xx. When a rollout or post-deploy gate
fails, the version that served before is restored and the champion alias rolled back; with nothing
to restore, the failed version is barred (it loses the champion alias and can never be promoted
again) and withdrawn: the environment serves nothing rather than a version that failed. An
environment that needs approval deploys nothing without an approval of this very artifact (its
whole-model sha256): the `approval` gate fails instead. The offline predictions compared with the
served ones come from the registry's verified load (the files hashed before unpickling). Every
step, deployment and rollback is appended to the release log (assay/releases.py), witnessed by the
registry.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import polars as pl

from assay.approvals import find_approval
from assay.releases import ReleaseEvent, record
from assay.settings import state
from assay.spec import ROLLOUT_STEPS, UseCase
from automation.conditions import follows_gated_upstream
from assets.rollout import StepVerdict, judge, replay_traffic, traffic_rows
from resources.deployment.deployer import Deployer
from resources.registry import ModelRegistry, PromotionRefused
from training.artifacts import MODEL_SHA256_TAG
from serving.requests import predictions, v2_request

GATES = {
    "approval": "A person approved this model version for this environment (who, when, why): "
    "production changes only by a recorded decision.",
    "ready": "The served endpoint reports ready and serves the champion's version.",
    "smoke_equals_offline": "The served predictions on a holdout sample equal the registered model's offline "
    "predictions within the spec's tolerance: what serves is what passed the model gates.",
    "latency_p99": "p99 latency of single-row requests at the spec's concurrency is within its budget.",
    "rejects_malformed": "A request with a missing feature gets a 4xx, not a 500 or a prediction.",
}


def _snapshot(spec: UseCase, version) -> pl.DataFrame:
    """The training-set snapshot the version was trained on."""
    sha = version.tags["assay.training_set_sha256"]
    return pl.read_parquet(state().training_snapshot(spec.name, sha))


def _sample(spec: UseCase, registry: ModelRegistry, version) -> pl.DataFrame:
    """The last rows of the snapshot the version was trained on: its holdout end."""
    return _snapshot(spec, version).tail(50)


def _check(name: str, passed: bool, description: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, passed=bool(passed), severity=dg.AssetCheckSeverity.ERROR,
                               description=description, metadata=metadata)


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


def post_deploy_checks(spec: UseCase, endpoint, registry: ModelRegistry, version) -> list[dg.AssetCheckResult]:
    from training.tabular import FeatureSet
    from training.train import model_input

    f, release = spec.features, spec.release
    served = {(s.name, s.version) for s in endpoint.served()}
    ready = (spec.name, version.version) in served
    checks = [_check("ready", ready, f"serving {sorted(served)} at {endpoint.url}", url=endpoint.url)]

    sample = _sample(spec, registry, version)
    status, body = endpoint.infer(spec.name, v2_request(sample, f.columns.numeric, f.columns.categorical))
    features = FeatureSet(f.columns.numeric, f.columns.categorical, f.target, f.task)
    offline = np.asarray(registry.load_model(spec.name, version.version).predict(model_input(sample, features)),
                         dtype=float)
    if status == 200:
        gap = float(np.max(np.abs(np.asarray(predictions(body)) - offline)))
        checks.append(_check("smoke_equals_offline", gap <= release.smoke_tolerance,
                             f"largest difference {gap:.2e} over {sample.height} rows (tolerance {release.smoke_tolerance})",
                             rows=sample.height, max_abs_difference=gap))
    else:
        checks.append(_check("smoke_equals_offline", False, f"the served model answered {status}: {body}"))

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
    checks.append(_check(
        "latency_p99", budget is not None and p99 <= budget and errors == 0,
        f"p99 {p99:.1f} ms, p50 {np.percentile(latencies, 50):.1f} ms over {len(results)} single-row requests at "
        f"concurrency {release.latency_concurrency} (budget {budget_from}); {errors} errors",
        p99_ms=round(p99, 2), p50_ms=round(float(np.percentile(latencies, 50)), 2), errors=errors,
        budget_ms=budget, budget_from=budget_from, concurrency=release.latency_concurrency,
    ))

    malformed = v2_request(sample.head(1), f.columns.numeric, f.columns.categorical)
    malformed["inputs"] = malformed["inputs"][1:]
    status, body = endpoint.infer(spec.name, malformed)
    checks.append(_check("rejects_malformed", 400 <= status < 500,
                         f"a request without {f.columns.numeric[0]!r} got {status}: {str(body)[:200]}", status=status))
    return checks


def _rollout_checks(spec: UseCase) -> dict[str, str]:
    return {f"rollout_{step}": f"The candidate passed the {step} step against the incumbent on replayed traffic: "
            "error rate, p99 latency, agreement and accuracy on labelled rows (see assets/rollout.py)."
            for step in spec.release.strategy if step in ROLLOUT_STEPS}


def progressive_rollout(context, spec: UseCase, environment: str, registry: ModelRegistry, deployer: Deployer,
                        champion, incumbent: str | None) -> list[StepVerdict]:
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
                                           by=f"run {context.run.run_id}", reason=verdict.description,
                                           passed=verdict.passed), witness=registry)
        context.log.info(verdict.description)
        if not verdict.passed:
            break
    return verdicts


def build_deployment(spec: UseCase, environment: str) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, f"deployment_{environment}"])
    needs_approval = environment in spec.release.approval_required
    gates = {g: d for g, d in GATES.items() if g != "approval" or needs_approval} | _rollout_checks(spec)

    @dg.asset(
        key=key,
        deps=[dg.AssetKey([spec.name, "champion"])],
        description=f"`{spec.name}`'s champion served in {environment}"
        + (" once approved" if needs_approval else "") + f", rolled out by {' then '.join(spec.release.strategy)}; "
        "rolled back to the incumbent when a rollout or post-deploy gate fails.",
        group_name=f"{spec.name}_release",
        owners=[spec.owner],
        kinds={"mlserver", "seldon"},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=spec.freshness.deployment),
        tags={"stage": "deployment", "use_case": spec.name, "environment": environment},
        check_specs=[dg.AssetCheckSpec(g, asset=key, blocking=True, description=d) for g, d in gates.items()],
        output_required=False,  # an unapproved production deploy materializes nothing
        # Follows a new champion once its gates passed, in this run or an earlier one; an
        # environment that needs approval moves only when a person has approved and asks.
        automation_condition=None if needs_approval else follows_gated_upstream(),
    )
    def deployment(context: dg.AssetExecutionContext, registry: ModelRegistry, deployer: Deployer):
        champion = registry.alias(spec.name)
        if champion is None:
            raise dg.Failure(f"{spec.name} has no champion to deploy")
        if needs_approval:
            approval = find_approval(state().root / "approvals.jsonl", spec.name, environment, champion.version,
                                     champion.tags.get(MODEL_SHA256_TAG))
            if approval is None:
                yield _check("approval", False, f"no recorded approval of {spec.name} v{champion.version} (sha256 "
                             f"{str(champion.tags.get(MODEL_SHA256_TAG))[:12]}…) for "
                             f"{environment}: run `assay approve {spec.name} --environment {environment} "
                             f"--version {champion.version} --by <you> --reason <why>`", version=champion.version)
                return
            yield _check("approval", True, f"approved by {approval.by} at {approval.at}: {approval.reason}",
                         by=approval.by, at=approval.at, reason=approval.reason)

        by = f"run {context.run.run_id}"
        incumbent = deployer.incumbent(spec.name, environment)
        verdicts = progressive_rollout(context, spec, environment, registry, deployer, champion, incumbent)
        failed_step = next((v.step for v in verdicts if not v.passed), None)
        if failed_step is None:
            endpoint = deployer.deploy(registry, spec.name, environment, champion.version)
            if incumbent != champion.version:
                record(state().root, ReleaseEvent(spec.name, "deployed", champion.version, environment, incumbent,
                                                  by=by, reason="every rollout step passed"), witness=registry)
            checks = post_deploy_checks(spec, endpoint, registry, champion)
            failed = [c.check_name for c in checks if not c.passed]
        else:
            checks, failed = [], [f"rollout_{failed_step}"]

        serving = champion.version
        if failed:
            reason = f"gates failed in {environment}: {failed}"
            try:
                previous = registry.rollback(spec.name, reason=reason)
            except PromotionRefused as refusal:
                previous = None
                registry.bar(spec.name, champion.version, reason=reason)
                context.log.error(f"{reason} and {refusal}: v{champion.version} is barred")
            # What served before this release serves again; with nothing before, the registry's previous.
            restore = incumbent if incumbent not in (None, champion.version) else (previous and previous.version)
            if restore:
                endpoint = deployer.deploy(registry, spec.name, environment, restore)
                serving = restore
                record(state().root, ReleaseEvent(spec.name, "rolled_back", restore, environment, champion.version,
                                                  by=by, reason=reason), witness=registry)
                context.log.warning(f"rolled back {spec.name} in {environment} to v{restore}")
                if not checks:  # the release stopped in a rollout step: prove the restored version serves
                    checks = post_deploy_checks(spec, endpoint, registry, registry.version(spec.name, restore))
            elif failed_step is None:  # nothing to return to: serve nothing rather than what failed
                deployer.withdraw(registry, spec.name, environment)
                serving = None
                record(state().root, ReleaseEvent(spec.name, "withdrawn", champion.version, environment, incumbent,
                                                  by=by, reason=reason), witness=registry)
                context.log.error(f"withdrew {spec.name} v{champion.version} from {environment}: nothing serves it")
        rolled_back_to = serving if serving not in (None, champion.version) else None
        if rolled_back_to or (failed_step is None and serving is not None):
            yield dg.MaterializeResult(
                asset_key=key,
                data_version=dg.DataVersion(f"v{serving}"),
                metadata={
                    "deployed_version": champion.version,
                    "serving_version": serving,
                    "rolled_back_to": rolled_back_to or "none",
                    "previous_incumbent": incumbent or "none",
                    "url": dg.MetadataValue.url(f"{endpoint.url}/v2/models/{spec.name}"),
                    "environment": environment,
                },
            )
        yield from (_check(f"rollout_{v.step}", v.passed, v.description, **v.metadata) for v in verdicts)
        yield from checks

    return deployment


def build_deployments(spec: UseCase) -> list[dg.AssetsDefinition]:
    return [build_deployment(spec, environment) for environment in spec.release.environments]

