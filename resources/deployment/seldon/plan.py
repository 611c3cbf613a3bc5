"""The release plan: what one use case serves (champion, optional shadow or canary candidate), the
names and labels it gets, and the errors every part of this package raises."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


CORE2_API_VERSION = "mlops.seldon.io/v1alpha1"
V1_API_VERSION = "machinelearning.seldon.io/v1"

FIELD_MANAGER = "assay"
APPLY_PATCH_CONTENT_TYPE = "application/apply-patch+yaml"

CRDS_ENV = "ASSAY_SELDON_CRDS"
# Vendored, unmodified copies (provenance and hashes in SOURCE.md there), so a clean clone and the
# image validate against the same schemas.
DEFAULT_CRDS_DIR = Path(__file__).resolve().parents[3] / "platform" / "seldon" / "crds"

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
# The model's load parameter that carries its expected whole-model sha256: Assay's runtime
# (serving/runtime.py) hashes the fetched folder against it before MLflow unpickles anything.
MODEL_SHA256_PARAMETER = "assay_model_sha256"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


class SeldonError(ValueError):
    """Base of every refusal in this package."""


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
    (the folder with MLmodel), and the whole model folder's sha256 recorded at training
    (`assay.model_sha256`, training/artifacts.py)."""

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
