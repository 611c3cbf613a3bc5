"""Candidate models (one asset per model family in the spec) and the champion.

Training itself runs outside Dagster, through Pipes (training/train.py), and reports its gates
back; the integrity gate is checked here, in another process than the one that trained, by
hashing what the registry actually holds: the payload against the one trained, and the whole
logged model (MLmodel, python_model.pkl, code/, payload) against `assay.model_sha256`.
"""

import json
import subprocess

import dagster as dg

from assay import asset_keys
from assay.releases import ReleaseEvent, record
from assay.settings import REPO_ROOT, state
from assay.spec import UseCase
from resources.registry import ModelRegistry, PromotionRefused
from resources.training.trainer import Trainer, training_job
from training.evaluation import PRIMARY
from training.job import TrainingJob
from training.tags import (
    DAGSTER_RUN_ID_TAG,
    FEATURE_MODEL_VERSIONS_TAG,
    GIT_SHA_TAG,
    PAYLOAD_SHA256_TAG,
    STARTED_BY_TAG,
)

GATES = {
    "performance_floor": "Holdout metrics at or beyond the spec's floor: protects against a model no better than chance.",
    "no_regression": "At least as good as the current champion on the same holdout, within the spec's tolerance: "
    "protects against replacing the serving model with a worse one.",
    "slice_parity": "The largest metric gap across values of each slice column (large enough slices only) is "
    "within the spec's limit: protects a route, carrier or airport from a model that fails it.",
    "calibration": "Expected calibration error within the spec's limit: the probabilities mean what they say.",
    "leakage": "No feature is the target or known only after prediction, and the holdout score is plausible: "
    "protects against a model that scores well offline only because it sees the answer.",
    "integrity": "The model in the registry hashes to the one that was trained and logged (payload, code, "
    "python_model.pkl, MLmodel): nothing swapped or edited in between.",
}


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def started_by(context: dg.AssetExecutionContext) -> str:
    """Who or what started the run, from the tags Dagster puts on it."""
    tags = context.run.tags
    for tag, label in (("dagster/sensor_name", "sensor"), ("dagster/schedule_name", "schedule"),
                       ("dagster/backfill", "backfill"), ("user", "user"), ("dagster/from", "cli")):
        if tag in tags:
            return f"{label}:{tags[tag]}"
    return "manual"


def _training_set(context: dg.AssetExecutionContext, spec: UseCase) -> dg.AssetMaterialization:
    event = context.instance.get_latest_materialization_event(asset_keys.training_set(spec))
    if event is None:
        raise dg.Failure(f"{asset_keys.training_set(spec).to_user_string()} has never been materialized")
    return event.asset_materialization


def _feature_versions(context: dg.AssetExecutionContext, spec: UseCase) -> dict[str, str | None]:
    """The dbt model hash each feature table was last built with (what the training set read)."""
    versions = {}
    for model in spec.features.dbt_models:
        event = context.instance.get_latest_materialization_event(asset_keys.dbt_model(spec, model))
        versions[model] = event.asset_materialization.tags.get("dagster/code_version") if event else None
    return versions


def _training_job_for_run(context: dg.AssetExecutionContext, spec: UseCase, family: str,
                          registry: ModelRegistry) -> TrainingJob:
    snapshot = _training_set(context, spec)
    return training_job(spec, family, {k: v.value for k, v in snapshot.metadata.items()}, registry.alias(spec.name), {
        FEATURE_MODEL_VERSIONS_TAG: json.dumps(_feature_versions(context, spec), sort_keys=True),
        GIT_SHA_TAG: _git_sha(),
        DAGSTER_RUN_ID_TAG: context.run.run_id,
        STARTED_BY_TAG: started_by(context),
    })


def _with_description(result):
    """Pipes carries a check's explanation in its metadata; lift it to the check's description."""
    if isinstance(result, dg.AssetCheckResult) and "description" in result.metadata:
        text = result.metadata["description"]
        return result._replace(description=getattr(text, "value", text))
    return result


def build_candidate(spec: UseCase, family: str) -> dg.AssetsDefinition:
    key = asset_keys.model(spec, family)
    gates = {g: d for g, d in GATES.items() if g != "calibration" or spec.features.task == "binary_classification"}

    @dg.asset(
        key=key,
        deps=[asset_keys.training_set(spec)],
        description=f"A {family} candidate for `{spec.features.target}` ({spec.features.task}), trained through "
        f"Pipes on the latest training set and registered in MLflow as `{spec.name}`.",
        group_name=f"{spec.name}_models",
        owners=[spec.owner],
        kinds={"mlflow", family},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=spec.freshness.models),
        tags={"stage": "model", "use_case": spec.name},
        check_specs=[dg.AssetCheckSpec(g, asset=key, blocking=True, description=d) for g, d in gates.items()],
        pool="gpu",  # bounds concurrent trainings; on Kubernetes each one holds a GPU
    )
    def candidate(context: dg.AssetExecutionContext, trainer: Trainer, registry: ModelRegistry):
        job = _training_job_for_run(context, spec, family, registry)
        registry.ensure_experiment(job.experiment)
        invocation = trainer.train(context, job.to_extras(), registry.tracking_uri)
        results = [_with_description(r) for r in invocation.get_results()]
        materialization = next(r for r in results if isinstance(r, dg.MaterializeResult))
        version = materialization.metadata["model_version"].value
        trained = materialization.metadata["artifact_sha256"].value
        logged = materialization.metadata["model_sha256"].value
        verified, registered, whole = registry.verify_artifact(spec.name, version, trained, logged)
        yield from results
        yield dg.AssetCheckResult(
            check_name="integrity", passed=verified, severity=dg.AssetCheckSeverity.ERROR,
            description=f"registered payload sha256 {registered[:12]}… and whole model {whole[:12]}… "
            f"{'equal' if verified else 'differ from'} the trained {trained[:12]}… and logged {logged[:12]}…",
            metadata={"trained_sha256": trained, "registered_sha256": registered, "logged_model_sha256": logged,
                      "registered_model_sha256": whole, "model_version": version},
        )

    return candidate


def build_champion(spec: UseCase) -> dg.AssetsDefinition:
    key = asset_keys.champion(spec)
    candidates = [asset_keys.model(spec, family) for family in spec.models]
    metric, higher = PRIMARY[spec.features.task]

    @dg.asset(
        key=key,
        deps=candidates,
        description=f"The model version serving as `{spec.name}`'s champion (MLflow alias `champion`): the best "
        f"candidate by holdout {metric} among those that passed every gate. The former champion keeps the "
        "alias `previous_champion` for rollback.",
        group_name=f"{spec.name}_models",
        owners=[spec.owner],
        kinds={"mlflow"},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=spec.freshness.models),
        tags={"stage": "champion", "use_case": spec.name},
        check_specs=[dg.AssetCheckSpec(
            "passed_every_gate", asset=key, blocking=True,
            description="The champion version's gates all passed in the registry and its artifact, hashed again "
            "now, is the one trained: deployment follows the champion only after this, across runs too.",
        )],
    )
    def champion(context: dg.AssetExecutionContext, registry: ModelRegistry):
        scored = []
        for key in candidates:
            event = context.instance.get_latest_materialization_event(key)
            if event is None:
                continue
            metadata = event.asset_materialization.metadata
            scored.append((metadata[metric].value, metadata["model_version"].value, metadata["family"].value))
        if not scored:
            raise dg.Failure(f"no candidate of {spec.name} has been trained yet")
        scored.sort(reverse=higher)
        refusals = []
        for value, version, family in scored:
            try:
                reason = f"best {metric} {value:.4f} ({family})"
                former = registry.promote(spec.name, version, reason=reason)
            except PromotionRefused as refusal:
                refusals.append(str(refusal))
                continue
            if former is None or former.version != version:
                record(state().root, ReleaseEvent(spec.name, "promoted", version, from_version=former and former.version,
                                                  by=f"run {context.run.run_id}", reason=reason), witness=registry)
            yield dg.MaterializeResult(
                data_version=dg.DataVersion(f"v{version}"),
                metadata={
                    "champion_version": version, "family": family, metric: value,
                    "previous_champion": former.version if former else "none",
                    "model_uri": f"models:/{spec.name}@champion",
                    "refused": dg.MetadataValue.json(refusals),
                },
            )
            yield champion_check(registry, spec.name, version)
            return
        raise dg.Failure("no candidate may become champion: " + "; ".join(refusals))

    return champion


def champion_check(registry: ModelRegistry, name: str, version: str) -> dg.AssetCheckResult:
    """Re-verify at promotion time what the candidate's gates established at training time: an
    artifact swapped in the store since then must not reach a deployment."""
    tags = registry.version(name, version).tags
    verified, registered, whole = registry.verify_artifact(name, version, tags.get(PAYLOAD_SHA256_TAG, "unrecorded"))
    failed = registry.version(name, version).failed_gates()
    return dg.AssetCheckResult(
        check_name="passed_every_gate", passed=verified and not failed, severity=dg.AssetCheckSeverity.ERROR,
        description=(f"v{version}: every gate passed and the artifact hash matches" if verified and not failed
                     else f"v{version}: failed gates {failed}" + ("" if verified else
                     f"; the stored model hashes to {whole[:16]}… (payload {registered[:16]}…), not what was "
                     "trained and logged")),
        metadata={"version": version, "registered_sha256": registered, "registered_model_sha256": whole,
                  "failed_gates": dg.MetadataValue.json(failed)},
    )


def build_models(spec: UseCase) -> list[dg.AssetsDefinition]:
    return [*(build_candidate(spec, family) for family in spec.models), build_champion(spec)]

