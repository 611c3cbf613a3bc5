"""Deployments: one asset per environment in the spec, serving the champion, gated after deploy.

Post-deploy gates prove the served model is the one that passed the model gates: it is ready, it
answers a sample exactly as the registered model does offline, it meets the latency budget at the
stated concurrency, and it rejects malformed input with a 4xx. When one fails, the previous champion
is restored and served again. An environment that needs approval deploys nothing without one: the
`approval` gate fails instead.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import polars as pl

from assay.approvals import find_approval
from assay.settings import state
from assay.spec import UseCase
from resources.deployer import Deployer
from resources.registry import ModelRegistry, PromotionRefused
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


def _sample(spec: UseCase, registry: ModelRegistry, version) -> pl.DataFrame:
    """The last rows of the snapshot the version was trained on: its holdout end."""
    sha = version.tags["assay.training_set_sha256"]
    path = state().snapshots / spec.name / "training_set" / f"{sha}.parquet"
    return pl.read_parquet(path).tail(50)


def _check(name: str, passed: bool, description: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, passed=bool(passed), severity=dg.AssetCheckSeverity.ERROR,
                               description=description, metadata=metadata)


def post_deploy_checks(spec: UseCase, endpoint, registry: ModelRegistry, version) -> list[dg.AssetCheckResult]:
    import mlflow.pyfunc

    from training.tabular import FeatureSet
    from training.train import model_input

    f, release = spec.features, spec.release
    served = {(s.name, s.version) for s in endpoint.served()}
    ready = (spec.name, version.version) in served
    checks = [_check("ready", ready, f"serving {sorted(served)} at {endpoint.url}", url=endpoint.url)]

    sample = _sample(spec, registry, version)
    status, body = endpoint.infer(spec.name, v2_request(sample, f.columns.numeric, f.columns.categorical))
    features = FeatureSet(f.columns.numeric, f.columns.categorical, f.target, f.task)
    offline = np.asarray(mlflow.pyfunc.load_model(version.uri).predict(model_input(sample, features)), dtype=float)
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

    with ThreadPoolExecutor(release.latency_concurrency) as pool:
        results = list(pool.map(timed, range(release.latency_requests)))
    latencies = np.array([ms for _, ms in results])
    errors = sum(code != 200 for code, _ in results)
    p99 = float(np.percentile(latencies, 99))
    checks.append(_check(
        "latency_p99", p99 <= release.latency_p99_ms and errors == 0,
        f"p99 {p99:.1f} ms, p50 {np.percentile(latencies, 50):.1f} ms over {len(results)} single-row requests at "
        f"concurrency {release.latency_concurrency} (budget {release.latency_p99_ms} ms); {errors} errors",
        p99_ms=round(p99, 2), p50_ms=round(float(np.percentile(latencies, 50)), 2), errors=errors,
        budget_ms=release.latency_p99_ms, concurrency=release.latency_concurrency,
    ))

    malformed = v2_request(sample.head(1), f.columns.numeric, f.columns.categorical)
    malformed["inputs"] = malformed["inputs"][1:]
    status, body = endpoint.infer(spec.name, malformed)
    checks.append(_check("rejects_malformed", 400 <= status < 500,
                         f"a request without {f.columns.numeric[0]!r} got {status}: {str(body)[:200]}", status=status))
    return checks


def build_deployment(spec: UseCase, environment: str) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, f"deployment_{environment}"])
    needs_approval = environment in spec.release.approval_required
    gates = {g: d for g, d in GATES.items() if g != "approval" or needs_approval}

    @dg.asset(
        key=key,
        deps=[dg.AssetKey([spec.name, "champion"])],
        description=f"`{spec.name}`'s champion served in {environment}"
        + (" once approved" if needs_approval else "") + "; rolled back to the previous champion when a "
        "post-deploy gate fails.",
        group_name=f"{spec.name}_release",
        owners=[spec.owner],
        kinds={"mlserver", "seldon"},
        tags={"stage": "deployment", "use_case": spec.name, "environment": environment},
        check_specs=[dg.AssetCheckSpec(g, asset=key, blocking=True, description=d) for g, d in gates.items()],
        output_required=False,  # an unapproved production deploy materializes nothing
    )
    def deployment(context: dg.AssetExecutionContext, registry: ModelRegistry, deployer: Deployer):
        champion = registry.alias(spec.name)
        if champion is None:
            raise dg.Failure(f"{spec.name} has no champion to deploy")
        if needs_approval:
            approval = find_approval(state().root / "approvals.jsonl", spec.name, environment, champion.version)
            if approval is None:
                yield _check("approval", False, f"no recorded approval of {spec.name} v{champion.version} for "
                             f"{environment}: run `assay approve {spec.name} --environment {environment} "
                             f"--version {champion.version} --by <you> --reason <why>`", version=champion.version)
                return
            yield _check("approval", True, f"approved by {approval.by} at {approval.at}: {approval.reason}",
                         by=approval.by, at=approval.at, reason=approval.reason)

        endpoint = deployer.deploy(registry, spec.name, environment, champion.version)
        checks = post_deploy_checks(spec, endpoint, registry, champion)
        failed = [c.check_name for c in checks if not c.passed]
        rolled_back_to = None
        if failed:
            try:
                previous = registry.rollback(spec.name, reason=f"post-deploy gates failed in {environment}: {failed}")
            except PromotionRefused as refusal:
                context.log.error(f"post-deploy gates {failed} failed and {refusal}")
            else:
                deployer.deploy(registry, spec.name, environment, previous.version)
                rolled_back_to = previous.version
                context.log.warning(f"rolled back {spec.name} in {environment} to v{previous.version}")
        yield dg.MaterializeResult(
            asset_key=key,
            data_version=dg.DataVersion(f"v{rolled_back_to or champion.version}"),
            metadata={
                "deployed_version": champion.version,
                "serving_version": rolled_back_to or champion.version,
                "rolled_back_to": rolled_back_to or "none",
                "url": dg.MetadataValue.url(f"{endpoint.url}/v2/models/{spec.name}"),
                "environment": environment,
            },
        )
        yield from checks

    return deployment


def build_deployments(spec: UseCase) -> list[dg.AssetsDefinition]:
    return [build_deployment(spec, environment) for environment in spec.release.environments]

