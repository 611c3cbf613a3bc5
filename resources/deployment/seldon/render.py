"""One release plan rendered to either Seldon flavour: Core 2 `Model`s and an `Experiment`, or a
Core v1 `SeldonDeployment`."""

from __future__ import annotations

from typing import Any

from resources.deployment.seldon.plan import (
    CORE2_API_VERSION,
    MODEL_SHA256_PARAMETER,
    ModelRef,
    ROLE_LABEL,
    ReleasePlan,
    SHA256_ANNOTATION,
    STRATEGY_ANNOTATION,
    V1_API_VERSION,
    VERSION_LABEL,
)


def render_core2(plan: ReleasePlan) -> list[dict]:
    """Seldon Core 2: a `Model` per version, then (shadow, canary) the `Experiment`."""
    resources = []
    for role, ref in plan.models():
        spec: dict[str, Any] = {
            "storageUri": ref.storage_uri,
            "requirements": list(plan.requirements),
            "memory": plan.resources.memory,
            "replicas": plan.replicas,
            "server": plan.server,
            "parameters": [{"name": MODEL_SHA256_PARAMETER, "value": ref.sha256}],
        }
        if plan.storage_secret:
            spec["secretName"] = plan.storage_secret
        resources.append({
            "apiVersion": CORE2_API_VERSION,
            "kind": "Model",
            "metadata": plan._metadata(plan.name(ref.version), plan._labels(role, ref),
                                       {SHA256_ANNOTATION: ref.sha256}),
            "spec": spec,
        })  # fmt: skip
    if plan.strategy == "full":
        return resources

    champion, candidate = plan.name(plan.champion.version), plan.name(plan.candidate.version)
    if plan.strategy == "canary":
        spec = {
            "default": champion,
            "candidates": [
                {"name": champion, "weight": 100 - plan.canary_weight},
                {"name": candidate, "weight": plan.canary_weight},
            ],
        }
    else:  # shadow: the champion answers every request; the candidate sees a copy of each
        spec = {
            "default": champion,
            "candidates": [{"name": champion, "weight": 100}],
            "mirror": {"name": candidate, "percent": 100},
        }
    spec["resourceType"] = "model"
    resources.append({
        "apiVersion": CORE2_API_VERSION,
        "kind": "Experiment",
        "metadata": plan._metadata(plan.base_name, plan._labels(),
                                   {STRATEGY_ANNOTATION: plan.strategy}),
        "spec": spec,
    })  # fmt: skip
    return resources


def render_v1(plan: ReleasePlan) -> list[dict]:
    """Seldon Core v1: one `SeldonDeployment`, a predictor per version."""

    def predictor(role: str, ref: ModelRef) -> dict:
        graph: dict[str, Any] = {
            "name": plan.base_name,  # the model name MLServer serves; the same in every predictor
            "type": "MODEL",
            "implementation": plan.implementation,
            "modelUri": ref.storage_uri,
            "parameters": [{"name": MODEL_SHA256_PARAMETER, "type": "STRING", "value": ref.sha256}],
            "children": [],
        }
        if plan.storage_secret:
            graph["envSecretRefName"] = plan.storage_secret
        container = {
            "name": plan.base_name,  # overrides the prepackaged server container's resources
            "resources": {
                "requests": {"cpu": plan.resources.cpu, "memory": plan.resources.memory},
                "limits": {"memory": plan.resources.memory},
            },
        }
        return {
            "name": plan.name(ref.version),
            "replicas": plan.replicas,
            "labels": {VERSION_LABEL: str(ref.version), ROLE_LABEL: role},
            "annotations": {SHA256_ANNOTATION: ref.sha256},
            "graph": graph,
            "componentSpecs": [{"spec": {"containers": [container]}}],
        }

    main = predictor("champion", plan.champion)
    predictors = [main]
    if plan.strategy == "canary":
        main["traffic"] = 100 - plan.canary_weight
        predictors.append({**predictor("candidate", plan.candidate), "traffic": plan.canary_weight})
    else:
        main["traffic"] = 100
        if plan.strategy == "shadow":
            # A shadow predictor gets a copy of every request; its answers are dropped.
            predictors.append({**predictor("candidate", plan.candidate), "shadow": True})
    return [{
        "apiVersion": V1_API_VERSION,
        "kind": "SeldonDeployment",
        "metadata": plan._metadata(plan.base_name, plan._labels(),
                                   {STRATEGY_ANNOTATION: plan.strategy}),
        "spec": {"protocol": "v2", "predictors": predictors},
    }]  # fmt: skip
