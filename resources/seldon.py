"""Seldon on Kubernetes: one release plan rendered, checked and applied.

A `ReleasePlan` says what one use case serves: its champion, and optionally a candidate beside it
(a shadow that sees every request but answers none, or a canary that answers a share). It renders
to either Seldon flavour:

- Seldon Core 2 (`mlops.seldon.io/v1alpha1`, `render_core2`): one `Model` per version, and for
  shadow or canary one `Experiment` whose `default` is the champion, so the champion's own
  endpoint carries the split (canary) or the mirror (shadow).
- Seldon Core v1 (`machinelearning.seldon.io/v1`, `render_v1`): one `SeldonDeployment` named after
  the use case, protocol `v2`, whose predictors run the MLServer-backed `MLFLOW_SERVER`; canary is
  two predictors whose `traffic` sums to 100, shadow a second predictor with `shadow: true`.

No cluster is needed to check a rendering. `validate_against_crd` validates a resource against
the CRD's own `openAPIV3Schema` (the copies in platform/seldon/crds, see SOURCE.md there) in
strict mode, so a misspelt or unknown field fails as it would under the API server's strict
field validation instead of being pruned silently. `admission_errors` adds the rules the CRDs do
not encode (Seldon's admission webhook for v1, its scheduler for Core 2, and a few of Assay's
own, each marked below). `apply` refuses the whole batch if any resource fails either, and only
then sends one server-side apply per resource (PATCH, `application/apply-patch+yaml`, field
manager "assay", force, strict field validation). Its rights are Role `assay-deployer`
(platform/k8s/deployer-rbac.yaml).

The Dagster side calls, in order:

    plan = ReleasePlan(use_case="flights", champion=ModelRef("3", uri, sha), candidate=...,
                       strategy="canary", canary_weight=10)
    resources = render_core2(plan)            # or render_v1(plan)
    problems = release_problems(resources)    # [] when admissible (an asset check can show these)
    apply(resources, kubernetes.config.new_client_from_config() / in-cluster ApiClient)

and, to roll back or end a release on Core 2 (server-side apply cannot remove an object):

    after = render_core2(dataclasses.replace(plan, candidate=None, strategy="full"))
    apply(after, api_client)
    delete(obsolete(render_core2(plan), after), api_client)   # the Experiment, then the candidate
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

# --------------------------------------------------------------------------------------- constants

CORE2_API_VERSION = "mlops.seldon.io/v1alpha1"
V1_API_VERSION = "machinelearning.seldon.io/v1"

FIELD_MANAGER = "assay"
APPLY_PATCH_CONTENT_TYPE = "application/apply-patch+yaml"

CRDS_ENV = "ASSAY_SELDON_CRDS"
# Vendored, unmodified copies (provenance and hashes in SOURCE.md there), so a clean clone and the
# image validate against the same schemas.
DEFAULT_CRDS_DIR = Path(__file__).resolve().parents[1] / "platform" / "seldon" / "crds"

STRATEGIES = ("full", "shadow", "canary")

# Seldon Core v1 prepackaged servers (operator/apis/machinelearning.seldon.io/v1/prepackaged_server
# _types.go); each loads the model from `modelUri`. HUGGINGFACE_SERVER alone may go without one
# (it can load from the Hub), as the v1 webhook allows.
PREPACKAGED_SERVERS = frozenset(
    {"SKLEARN_SERVER", "XGBOOST_SERVER", "MLFLOW_SERVER", "TENSORFLOW_SERVER", "TRITON_SERVER",
     "TEMPO_SERVER", "HUGGINGFACE_SERVER"}
)  # fmt: skip
_PREPACKED_WITHOUT_URI = frozenset({"HUGGINGFACE_SERVER"})
_NO_TENSORFLOW_PROTOCOL = frozenset(
    {"SKLEARN_SERVER", "XGBOOST_SERVER", "MLFLOW_SERVER", "HUGGINGFACE_SERVER"}
)
_V1_PROTOCOLS = frozenset({"seldon", "tensorflow", "kfserving", "v2"})
_V1_TRANSPORTS = frozenset({"rest", "grpc"})
_V1_SERVER_TYPES = frozenset({"rpc", "kafka"})
_CORE2_RESOURCE_TYPES = frozenset({"model", "pipeline"})
_CORE2_MODEL = ("mlops.seldon.io", "Model")
_CORE2_EXPERIMENT = ("mlops.seldon.io", "Experiment")

# Labels and annotations every rendered resource carries.
PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
USE_CASE_LABEL = "assay.dev/use-case"
VERSION_LABEL = "assay.dev/model-version"
ROLE_LABEL = "assay.dev/role"
SHA256_ANNOTATION = "assay.dev/artifact-sha256"
STRATEGY_ANNOTATION = "assay.dev/release-strategy"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


class SeldonError(ValueError):
    """Base of every refusal in this module."""


class ReleasePlanError(SeldonError):
    """A release plan that cannot be rendered (names the field)."""


class SeldonValidationError(SeldonError):
    """A resource that its CRD's schema rejects: names the resource, the JSON path and why."""

    def __init__(self, resource: str, path: str, message: str, others: Sequence[str] = ()):
        self.resource, self.path, self.reason, self.others = resource, path, message, list(others)
        text = f"{resource}: {path}: {message}"
        if self.others:
            text += f" (and {len(self.others)} more: " + "; ".join(self.others) + ")"
        super().__init__(text)


class ReleaseRejected(SeldonError):
    """A batch refused before anything was sent: every problem of every resource."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(
            f"release refused, nothing applied ({len(self.problems)} problem(s)):\n  "
            + "\n  ".join(self.problems)
        )


class SeldonApplyError(SeldonError):
    """The API server refused one call; says which resource and what had been applied before."""


def is_dns_label(value: object) -> bool:
    """RFC 1123 label: what Kubernetes and Seldon accept as a name that becomes a Service or
    container name (lower-case alphanumerics and '-', 63 at most, alphanumeric at both ends)."""
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.match(value))


def is_label_value(value: object) -> bool:
    """A valid Kubernetes label value (63 at most; alphanumerics, '-', '_', '.')."""
    return isinstance(value, str) and len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def _is_label_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return bool(name) and is_label_value(name)


def dns_name(value: str) -> str:
    """`value` as a DNS-1123 label: lower case, '_' and other separators as '-'. Refuses what
    cannot become one (empty, longer than 63)."""
    name = re.sub(r"[^a-z0-9-]+", "-", str(value).strip().lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not is_dns_label(name):
        raise ReleasePlanError(f"{value!r} cannot be made a DNS-1123 name (got {name!r})")
    return name


# ------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class ModelRef:
    """One registered model version: its registry version, where its MLflow model folder lies
    (the folder with MLmodel), and the payload's sha256 recorded at training."""

    version: str
    storage_uri: str
    sha256: str


@dataclass(frozen=True)
class Resources:
    """Per model replica. Core 2 reads `memory` (Model.spec.memory, for scheduling onto a
    Server); v1 sets both as the container's requests and memory as its limit."""

    cpu: str = "1"
    memory: str = "2Gi"


@dataclass(frozen=True)
class ReleasePlan:
    use_case: str
    champion: ModelRef
    candidate: ModelRef | None = None
    strategy: Literal["full", "shadow", "canary"] = "full"
    canary_weight: int = 10  # percent of requests the candidate answers (canary only), 1..99
    namespace: str = "assay"
    server: str = "mlserver"  # Core 2 Server the Models are pinned to (Model.spec.server)
    implementation: str = "MLFLOW_SERVER"  # v1 prepackaged server (MLServer with its MLflow runtime)
    requirements: tuple[str, ...] = ("mlflow",)  # Core 2 capabilities the Server must offer
    replicas: int = 1
    resources: Resources = field(default_factory=Resources)
    # Secret with the storage credentials, in the form Seldon's storage initializer reads
    # (rclone config for Core 2 and v1.18); None when the artifact store needs none.
    storage_secret: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "requirements", tuple(self.requirements))
        if isinstance(self.resources, Mapping):
            object.__setattr__(self, "resources", Resources(**self.resources))
        self.base_name  # noqa: B018  (raises if the use case cannot be a DNS name)
        if self.strategy not in STRATEGIES:
            raise ReleasePlanError(f"strategy {self.strategy!r} is not one of {list(STRATEGIES)}")
        if self.strategy == "full" and self.candidate is not None:
            raise ReleasePlanError(
                "strategy 'full' serves the champion alone: promote the candidate (make it the "
                "champion) or choose 'shadow' or 'canary'"
            )
        if self.strategy != "full" and self.candidate is None:
            raise ReleasePlanError(f"strategy {self.strategy!r} needs a candidate")
        if isinstance(self.canary_weight, bool) or not isinstance(self.canary_weight, int) or not (
            1 <= self.canary_weight <= 99
        ):
            raise ReleasePlanError(f"canary_weight must be an integer 1..99, got {self.canary_weight!r}")
        for role, ref in self.models():
            if not isinstance(ref, ModelRef):
                raise ReleasePlanError(f"{role} must be a ModelRef, got {type(ref).__name__}")
            self.name(ref.version)
            if not _URI.match(str(ref.storage_uri)):
                raise ReleasePlanError(
                    f"{role} version {ref.version}: storage_uri {ref.storage_uri!r} is not a URI "
                    "(scheme://...)"
                )
            if not _SHA256.match(str(ref.sha256)):
                raise ReleasePlanError(
                    f"{role} version {ref.version}: sha256 {ref.sha256!r} is not 64 lower-case hex"
                )
        if self.candidate is not None and self.name(self.candidate.version) == self.name(
            self.champion.version
        ):
            raise ReleasePlanError(
                f"candidate and champion are the same version {self.champion.version!r}"
            )
        for what, value in [("use_case", self.use_case)] + [
            (f"{role} version", str(ref.version)) for role, ref in self.models()
        ]:
            if not is_label_value(value):
                raise ReleasePlanError(f"{what} {value!r} cannot be a Kubernetes label value")
        if not is_dns_label(self.namespace):
            raise ReleasePlanError(f"namespace {self.namespace!r} is not a DNS-1123 label")
        if not is_dns_label(self.server):
            raise ReleasePlanError(f"server {self.server!r} is not a DNS-1123 label")
        if self.storage_secret is not None and not is_dns_label(self.storage_secret):
            raise ReleasePlanError(f"storage_secret {self.storage_secret!r} is not a DNS-1123 label")
        if self.implementation not in PREPACKAGED_SERVERS:
            raise ReleasePlanError(
                f"implementation {self.implementation!r} is not a prepackaged server: "
                f"{sorted(PREPACKAGED_SERVERS)}"
            )
        if not all(isinstance(r, str) and r for r in self.requirements):
            raise ReleasePlanError(f"requirements must be non-empty strings, got {self.requirements!r}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise ReleasePlanError(f"replicas must be an integer >= 1, got {self.replicas!r}")
        from kubernetes.utils import parse_quantity  # the kubernetes client: only when releasing

        for key in ("cpu", "memory"):
            value = getattr(self.resources, key)
            if not isinstance(value, str) or not _QUANTITY.match(value) or parse_quantity(value) <= 0:
                raise ReleasePlanError(
                    f"resources.{key} {value!r} is not a positive Kubernetes quantity"
                )

    @property
    def base_name(self) -> str:
        """The use case as a DNS name: the v1 SeldonDeployment, its graph node (the model name
        in V2 URLs, /v2/models/<base_name>/infer) and the Core 2 Experiment."""
        return dns_name(self.use_case)

    def name(self, version: str) -> str:
        """The DNS-1123 name of one version: `flights-v3` for version "3" of `flights`."""
        tail = dns_name(str(version))
        if not re.match(r"v[0-9]", tail):
            tail = f"v{tail}"
        name = f"{self.base_name}-{tail}"
        if not is_dns_label(name):
            raise ReleasePlanError(f"{name!r} (use case {self.use_case!r}, version {version!r}) "
                                   "is not a DNS-1123 label of at most 63 characters")
        return name

    def models(self) -> list[tuple[str, ModelRef]]:
        """(role, model) for each version served, champion first."""
        pairs = [("champion", self.champion)]
        if self.candidate is not None:
            pairs.append(("candidate", self.candidate))
        return pairs

    def _labels(self, role: str | None = None, ref: ModelRef | None = None) -> dict[str, str]:
        labels = {PART_OF: "assay", MANAGED_BY: "assay", USE_CASE_LABEL: self.use_case}
        if ref is not None:
            labels[VERSION_LABEL] = str(ref.version)
        if role is not None:
            labels[ROLE_LABEL] = role
        return labels

    def _metadata(self, name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict:
        return {"name": name, "namespace": self.namespace, "labels": labels,
                "annotations": annotations}  # fmt: skip


# ------------------------------------------------------------------------------------- renderers


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


# ------------------------------------------------------------------------- CRDs, strict schemas


def crds_dir() -> Path:
    """Where the Seldon CRDs are read from: $ASSAY_SELDON_CRDS, else platform/seldon/crds."""
    return Path(os.environ.get(CRDS_ENV) or DEFAULT_CRDS_DIR)


@lru_cache(maxsize=4)
def _crd_index(directory: str) -> dict[tuple[str, str], dict]:
    """(group, kind) -> CRD, from every YAML file in `directory`."""
    folder = Path(directory)
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    if not files:
        raise SeldonError(
            f"no Seldon CRDs in {folder} (set {CRDS_ENV} to the folder holding "
            "mlops.seldon.io_*.yaml and machinelearning.seldon.io_seldondeployments.yaml)"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    index: dict[tuple[str, str], dict] = {}
    for path in files:
        with path.open() as stream:
            for doc in yaml.load_all(stream, Loader=loader):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    spec = doc["spec"]
                    index[(spec["group"], spec["names"]["kind"])] = {**doc, "_path": str(path)}
    return index


def _split_api_version(api_version: object) -> tuple[str, str]:
    if not isinstance(api_version, str) or api_version.count("/") != 1:
        raise SeldonError(f"apiVersion {api_version!r} is not group/version")
    group, version = api_version.split("/")
    return group, version


def _describe(resource: Mapping) -> str:
    metadata = resource.get("metadata") if isinstance(resource, Mapping) else None
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    kind = resource.get("kind") if isinstance(resource, Mapping) else None
    return f"{kind or '<no kind>'}/{name or '<no name>'}"


def _crd_for(resource: Mapping) -> dict:
    group, _ = _split_api_version(resource.get("apiVersion"))
    kind = resource.get("kind")
    directory = crds_dir()
    index = _crd_index(str(directory))
    if (group, kind) not in index:
        known = sorted(f"{g}/{k}" for g, k in index)
        raise SeldonError(
            f"{_describe(resource)}: no CRD for {group} {kind} in {directory}; known: {known}"
        )
    return index[(group, kind)]


def plural_of(resource: Mapping) -> str:
    """The resource's plural (the URL segment and RBAC resource), read from its CRD."""
    return _crd_for(resource)["spec"]["names"]["plural"]


# ObjectMeta is the API server's, not the CRD's: only the fields rendered here are checked.
_LENIENT_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _strict(schema: Any, under: str | None = None) -> Any:
    """A copy of a CRD schema in which unknown fields fail.

    Kubernetes prunes fields a structural schema does not declare, so an object that declares
    `properties` (or declares nothing) and neither `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields` gets `additionalProperties: false`. Also: the
    `x-kubernetes-int-or-string` extension as `anyOf` integer/string, OpenAPI's `nullable`, list
    type `set` as unique items, and an embedded ObjectMeta (`metadata` of type object, no
    properties) checked leniently."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if (
        under == "metadata"
        and schema.get("type") == "object"
        and "properties" not in schema
        and "additionalProperties" not in schema
    ):
        return copy.deepcopy(_LENIENT_METADATA)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("description", "example"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: _strict(sub, under=name) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = _strict(value)
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if out.get("x-kubernetes-embedded-resource") and "properties" in out:
        out["properties"].setdefault("apiVersion", {"type": "string"})
        out["properties"].setdefault("kind", {"type": "string"})
        out["properties"].setdefault("metadata", copy.deepcopy(_LENIENT_METADATA))
    is_object = "properties" in out or out.get("type") == "object"
    if (
        is_object
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=1)
def _format_checker():
    """Only the integer widths: other formats (date-time, byte, ...) are the API server's to check.
    jsonschema is imported here, not at module load: the code location imports this module and should
    not pay for a validator it only needs when a release is applied."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("int32")
    def _int32(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or -(2**31) <= value < 2**31

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value < 2**63

    return checker


@lru_cache(maxsize=16)
def _strict_validator(directory: str, group: str, kind: str, version: str):
    crd = _crd_index(directory)[(group, kind)]
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    if version not in versions:
        raise SeldonError(f"{group} {kind}: the CRD ({crd['_path']}) has no version {version!r}; "
                          f"it has {sorted(versions)}")
    entry = versions[version]
    if not entry.get("served", False):
        raise SeldonError(f"{group}/{version} {kind} is not served by the CRD ({crd['_path']})")
    schema = _strict(entry["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = copy.deepcopy(_LENIENT_METADATA)
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    import jsonschema

    # OpenAPI 3.0's schema object is draft 4's (boolean exclusiveMinimum/Maximum).
    return jsonschema.Draft4Validator(schema, format_checker=_format_checker())


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += f".{part}"
        else:
            out += f"[{str(part)!r}]"
    return out


def _schema_errors(resource: Mapping) -> list[tuple[str, str]]:
    """(JSON path, reason) for every way `resource` breaks its CRD's strict schema."""
    group, version = _split_api_version(resource.get("apiVersion"))
    _crd_for(resource)  # a clear error when no CRD matches
    validator = _strict_validator(str(crds_dir()), group, resource.get("kind"), version)
    found = []
    for error in validator.iter_errors(resource):
        where = list(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            declared = set(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - declared, key=str):
                reason = f"unknown field {extra!r}: not in the {resource.get('kind')} CRD schema"
                found.append((_json_path([*where, extra]), reason))
            continue
        if error.validator in ("anyOf", "oneOf") and error.context:
            from jsonschema.exceptions import best_match

            error = best_match(error.context) or error
        found.append((_json_path(where), error.message))
    return sorted(set(found))


def validate_against_crd(resource: Mapping) -> None:
    """Validate `resource` against its CRD's `openAPIV3Schema`, strictly (unknown fields fail).
    Raises `SeldonValidationError` naming kind/name and the JSON path; `SeldonError` when no
    CRD matches its apiVersion/kind."""
    if not isinstance(resource, Mapping):
        raise SeldonError(f"a resource must be a mapping, got {type(resource).__name__}")
    errors = _schema_errors(resource)
    if errors:
        (path, message), *rest = errors
        raise SeldonValidationError(_describe(resource), path, message,
                                    [f"{p}: {m}" for p, m in rest])  # fmt: skip


# ---------------------------------------------------------------------------- admission rules


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
        errors += _name_errors(name, f"{where}.name", "predictor name")
        if isinstance(name, str) and name in seen:
            errors.append(f"{where}.name: duplicate predictor name {name!r} "
                          f"(also $.spec.predictors[{seen[name]}])")  # fmt: skip
        if isinstance(name, str):
            seen.setdefault(name, i)
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
        errors += _name_errors(name, f"{where}.name", "candidate name")
        if isinstance(name, str) and name in names:
            errors.append(f"{where}.name: {name!r} is a candidate twice "
                          f"(also $.spec.candidates[{names[name]}])")  # fmt: skip
        if isinstance(name, str):
            names.setdefault(name, i)
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


# ------------------------------------------------------------------------------- API boundary

# Models (and SeldonDeployments) before the Experiment that routes to them; on delete the other way.
_APPLY_ORDER = {"Model": 0, "SeldonDeployment": 0, "Experiment": 1}


def _target(resource: Mapping) -> dict[str, str]:
    group, version = _split_api_version(resource["apiVersion"])
    metadata = resource["metadata"]
    return {"group": group, "version": version, "namespace": metadata["namespace"],
            "plural": plural_of(resource), "name": metadata["name"]}  # fmt: skip


def apply(resources: Sequence[Mapping], api_client, *, dry_run: bool = False) -> list[dict]:
    """Server-side apply every resource, or none: validates and admission-checks the whole batch
    first and raises `ReleaseRejected` (nothing sent) on any problem. Then one PATCH per resource,
    Models before Experiments, as field manager "assay" with force (Assay owns these objects) and
    the API server's strict field validation. `dry_run` asks the server to check without storing.
    Returns the objects the server answered with. A refusal by the server raises
    `SeldonApplyError` naming the resource and what was applied before it; applying again is
    safe (server-side apply is idempotent)."""
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    resources = list(resources)
    problems = release_problems(resources)
    if problems:
        raise ReleaseRejected(problems)
    api = CustomObjectsApi(api_client)
    applied: list[str] = []
    answers = []
    for resource in sorted(resources, key=lambda r: _APPLY_ORDER.get(r["kind"], 0)):
        extra = {"dry_run": "All"} if dry_run else {}
        try:
            answers.append(api.patch_namespaced_custom_object(
                **_target(resource), body=dict(resource), field_manager=FIELD_MANAGER, force=True,
                field_validation="Strict", _content_type=APPLY_PATCH_CONTENT_TYPE, **extra,
            ))  # fmt: skip
        except ApiException as error:
            raise SeldonApplyError(
                f"{_describe(resource)}: the API server refused the apply ({error.status} "
                f"{error.reason}): {error.body}; applied before it: {applied or 'nothing'}"
            ) from error
        applied.append(_describe(resource))
    return answers


def obsolete(before: Sequence[Mapping], after: Sequence[Mapping]) -> list[dict]:
    """The resources of `before` that `after` no longer has (by group, kind, namespace, name):
    what a rollback or the end of a release must delete once `after` is applied."""
    keep = {_identity(r) for r in after}
    return [dict(r) for r in before if _identity(r) not in keep]


def delete(resources: Sequence[Mapping], api_client) -> list[str]:
    """Delete Core 2 Experiments and Models (Experiments first, so none routes to a Model that is
    gone); one already gone counts as deleted. A SeldonDeployment is never deleted here: it is
    rolled back by applying its new predictors, and deleting it would take the endpoint down
    (Role assay-deployer grants no delete on it). Returns "Kind/name" of each one deleted."""
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    resources = list(resources)
    refused = [_describe(r) for r in resources if _identity(r)[:2] not in (_CORE2_MODEL, _CORE2_EXPERIMENT)]
    if refused:
        raise SeldonError(f"only Core 2 Models and Experiments are deleted, not {refused}")
    bad = [
        f"{_describe(r)}: {e}"
        for r in resources
        for e in _name_errors(_get(_get(r, "metadata"), "name"), "$.metadata.name", "name")
        + _name_errors(_get(_get(r, "metadata"), "namespace"), "$.metadata.namespace", "namespace")
    ]
    if bad:
        raise SeldonError("refusing to delete: " + "; ".join(bad))
    api = CustomObjectsApi(api_client)
    deleted = []
    for resource in sorted(resources, key=lambda r: -_APPLY_ORDER.get(r["kind"], 0)):
        try:
            api.delete_namespaced_custom_object(**_target(resource))
        except ApiException as error:
            if error.status != 404:
                raise SeldonApplyError(
                    f"{_describe(resource)}: the API server refused the delete ({error.status} "
                    f"{error.reason}): {error.body}; deleted before it: {deleted or 'nothing'}"
                ) from error
        deleted.append(_describe(resource))
    return deleted
