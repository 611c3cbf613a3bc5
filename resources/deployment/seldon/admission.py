"""The rules the CRDs do not encode: Seldon's v1 admission webhook, its Core 2 scheduler, and a few of
Assay's own, each marked; `release_problems` gathers them with the schema errors for a whole batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resources.deployment.seldon.plan import (
    PREPACKAGED_SERVERS,
    SeldonError,
    _CORE2_EXPERIMENT,
    _CORE2_MODEL,
    _CORE2_RESOURCE_TYPES,
    _NO_TENSORFLOW_PROTOCOL,
    _PREPACKED_WITHOUT_URI,
    _V1_PROTOCOLS,
    _V1_SERVER_TYPES,
    _V1_TRANSPORTS,
    _is_label_key,
    is_dns_label,
    is_label_value,
)
from resources.deployment.seldon.crds import _describe, _schema_errors, _split_api_version


def _get(mapping: Any, key: str, default: Any = None) -> Any:
    return mapping.get(key, default) if isinstance(mapping, Mapping) else default


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name_errors(value: Any, path: str, what: str) -> list[str]:
    if not is_dns_label(value):
        return [f"{path}: {what} {value!r} must be a DNS-1123 label (a-z, 0-9, '-', at most 63)"]
    return []


def _unique_name_errors(name: Any, where: str, index: int, seen: dict[str, int], what: str,
                        duplicate) -> list[str]:
    """A list item's name: a DNS label, and not one an earlier item has (`seen`, updated here);
    `duplicate(earlier_index)` says so."""
    errors = _name_errors(name, f"{where}.name", what)
    if isinstance(name, str) and name in seen:
        errors.append(f"{where}.name: {duplicate(seen[name])}")
    if isinstance(name, str):
        seen.setdefault(name, index)
    return errors


def _walk_graph(node: Any, path: str):
    yield node, path
    for i, child in enumerate(_list(_get(node, "children"))):
        yield from _walk_graph(child, f"{path}.children[{i}]")


def _seldondeployment_errors(resource: Mapping) -> list[str]:
    spec = _get(resource, "spec", {})
    errors: list[str] = []
    protocol, transport, server_type = (_get(spec, k) for k in ("protocol", "transport", "serverType"))
    if protocol is not None and protocol not in _V1_PROTOCOLS:
        errors.append(f"$.spec.protocol: {protocol!r} is not one of {sorted(_V1_PROTOCOLS)}")
    if transport is not None and transport not in _V1_TRANSPORTS:
        errors.append(f"$.spec.transport: {transport!r} is not one of {sorted(_V1_TRANSPORTS)}")
    if server_type is not None and server_type not in _V1_SERVER_TYPES:
        errors.append(f"$.spec.serverType: {server_type!r} is not one of {sorted(_V1_SERVER_TYPES)}")

    predictors = _list(_get(spec, "predictors"))
    if not predictors:
        return [*errors, "$.spec.predictors: a SeldonDeployment needs at least one predictor"]
    seen: dict[str, int] = {}
    shadows = [i for i, p in enumerate(predictors) if _get(p, "shadow") is True]
    serving = [i for i, p in enumerate(predictors) if _get(p, "shadow") is not True]
    for i, predictor in enumerate(predictors):
        where = f"$.spec.predictors[{i}]"
        name = _get(predictor, "name")
        errors += _unique_name_errors(name, where, i, seen, "predictor name", lambda earlier: (
            f"duplicate predictor name {name!r} (also $.spec.predictors[{earlier}])"))
        traffic = _get(predictor, "traffic")
        if _int(traffic) and not (0 <= traffic <= 100):
            errors.append(f"{where}.traffic: {traffic} is outside 0..100")
        containers = {
            _get(c, "name")
            for cs in _list(_get(predictor, "componentSpecs"))
            for c in _list(_get(_get(cs, "spec"), "containers"))
        }
        for node, node_path in _walk_graph(_get(predictor, "graph"), f"{where}.graph"):
            errors += _name_errors(_get(node, "name"), f"{node_path}.name", "graph node name")
            implementation = _get(node, "implementation")
            if implementation in PREPACKAGED_SERVERS:
                if not _get(node, "modelUri") and implementation not in _PREPACKED_WITHOUT_URI:
                    errors.append(f"{node_path}.modelUri: prepackaged server {implementation} "
                                  "needs a modelUri")  # fmt: skip
                if protocol == "tensorflow" and implementation in _NO_TENSORFLOW_PROTOCOL:
                    errors.append(f"{node_path}.implementation: {implementation} does not speak "
                                  "the tensorflow protocol")  # fmt: skip
            elif implementation in (None, "UNKNOWN_IMPLEMENTATION"):
                if _get(node, "name") not in containers:
                    errors.append(f"{node_path}: graph node {_get(node, 'name')!r} has no implementation "
                                  "and no container of that name in componentSpecs")  # fmt: skip
    if len(shadows) > 1:
        names = [_get(predictors[i], "name") for i in shadows]
        errors.append(f"$.spec.predictors: at most one shadow predictor, found {len(shadows)}: {names}")
    if shadows and not serving:
        errors.append("$.spec.predictors: a shadow predictor cannot stand alone; "
                      "a non-shadow predictor must answer the requests")  # fmt: skip
    if serving:
        traffics = [_get(predictors[i], "traffic") for i in serving]
        # A lone serving predictor may leave traffic unset (Seldon sends it everything).
        total = 100 if len(serving) == 1 and not traffics[0] else sum(t for t in traffics if _int(t))
        if total != 100:
            errors.append(f"$.spec.predictors: traffic of the non-shadow predictors must sum to 100, "
                          f"got {total} ({traffics})")  # fmt: skip
    return errors


def _model_errors(resource: Mapping) -> list[str]:
    spec = _get(resource, "spec", {})
    errors = []
    uri = _get(spec, "storageUri")
    if not isinstance(uri, str) or not uri.strip():
        errors.append("$.spec.storageUri: a Model needs a storageUri")
    replicas, low, high = (_get(spec, k) for k in ("replicas", "minReplicas", "maxReplicas"))
    if _int(replicas) and replicas < 0:
        errors.append(f"$.spec.replicas: {replicas} is negative")
    if _int(low) and _int(high) and high and low > high:
        errors.append(f"$.spec.minReplicas: {low} is above maxReplicas {high}")
    if _int(replicas) and _int(high) and high and replicas > high:
        errors.append(f"$.spec.replicas: {replicas} is above maxReplicas {high}")
    if _int(replicas) and _int(low) and replicas < low:
        errors.append(f"$.spec.replicas: {replicas} is below minReplicas {low}")
    if _get(spec, "server") is not None:
        errors += _name_errors(_get(spec, "server"), "$.spec.server", "server name")
    return errors


def _experiment_errors(resource: Mapping) -> list[str]:
    spec = _get(resource, "spec", {})
    errors = []
    resource_type = _get(spec, "resourceType")
    if resource_type is not None and resource_type not in _CORE2_RESOURCE_TYPES:
        known = sorted(_CORE2_RESOURCE_TYPES)
        errors.append(f"$.spec.resourceType: {resource_type!r} is not one of {known}")
    candidates = _list(_get(spec, "candidates"))
    if not candidates:  # Seldon's scheduler: ExperimentNoCandidates
        errors.append("$.spec.candidates: an Experiment needs at least one candidate")
    names: dict[str, int] = {}
    for i, candidate in enumerate(candidates):
        where = f"$.spec.candidates[{i}]"
        name, weight = _get(candidate, "name"), _get(candidate, "weight")
        errors += _unique_name_errors(name, where, i, names, "candidate name", lambda earlier: (
            f"{name!r} is a candidate twice (also $.spec.candidates[{earlier}])"))
        if _int(weight) and weight < 1:
            errors.append(f"{where}.weight: {weight} must be at least 1 (a candidate that gets no "
                          "traffic is not a candidate)")  # fmt: skip
    weights = [_get(c, "weight") for c in candidates]
    if len(candidates) > 1 and all(_int(w) for w in weights) and sum(weights) != 100:
        # Assay's rule: Seldon splits by weight / sum(weights); Assay writes weights as percents.
        errors.append(f"$.spec.candidates: weights must sum to 100, got {sum(weights)} ({weights})")
    default = _get(spec, "default")
    # Seldon's scheduler: ExperimentDefaultModelNotFound.
    if default is not None and (not isinstance(default, str) or default not in names):
        errors.append(f"$.spec.default: {default!r} is not one of the candidates {sorted(names)}")
    mirror = _get(spec, "mirror")
    if mirror is not None:
        mirror_name, percent = _get(mirror, "name"), _get(mirror, "percent")
        errors += _name_errors(mirror_name, "$.spec.mirror.name", "mirror name")
        # Assay's rule: a model either answers or shadows, never both.
        if isinstance(mirror_name, str) and mirror_name in names:
            errors.append(f"$.spec.mirror.name: {mirror_name!r} is also a candidate")
        if _int(percent) and not (1 <= percent <= 100):
            errors.append(f"$.spec.mirror.percent: {percent} is outside 1..100")
    return errors


_ADMISSION = {
    ("machinelearning.seldon.io", "SeldonDeployment"): _seldondeployment_errors,
    ("mlops.seldon.io", "Model"): _model_errors,
    ("mlops.seldon.io", "Experiment"): _experiment_errors,
}


def admission_errors(resource: Mapping) -> list[str]:
    """The rules the CRD schemas do not encode, each as "Kind/name: $.path: why"; [] when none.

    Every resource: metadata.name and metadata.namespace are DNS-1123 labels.
    SeldonDeployment (Seldon v1's admission webhook): at least one predictor; predictor names
      unique; at most one shadow and never a shadow alone; each traffic 0..100 and the non-shadow
      predictors' traffic sums to 100 (a lone one may leave it unset); a prepackaged server
      (MLFLOW_SERVER, SKLEARN_SERVER, ...) needs a modelUri (HUGGINGFACE_SERVER excepted) and
      (SKLEARN/XGBOOST/MLFLOW/HUGGINGFACE) not the tensorflow protocol; a graph node without
      an implementation needs a container of its name; protocol, transport, serverType known
      values; predictor and graph node names are DNS-1123 labels (they name Deployments and
      containers).
    Model: a non-empty storageUri; minReplicas <= replicas <= maxReplicas where set.
    Experiment (Seldon's scheduler): at least one candidate; `default`, when set, is a
      candidate. Assay's own: candidate names unique and weights >= 1, weights summing to 100
      when there are several (Seldon itself splits by weight / sum of weights, so any positive
      weights would do); the mirror is not also a candidate, its percent 1..100; resourceType
      model or pipeline.
    """
    errors: list[str] = []
    metadata = _get(resource, "metadata", {})
    errors += _name_errors(_get(metadata, "name"), "$.metadata.name", "name")
    errors += _name_errors(_get(metadata, "namespace"), "$.metadata.namespace", "namespace")
    labels = _get(metadata, "labels", {})
    for key, value in (labels.items() if isinstance(labels, Mapping) else []):
        if not _is_label_key(key) or not is_label_value(value):
            errors.append(f"$.metadata.labels: {key!r}: {value!r} is not a valid Kubernetes label")
    try:
        group, _ = _split_api_version(_get(resource, "apiVersion"))
    except SeldonError as error:
        return [f"{_describe(resource)}: {error}"]
    rule = _ADMISSION.get((group, _get(resource, "kind")))
    if rule is not None:
        errors += rule(resource)
    return [f"{_describe(resource)}: {e}" for e in errors]


def _identity(resource: Mapping) -> tuple[str, str, str, str]:
    group = str(_get(resource, "apiVersion", "")).split("/")[0]
    metadata = _get(resource, "metadata", {})
    kind, namespace, name = _get(resource, "kind"), _get(metadata, "namespace"), _get(metadata, "name")
    return group, str(kind), str(namespace), str(name)


def batch_errors(resources: Sequence[Mapping]) -> list[str]:
    """Rules across one batch: no resource twice; an Experiment over models names Models of the
    same batch and namespace (Assay's rule: a release is applied whole); a model is the `default`
    of at most one Experiment (Seldon's scheduler: ExperimentBaselineExists)."""
    errors = []
    seen = set()
    for resource in resources:
        key = _identity(resource)
        if key in seen:
            errors.append(f"{_describe(resource)}: appears twice in the batch")
        seen.add(key)
    models = {(ns, name) for group, kind, ns, name in seen if (group, kind) == _CORE2_MODEL}
    defaults: dict[tuple[str, str], str] = {}
    for resource in resources:
        group, kind, namespace, _ = _identity(resource)
        if (group, kind) != _CORE2_EXPERIMENT:
            continue
        spec = _get(resource, "spec", {})
        if _get(spec, "resourceType", "model") != "model":
            continue
        referenced = [_get(c, "name") for c in _list(_get(spec, "candidates"))]
        if _get(spec, "mirror") is not None:
            referenced.append(_get(_get(spec, "mirror"), "name"))
        for name in referenced:
            if not isinstance(name, str) or (namespace, name) not in models:
                errors.append(f"{_describe(resource)}: model {name!r} is not a Model of this batch "
                              f"in namespace {namespace!r}")  # fmt: skip
        default = _get(spec, "default")
        if isinstance(default, str):
            if (namespace, default) in defaults:
                errors.append(f"{_describe(resource)}: model {default!r} is already the default of "
                              f"Experiment/{defaults[(namespace, default)]}")  # fmt: skip
            defaults[(namespace, default)] = _identity(resource)[3]
    return errors


def release_problems(resources: Sequence[Mapping]) -> list[str]:
    """Everything `apply` would refuse: strict schema errors, admission rules, batch rules."""
    problems = []
    for resource in resources:
        try:
            for path, message in _schema_errors(resource):
                problems.append(f"{_describe(resource)}: {path}: {message}")
        except SeldonError as error:  # no CRD for it, bad apiVersion
            problems.append(str(error))
        problems += admission_errors(resource)
    return problems + batch_errors(resources)
