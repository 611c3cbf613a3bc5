"""The deployer on Kubernetes (`ASSAY_ENV=kubernetes`): releases rendered to Seldon and applied.

`SeldonDeployer` implements resources/deployment/local.py's interface with the resources/deployment/seldon/ package: each
`deploy` or `stage` is one `ReleasePlan` rendered for the configured flavour (Seldon Core 2 or
Core v1), applied server-side, waited on until Seldon reports it Ready, and only then is what the
release no longer has deleted (a Core 2 Experiment after a full promotion, a former champion's or a
rolled-back candidate's Model). A release that never becomes Ready raises `SeldonNotReady` naming
the resource and why, and deletes nothing: the previous release stays in place beside it.

Environments. Every Assay environment (staging, production) is released into the one namespace
the deployer is configured with (default `assay`, where Role `assay-deployer` of
platform/k8s/deployer-rbac.yaml grants its rights), under names of its own: the release name is
`<use case>-<environment>`, so `flights` in staging is Core 2 Models `flights-staging-v<version>`
and Experiment `flights-staging`, or Core v1 SeldonDeployment `flights-staging`; in production,
`flights-production-...`. Every resource is labelled `assay.dev/use-case=<use case>` and
`assay.dev/environment=<environment>`; the deployer finds a release's objects by those labels (and
`app.kubernetes.io/managed-by=assay`), never by name prefix, so one environment never touches
another's objects. The environment must be a DNS label and `<use case>-<environment>-v<version>`
must fit in 63 characters; anything else is refused before any call. (A namespace per environment
was not chosen: the Role and the Core 2 Server would have to be repeated in each.)

Which version serves (`incumbent`) is read back from the cluster: on Core 2 the Experiment's
`default` while one exists, else the Model labelled `assay.dev/role=champion` (preferring a Ready
one, then the most recently applied, should an interrupted release have left two); on Core v1 the
non-shadow predictor labelled champion.

The endpoint (`SeldonEndpoint`) speaks the V2 (Open Inference) protocol through Seldon:
- Core 2, through the mesh (`inference_url`, e.g. http://seldon-mesh.assay): every request is
  POST `/v2/models/<model>/infer` with header `Seldon-Model`, which is what Seldon's Envoy routes
  on. The use case's traffic goes to `<release>.experiment` while an Experiment exists (the split
  or the mirror), else to the champion's Model; a given version goes to its Model. The champion is
  the Experiment's `default`, so Seldon splits requests sent to its name as well: a request for
  the champion's version during a canary is pinned with Seldon's sticky-session header
  `x-seldon-route` (learned from the route Seldon reports on each answer), and an answer from
  another model is never returned as the champion's.
- Core v1, through the ingress (`inference_url`, Istio or Ambassador):
  `/seldon/<namespace>/<deployment>/v2/models/<model>/infer` for the use case's traffic (split by
  the predictors' `traffic`); a given version goes to its predictor's own Service (reported in
  the SeldonDeployment's `status.serviceStatus`, else `<deployment>-<predictor>.<namespace>:8000`),
  as the ingress offers no way to choose a predictor.
A 4xx or 5xx answer is returned as (status, body), never raised.

The Kubernetes API client comes from the in-cluster service account (falling back to the kube
config), made at first use; tests inject one with `with_api_client` (not Dagster config).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import PrivateAttr

from assay.spec import ROLLOUT_STEPS
from resources.deployment.deployer import Deployer
from resources.deployment.seldon import (
    FIELD_MANAGER,
    MANAGED_BY,
    ROLE_LABEL,
    USE_CASE_LABEL,
    VERSION_LABEL,
    ModelRef,
    ReleasePlan,
    SeldonError,
    apply,
    delete,
    is_dns_label,
    is_label_value,
    obsolete,
    plural_of,
    render_core2,
    render_v1,
)
from resources.deployment.deployer import Served
from training.artifacts import ArtifactMismatch
from training.tags import MODEL_SHA256_TAG

FLAVOURS = ("core2", "v1")
ENVIRONMENT_LABEL = "assay.dev/environment"

# What Seldon's storage initializer (rclone) can fetch a model folder from. A registry `source`
# such as models:/m-..., runs:/..., mlflow-artifacts:/... or a local path cannot be.
STORAGE_SCHEMES = frozenset({"s3", "gs", "az", "azureblob", "https", "http", "pvc"})

SELDON_MODEL_HEADER = "Seldon-Model"
SELDON_ROUTE_HEADER = "x-seldon-route"
_ROUTE = re.compile(r":([^:]+)_([0-9]+):")
PIN_ATTEMPTS = 20  # tries to reach the champion through a split before its route is known

ENV_VARIABLES = {
    "namespace": "ASSAY_SELDON_NAMESPACE",
    "flavour": "ASSAY_SELDON_FLAVOUR",
    "inference_url": "ASSAY_SELDON_INFERENCE_URL",
    "server": "ASSAY_SELDON_SERVER",
    "storage_secret": "ASSAY_SELDON_STORAGE_SECRET",
    "ready_timeout_seconds": "ASSAY_SELDON_READY_TIMEOUT",
}

_CORE2 = "mlops.seldon.io/v1alpha1"
_V1 = "machinelearning.seldon.io/v1"


class SeldonDeployError(SeldonError):
    """A release that cannot be made (bad setting, environment or registry data); nothing sent."""


class SeldonNotReady(SeldonError):
    """Applied, but Seldon did not report it Ready in time; names each resource and why."""


def release_name(use_case: str, environment: str) -> str:
    """The DNS name an environment's release of a use case goes by: `<use case>-<environment>`."""
    if not is_dns_label(environment):
        raise SeldonDeployError(
            f"environment {environment!r} must be a DNS-1123 label (a-z, 0-9, '-') to name "
            "Seldon resources"
        )
    if not is_label_value(use_case):
        raise SeldonDeployError(f"use case {use_case!r} cannot be a Kubernetes label value")
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", use_case.lower()).strip("-"))
    release = f"{name}-{environment}"
    if not name or not is_dns_label(release):
        raise SeldonDeployError(
            f"use case {use_case!r} in environment {environment!r} gives Seldon name {release!r}, "
            "which is not a DNS-1123 label of at most 63 characters"
        )
    return release


def _scheme(uri: str) -> str:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", str(uri))
    return match.group(1).lower() if match else ""


def _settings_problems(values: Mapping[str, Any]) -> dict[str, str]:
    """field -> why its value is refused."""
    problems = {}
    if not is_dns_label(values.get("namespace")):
        problems["namespace"] = f"{values.get('namespace')!r} is not a DNS-1123 label"
    if values.get("flavour") not in FLAVOURS:
        problems["flavour"] = f"{values.get('flavour')!r} is not one of {list(FLAVOURS)}"
    url = values.get("inference_url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        problems["inference_url"] = (f"{url!r} is not an http(s) base URL (e.g. http://seldon-mesh.assay "
                                     "for Core 2, the Istio/Ambassador ingress for v1)")  # fmt: skip
    if not is_dns_label(values.get("server")):
        problems["server"] = f"{values.get('server')!r} is not a DNS-1123 label (a Core 2 Server name)"
    secret = values.get("storage_secret")
    if secret is not None and not is_dns_label(secret):
        problems["storage_secret"] = f"{secret!r} is not a DNS-1123 label (a Secret name)"
    timeout = values.get("ready_timeout_seconds")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        problems["ready_timeout_seconds"] = f"{timeout!r} is not a positive number of seconds"
    return problems


def _cluster_api_client():
    """The in-cluster service account's client (the run pod's `assay-deployer`), else the kube
    config's current context (a developer's machine)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


# ---------------------------------------------------------------------------------- readiness


def _conditions(obj: Mapping) -> dict[str, Mapping]:
    status = obj.get("status") or {}
    return {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def _describe_conditions(obj: Mapping) -> str:
    found = [
        f"{kind}={c.get('status')}" + (f" ({'; '.join(filter(None, [c.get('reason'), c.get('message')]))})"
                                        if c.get("reason") or c.get("message") else "")
        for kind, c in _conditions(obj).items()
        if c.get("status") != "True"
    ]  # fmt: skip
    return ", ".join(found) or "no conditions reported yet"


def _stale(obj: Mapping) -> str | None:
    """Why the status is not about the object's current spec, or None."""
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        return f"status is of generation {observed}, the spec is generation {generation}"
    return None


def readiness(obj: Mapping) -> tuple[bool, str]:
    """(ready, why not) of a Seldon object as the API server returned it.

    Core 2 Model and Experiment: condition `Ready` is "True". SeldonDeployment: `status.state` is
    "Available" and a `Ready` condition, where reported, is "True". Either way a status Seldon
    reports for an older generation (`observedGeneration` < `metadata.generation`) is not ready."""
    stale = _stale(obj)
    if stale:
        return False, stale
    ready = _conditions(obj).get("Ready")
    if obj.get("kind") == "SeldonDeployment":
        state = (obj.get("status") or {}).get("state")
        if state != "Available":
            return False, f"state {state!r}, not 'Available'; {_describe_conditions(obj)}"
        if ready is not None and ready.get("status") != "True":
            return False, _describe_conditions(obj)
        return True, ""
    if ready is None or ready.get("status") != "True":
        return False, _describe_conditions(obj)
    return True, ""


# ----------------------------------------------------------------------------------- deployer


class SeldonDeployer(Deployer):
    """Releases to Seldon in one namespace, an environment's resources named apart (see the module
    docstring). Build it from the ASSAY_SELDON_* variables with `from_environment()`."""

    namespace: str = "assay"
    flavour: str = "core2"  # "core2" (mlops.seldon.io Model + Experiment) | "v1" (SeldonDeployment)
    # Core 2: the mesh Service (seldon-mesh); v1: the Istio or Ambassador ingress.
    inference_url: str = "http://seldon-mesh.assay"
    server: str = "mlserver"  # the Core 2 Server the Models are scheduled on
    storage_secret: str | None = None  # Secret with the rclone config for the artifact store
    ready_timeout_seconds: float = 600.0
    poll_interval_seconds: float = 2.0
    request_timeout_seconds: float = 30.0
    v1_predictor_port: int = 8000  # a v1 predictor Service's HTTP port when status does not say

    _api_client: Any = PrivateAttr(default=None)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SeldonDeployer:
        """ASSAY_SELDON_NAMESPACE (default assay), ASSAY_SELDON_FLAVOUR (core2 | v1, default core2),
        ASSAY_SELDON_INFERENCE_URL (default http://seldon-mesh.<namespace> for Core 2; required
        for v1), ASSAY_SELDON_SERVER (default mlserver), ASSAY_SELDON_STORAGE_SECRET (optional),
        ASSAY_SELDON_READY_TIMEOUT (seconds, default 600). A bad value raises naming its variable."""
        env = os.environ if environ is None else environ

        def get(key: str) -> str | None:
            value = env.get(ENV_VARIABLES[key])
            return value.strip() if value is not None and value.strip() else None

        values: dict[str, Any] = {
            "namespace": get("namespace") or "assay",
            "flavour": (get("flavour") or "core2").lower(),
            "server": get("server") or "mlserver",
            "storage_secret": get("storage_secret"),
        }
        url = get("inference_url")
        if url is None and values["flavour"] == "v1":
            raise SeldonDeployError(
                "ASSAY_SELDON_INFERENCE_URL is required with ASSAY_SELDON_FLAVOUR=v1: the base URL "
                "of the Istio or Ambassador ingress (e.g. http://istio-ingressgateway.istio-system)"
            )
        values["inference_url"] = (url or f"http://seldon-mesh.{values['namespace']}").rstrip("/")
        timeout = get("ready_timeout_seconds")
        try:
            values["ready_timeout_seconds"] = float(timeout) if timeout is not None else 600.0
        except ValueError:
            values["ready_timeout_seconds"] = timeout
        problems = _settings_problems(values)
        if problems:
            raise SeldonDeployError("; ".join(f"{ENV_VARIABLES[k]}: {why}" for k, why in problems.items()))
        return cls(**values)

    def with_api_client(self, api_client) -> SeldonDeployer:
        """Use this kubernetes `ApiClient` instead of making one (tests; a caller's own)."""
        self._api_client = api_client
        return self

    def api_client(self):
        if self._api_client is None:
            self._api_client = _cluster_api_client()
        return self._api_client

    def _custom_objects(self):
        from kubernetes.client import CustomObjectsApi

        return CustomObjectsApi(self.api_client())

    def _check_settings(self) -> None:
        problems = _settings_problems({key: getattr(self, key) for key in ENV_VARIABLES})
        if problems:
            raise SeldonDeployError("SeldonDeployer: " + "; ".join(f"{k}: {why}" for k, why in problems.items()))

    # --- the registry side ----------------------------------------------------------------------

    def model_ref(self, registry, name: str, version: str) -> ModelRef:
        """Where the registered version's MLflow model folder lies (a URI Seldon can fetch) and its
        whole-model sha256 recorded at training.

        The stored folder is downloaded and hashed here, before anything is applied: Seldon's stock
        MLflow runtime loads what it fetches without checking it, so this is where a changed
        artifact is stopped. The hash also goes into the rendered resource (its load parameters and
        an annotation), for Assay's runtime to check again in the cluster."""
        version = str(version)
        client = registry.client()
        found = client.get_model_version(name, version)
        uri = str(found.source or "")
        if _scheme(uri) not in STORAGE_SCHEMES:
            # MLflow 3 registers `models:/m-<id>` (a logged model) as the source: resolve it.
            uri = str(client.get_model_version_download_uri(name, version) or "")
        if _scheme(uri) not in STORAGE_SCHEMES or "://" not in uri:
            raise SeldonDeployError(
                f"{name} v{version}: the registry stores it at {uri!r} (source {found.source!r}), which "
                f"Seldon cannot fetch; the MLflow artifact root must be object storage Seldon reads "
                f"({', '.join(sorted(STORAGE_SCHEMES))}), e.g. s3://bucket/mlflow, served without "
                "the mlflow-artifacts proxy"
            )
        sha256 = registry.version(name, version).tags.get(MODEL_SHA256_TAG)
        if not sha256:
            raise SeldonDeployError(f"{name} v{version} has no {MODEL_SHA256_TAG} tag (recorded at training): "
                                    "refusing to release an artifact that cannot be traced")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="assay-release-") as scratch:
            try:
                registry.download_verified(name, version, Path(scratch))
            except ArtifactMismatch as mismatch:
                raise SeldonDeployError(f"{mismatch}; nothing was applied") from None
        return ModelRef(version, uri, sha256)

    # --- plans and resources -------------------------------------------------------------------

    def plan(self, name: str, environment: str, champion: ModelRef, candidate: ModelRef | None = None,
             strategy: str = "full", weight: int = 10) -> ReleasePlan:
        self._check_settings()
        return ReleasePlan(
            use_case=release_name(name, environment), champion=champion, candidate=candidate,
            strategy=strategy, canary_weight=weight, namespace=self.namespace, server=self.server,
            storage_secret=self.storage_secret,
        )  # fmt: skip

    def render(self, plan: ReleasePlan, name: str, environment: str) -> list[dict]:
        """The plan for the flavour, each resource labelled with its use case and environment."""
        resources = render_core2(plan) if self.flavour == "core2" else render_v1(plan)
        for resource in resources:
            labels = resource["metadata"].setdefault("labels", {})
            labels[USE_CASE_LABEL] = name
            labels[ENVIRONMENT_LABEL] = environment
        return resources

    def _selector(self, name: str, environment: str) -> str:
        labels = {MANAGED_BY: "assay", USE_CASE_LABEL: name, ENVIRONMENT_LABEL: environment}
        return ",".join(f"{k}={v}" for k, v in labels.items())

    def _list(self, api_version: str, kind: str, selector: str) -> list[dict]:
        group, version = api_version.split("/")
        plural = plural_of({"apiVersion": api_version, "kind": kind})
        answer = self._custom_objects().list_namespaced_custom_object(
            group, version, self.namespace, plural, label_selector=selector)
        items = [dict(item) for item in answer.get("items") or []]
        for item in items:  # in case a list's items omit them: obsolete()/delete() need both
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def _get(self, resource: Mapping) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        group, version = resource["apiVersion"].split("/")
        metadata = resource["metadata"]
        try:
            return self._custom_objects().get_namespaced_custom_object(
                group, version, metadata["namespace"], plural_of(resource), metadata["name"])
        except ApiException as error:
            if error.status == 404:
                return None
            raise SeldonError(f"{resource['kind']}/{metadata['name']}: the API server refused the read "
                              f"({error.status} {error.reason}): {error.body}") from error  # fmt: skip

    def wait_ready(self, resources: Sequence[Mapping]) -> dict[tuple[str, str], dict]:
        """Poll each resource (GET) until Seldon reports it Ready; returns the objects last read,
        by (kind, name). Raises `SeldonNotReady` naming every one still not Ready at the timeout."""
        deadline = time.monotonic() + self.ready_timeout_seconds
        pending = {(r["kind"], r["metadata"]["name"]): r for r in resources}
        seen: dict[tuple[str, str], dict] = {}
        while True:
            why: dict[tuple[str, str], str] = {}
            for key, resource in pending.items():
                obj = self._get(resource)
                if obj is None:
                    why[key] = "not found"
                    continue
                seen[key] = obj
                ok, reason = readiness(obj)
                if not ok:
                    why[key] = reason
            pending = {key: pending[key] for key in why}
            if not pending:
                return seen
            if time.monotonic() >= deadline:
                raise SeldonNotReady(
                    f"not Ready after {self.ready_timeout_seconds:g}s in namespace {self.namespace}: "
                    + "; ".join(f"{kind}/{name}: {reason}" for (kind, name), reason in why.items())
                    + " (nothing of the previous release was deleted)"
                )
            time.sleep(self.poll_interval_seconds)

    def _live(self, name: str, environment: str) -> list[dict]:
        """This release's Core 2 objects now in the cluster (found by label)."""
        selector = self._selector(name, environment)
        return self._list(_CORE2, "Model", selector) + self._list(_CORE2, "Experiment", selector)

    def _release(self, plan: ReleasePlan, name: str, environment: str) -> SeldonEndpoint:
        resources = self.render(plan, name, environment)
        api_client = self.api_client()
        apply(resources, api_client)
        objects = self.wait_ready(resources)
        if self.flavour == "core2":
            # Only once the new release answers: what it no longer has (the Experiment after a
            # full promotion or a rollback, a former champion's or a failed candidate's Model).
            delete(obsolete(self._live(name, environment), resources), api_client)
        return self.endpoint(name, environment, plan, objects)

    # --- the Deployer interface ------------------------------------------------------------------

    def deploy(self, registry, name, environment, version):
        self._check_settings()
        release_name(name, environment)  # refused before the registry or the cluster is asked
        champion = self.model_ref(registry, name, str(version))
        return self._release(self.plan(name, environment, champion), name, environment)

    def stage(self, registry, name, environment, incumbent, candidate, step, weight):
        if step not in ROLLOUT_STEPS:
            raise SeldonDeployError(f"step must be one of {list(ROLLOUT_STEPS)}, not {step!r}")
        self._check_settings()
        release_name(name, environment)
        plan = self.plan(
            name, environment, self.model_ref(registry, name, str(incumbent)),
            self.model_ref(registry, name, str(candidate)), strategy=step,
            weight=weight if step == "canary" else 10,
        )  # fmt: skip
        return self._release(plan, name, environment)

    def withdraw(self, registry, name, environment):
        """Core 2: delete the release's Models and Experiment. A Core v1 SeldonDeployment is never
        deleted by Assay (Role assay-deployer grants no delete on it): refused, naming it."""
        self._check_settings()
        release = release_name(name, environment)
        if self.flavour == "v1":
            raise SeldonDeployError(f"SeldonDeployment {release} in {self.namespace}: withdrawing a Core v1 "
                                    "release needs a person (kubectl delete); Assay does not delete it")
        delete(self._live(name, environment), self.api_client())

    def incumbent(self, name, environment):
        self._check_settings()
        release = release_name(name, environment)
        if self.flavour == "v1":
            deployment = self._get({"apiVersion": _V1, "kind": "SeldonDeployment",
                                    "metadata": {"name": release, "namespace": self.namespace}})  # fmt: skip
            if deployment is None:
                return None
            for predictor in (deployment.get("spec") or {}).get("predictors") or []:
                labels = predictor.get("labels") or {}
                if labels.get(ROLE_LABEL) == "champion" and not predictor.get("shadow"):
                    return labels.get(VERSION_LABEL)
            return None
        selector = self._selector(name, environment)
        models = self._list(_CORE2, "Model", selector)
        by_name = {m["metadata"]["name"]: m for m in models}
        for experiment in self._list(_CORE2, "Experiment", selector):
            default = (experiment.get("spec") or {}).get("default")
            if default in by_name:
                return (by_name[default]["metadata"].get("labels") or {}).get(VERSION_LABEL)
        champions = [m for m in models if (m["metadata"].get("labels") or {}).get(ROLE_LABEL) == "champion"]
        if not champions:
            return None

        def rank(model: dict) -> tuple:
            metadata = model["metadata"]
            applied = max((f.get("time") or "" for f in metadata.get("managedFields") or []
                           if f.get("manager") == FIELD_MANAGER), default="")  # fmt: skip
            return readiness(model)[0], applied, metadata.get("creationTimestamp") or ""

        return (max(champions, key=rank)["metadata"].get("labels") or {}).get(VERSION_LABEL)

    # --- endpoints -----------------------------------------------------------------------------

    def endpoint(self, name: str, environment: str, plan: ReleasePlan,
                 objects: Mapping[tuple[str, str], Mapping] | None = None) -> SeldonEndpoint:
        """The endpoint of a release that is applied (objects: as `wait_ready` returned them)."""
        release = plan.base_name
        versions = {ref.version: plan.name(ref.version) for _, ref in plan.models()}
        experiment = release if self.flavour == "core2" and plan.strategy != "full" else None
        direct: dict[str, str] = {}
        if self.flavour == "v1":
            status = ((objects or {}).get(("SeldonDeployment", release)) or {}).get("status") or {}
            services = status.get("serviceStatus") or {}
            for version, predictor in versions.items():
                service = f"{release}-{predictor}"
                found = services.get(service) or next(
                    (s for s in services.values() if isinstance(s, Mapping) and s.get("svcName") == service), {})
                endpoint = found.get("httpEndpoint") or f"{service}.{self.namespace}:{self.v1_predictor_port}"
                direct[version] = endpoint if "://" in endpoint else f"http://{endpoint}"
        return SeldonEndpoint(
            deployer=self, use_case=name, environment=environment, release=release,
            champion=plan.champion.version, models=versions, experiment=experiment, direct=direct,
        )  # fmt: skip

    def served(self, name: str, environment: str) -> list[Served]:
        """The versions of `name` in `environment` whose Model (Core 2) or SeldonDeployment (v1)
        Seldon reports Ready."""
        release = release_name(name, environment)
        if self.flavour == "v1":
            url = f"{self.inference_url.rstrip('/')}/seldon/{self.namespace}/{release}"
            deployment = self._get({"apiVersion": _V1, "kind": "SeldonDeployment",
                                    "metadata": {"name": release, "namespace": self.namespace}})  # fmt: skip
            if deployment is None or not readiness(deployment)[0]:
                return []
            return [Served(name, str((p.get("labels") or {}).get(VERSION_LABEL, "")), url)
                    for p in (deployment.get("spec") or {}).get("predictors") or []]  # fmt: skip
        served = [
            Served(name, str(m["metadata"]["labels"].get(VERSION_LABEL, "")), self.inference_url.rstrip("/"))
            for m in self._list(_CORE2, "Model", self._selector(name, environment))
            if readiness(m)[0]
        ]
        return sorted(served, key=lambda s: s.version)


@dataclass
class SeldonEndpoint:
    """One applied release of a use case in an environment, answering V2 inference requests."""

    deployer: SeldonDeployer
    use_case: str
    environment: str
    release: str  # the release name: Experiment / SeldonDeployment / v1 graph model name
    champion: str  # the version that answers the use case's traffic (or most of it)
    models: dict[str, str]  # version -> Core 2 Model name / v1 predictor name
    experiment: str | None = None  # the Core 2 Experiment while a candidate is staged
    direct: dict[str, str] = field(default_factory=dict)  # v1: version -> its predictor's base URL
    _routes: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # model -> route
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def url(self) -> str:
        base = self.deployer.inference_url.rstrip("/")
        if self.deployer.flavour == "v1":
            return f"{base}/seldon/{self.deployer.namespace}/{self.release}"
        return base

    def served(self) -> list[Served]:
        return self.deployer.served(self.use_case, self.environment)

    def request(self, version: str | None = None) -> tuple[str, dict[str, str]]:
        """(URL, headers) of an inference request for the use case's traffic or one version."""
        if version is not None and str(version) not in self.models:
            raise KeyError(version)
        headers = {"Content-Type": "application/json"}
        if self.deployer.flavour == "v1":
            base = self.url if version is None else self.direct[str(version)].rstrip("/")
            return f"{base}/v2/models/{self.release}/infer", headers
        model = self.models[self.champion if version is None else str(version)]
        headers[SELDON_MODEL_HEADER] = f"{self.experiment}.experiment" if (
            version is None and self.experiment) else model  # fmt: skip
        return f"{self.url}/v2/models/{model}/infer", headers

    def _split(self, version: str | None) -> bool:
        """Whether Seldon splits requests for this version's Model: the champion is the
        Experiment's default, whose own name carries the split."""
        return version is not None and self.experiment is not None and str(version) == self.champion

    def infer(self, name: str, body: dict, version: str | None = None) -> tuple[int, dict]:
        if name != self.use_case:
            raise ValueError(f"this endpoint serves {self.use_case!r}, not {name!r}")
        if version is not None and str(version) not in self.models:
            return 404, {"error": f"{name} v{version} is not served in {self.environment} "
                                  f"(serving {sorted(self.models)})"}  # fmt: skip
        url, headers = self.request(version)
        if not self._split(version):
            status, answer, _ = self._post(url, headers, body)
            return status, answer
        model = self.models[str(version)]
        for _ in range(PIN_ATTEMPTS):
            pinned = dict(headers)
            route = self._routes.get(model)
            if route:
                pinned[SELDON_ROUTE_HEADER] = route
            status, answer, answered_by = self._post(url, pinned, body)
            if answered_by in (None, model):
                return status, answer
        return 503, {"error": f"{model} did not answer in {PIN_ATTEMPTS} tries through the split of "
                              f"Experiment {self.experiment}, and Seldon reported no route to pin it"}  # fmt: skip

    def _post(self, url: str, headers: dict[str, str], body: dict) -> tuple[int, dict, str | None]:
        """POST; (status, JSON body, the model Seldon says answered or None). Remembers the route
        Seldon reports for each model, to pin later requests to it."""
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.deployer.request_timeout_seconds) as response:
                status, text, answered = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, text, answered = error.code, error.read(), error.headers
        try:
            answer = json.loads(text) if text else {}
        except json.JSONDecodeError:
            answer = {"error": text.decode(errors="replace")}
        by = None
        routes = _ROUTE.findall((answered or {}).get(SELDON_ROUTE_HEADER, "") or "")
        if not routes and isinstance(answer, Mapping) and isinstance(answer.get("model_name"), str):
            model_name, _, number = answer["model_name"].rpartition("_")
            routes = [(model_name, number)] if model_name and number.isdigit() else []
        if routes:
            by = routes[-1][0]
            with self._lock:
                for model, number in routes:
                    self._routes[model] = f":{model}_{number}:"
        return status, answer if isinstance(answer, dict) else {"result": answer}, by
