"""The GPU training pod: what `dagster_k8s.PipesK8sClient` launches when `ASSAY_ENV=kubernetes`.

Training runs the same entrypoint everywhere, `python -m training.train`, a dagster-pipes program.
On a laptop it is a subprocess; in the cluster it is one pod per training step, created by the run
pod (service account `assay-runs`, rights in platform/k8s/trainer-rbac.yaml) and run as the
`assay-trainer` service account, which has no Kubernetes API rights and no token.

The pod's shape comes from pure functions, which build its spec and metadata as plain dicts for
`PipesK8sClient.run(base_pod_spec=..., base_pod_meta=...)`. dagster-k8s accepts camelCase or
snake_case keys there (`k8s_snake_case_dict` converts camelCase to the client's snake_case and
rejects any key the Kubernetes model does not have); the dicts here use camelCase, the API's own
spelling, so the same dict is what platform/k8s/gpu-training-pod-template.yaml shows and what
kubernetes-validate checks.

The Dagster side calls, in order:

    settings = TrainingPodSettings.from_env()
    client = kubernetes_trainer_client(settings)
    invocation = run_kubernetes_training(
        client, settings, context, TRAINING_COMMAND, extras, env
    )  # extras carry "use_case" and "family" (or pass use_case=, family=)
    return invocation.get_materialize_result()  # or .get_results()

The GPU pool assumptions (node label, taint, NVIDIA device plugin) are documented in
platform/README.md, "GPU training".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity

# The entrypoint, as run in the image (WORKDIR /app). The same module runs locally through
# PipesSubprocessClient.
TRAINING_COMMAND: tuple[str, ...] = ("python", "-m", "training.train")

# Environment variables that configure the pod (read by TrainingPodSettings.from_env).
IMAGE_VAR = "ASSAY_TRAINING_IMAGE"
NAMESPACE_VAR = "ASSAY_K8S_NAMESPACE"
GPUS_VAR = "ASSAY_TRAINING_GPUS"
CPU_REQUEST_VAR = "ASSAY_TRAINING_CPU_REQUEST"
CPU_LIMIT_VAR = "ASSAY_TRAINING_CPU_LIMIT"
MEMORY_REQUEST_VAR = "ASSAY_TRAINING_MEMORY_REQUEST"
MEMORY_LIMIT_VAR = "ASSAY_TRAINING_MEMORY_LIMIT"
NODE_SELECTOR_VAR = "ASSAY_TRAINING_NODE_SELECTOR"
TIMEOUT_VAR = "ASSAY_TRAINING_TIMEOUT_SECONDS"

# The credentials the training process needs (MLflow registry, S3 artifact store). They exist only
# in the Secret `assay-runtime` (platform/README.md, Install step 3) and reach the pod as
# `valueFrom.secretKeyRef`, never as literal values.
RUNTIME_SECRET = "assay-runtime"
SECRET_ENV: tuple[str, ...] = ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

WAREHOUSE_CLAIM = "assay-warehouse"
ASSAY_HOME = "/var/lib/assay"
APP_UID = 10001  # the image's user (platform/docker/Dockerfile)

# Names the pod spec itself sets; a caller's `env` may not redefine them (a duplicate env name
# would silently win over the secret reference, and could put a credential in the pod spec).
_PIPES_ENV = ("DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES")
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_KEY_NAME = re.compile(r"^[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class TrainingPodConfigError(ValueError):
    """A training pod setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True)
class TrainingPodSettings:
    """Everything that shapes one training pod. Immutable; build with `from_env()` in the cluster.

    Mappings are held as tuples of pairs so the settings stay hashable and cannot be mutated by a
    caller after validation.
    """

    image: str
    namespace: str = "assay"
    service_account: str = "assay-trainer"
    container_name: str = "trainer"
    working_dir: str = "/app"
    image_pull_policy: str = "IfNotPresent"
    gpu_count: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "16Gi"
    memory_limit: str = "32Gi"
    # PyTorch DataLoader workers share batches through /dev/shm, which is 64Mi in a container by
    # default; a memory-backed emptyDir replaces it (it counts toward memory_limit).
    shm_size: str = "4Gi"
    # The GPU node pool: its label (set on the pool by whoever creates it) and its taint. The
    # toleration uses operator Exists, so it tolerates `nvidia.com/gpu=present:NoSchedule` (GKE's
    # automatic taint) and a valueless `nvidia.com/gpu:NoSchedule` alike.
    node_selector: tuple[tuple[str, str], ...] = (("assay.dev/pool", "gpu"),)
    gpu_taint_key: str = "nvidia.com/gpu"
    gpu_taint_effect: str = "NoSchedule"
    runtime_secret: str = RUNTIME_SECRET
    secret_env: tuple[str, ...] = SECRET_ENV
    warehouse_claim: str = WAREHOUSE_CLAIM
    assay_home: str = ASSAY_HOME
    # Training reads the training-set snapshot and writes to MLflow/S3, never to the volume; a
    # read-only mount keeps a training bug away from the DuckDB warehouse beside the snapshots.
    warehouse_read_only: bool = True
    run_as_user: int = APP_UID
    # Hard cap on a pod's running time (activeDeadlineSeconds): a hung training frees its GPU.
    max_runtime_seconds: int = 6 * 3600
    # Extra time Dagster waits on top of max_runtime_seconds: scheduling, GPU node scale-up, pull.
    scheduling_allowance_seconds: int = 3600
    poll_interval_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not self.image or not self.image.strip():
            raise TrainingPodConfigError(f"image is empty: set {IMAGE_VAR}")
        _check_image_is_pinned(self.image)
        if self.gpu_count < 1:
            raise TrainingPodConfigError(
                f"gpu_count={self.gpu_count}: a training pod requests at least one GPU "
                f"({GPUS_VAR})"
            )
        for name, request, limit in (
            ("cpu", self.cpu_request, self.cpu_limit),
            ("memory", self.memory_request, self.memory_limit),
        ):
            low, high = _quantity(f"{name}_request", request), _quantity(f"{name}_limit", limit)
            if low > high:
                raise TrainingPodConfigError(
                    f"{name}_request={request} exceeds {name}_limit={limit}"
                )
        if _quantity("shm_size", self.shm_size) > _quantity("memory_limit", self.memory_limit):
            raise TrainingPodConfigError(
                f"shm_size={self.shm_size} exceeds memory_limit={self.memory_limit}: "
                "/dev/shm is memory-backed and counts toward the limit"
            )
        if not self.node_selector:
            raise TrainingPodConfigError(
                "node_selector is empty: training pods must target the GPU pool "
                f"({NODE_SELECTOR_VAR})"
            )
        for key, value in self.node_selector:
            _check_label("node_selector", key, value)
        if self.max_runtime_seconds < 1 or self.scheduling_allowance_seconds < 0:
            raise TrainingPodConfigError(
                f"max_runtime_seconds={self.max_runtime_seconds} must be positive "
                f"({TIMEOUT_VAR}); scheduling_allowance_seconds must not be negative"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainingPodSettings:
        """Settings from the environment of the code server / run pod.

        `ASSAY_TRAINING_IMAGE` is required and has no fallback: the code-location image carries
        torch's CPU build, so falling back to it would train on CPU on a GPU node without a word.
        Every other variable is optional and overrides one default.
        """
        env = os.environ if environ is None else environ
        image = env.get(IMAGE_VAR, "").strip()
        if not image:
            raise TrainingPodConfigError(
                f"{IMAGE_VAR} is not set: name the GPU training image, pinned to a tag or digest "
                f"(e.g. registry.example.com/assay-trainer-gpu:<git sha>)"
            )
        overrides: dict[str, Any] = {"image": image}
        if env.get(NAMESPACE_VAR, "").strip():
            overrides["namespace"] = env[NAMESPACE_VAR].strip()
        if env.get(GPUS_VAR, "").strip():
            overrides["gpu_count"] = _int_var(env, GPUS_VAR)
        if env.get(TIMEOUT_VAR, "").strip():
            overrides["max_runtime_seconds"] = _int_var(env, TIMEOUT_VAR)
        for variable, attribute in (
            (CPU_REQUEST_VAR, "cpu_request"),
            (CPU_LIMIT_VAR, "cpu_limit"),
            (MEMORY_REQUEST_VAR, "memory_request"),
            (MEMORY_LIMIT_VAR, "memory_limit"),
        ):
            if env.get(variable, "").strip():
                value = env[variable].strip()
                _quantity(variable, value)  # so a bad value names the variable, not the field
                overrides[attribute] = value
        if env.get(NODE_SELECTOR_VAR, "").strip():
            overrides["node_selector"] = _parse_node_selector(env[NODE_SELECTOR_VAR])
        return cls(**overrides)

    @property
    def pod_wait_timeout_seconds(self) -> float:
        """How long Dagster waits for the pod to finish, from creation (includes Pending time)."""
        return float(self.max_runtime_seconds + self.scheduling_allowance_seconds)


def training_pod_spec(settings: TrainingPodSettings) -> dict[str, Any]:
    """The pod spec (`base_pod_spec` for PipesK8sClient), camelCase as in the Kubernetes API.

    PipesK8sClient keeps the first container for the Pipes protocol (its logs carry the messages
    back) and appends the Pipes bootstrap variables and the caller's `env` to its `env`.
    """
    secret_env = [
        {
            "name": name,
            "valueFrom": {
                "secretKeyRef": {"name": settings.runtime_secret, "key": name, "optional": False}
            },
        }
        for name in settings.secret_env
    ]
    container = {
        "name": settings.container_name,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(TRAINING_COMMAND),
        "workingDir": settings.working_dir,
        "env": [
            {"name": "ASSAY_ENV", "value": "kubernetes"},
            {"name": "ASSAY_HOME", "value": settings.assay_home},
            *secret_env,
        ],
        "resources": {
            "requests": {
                "cpu": settings.cpu_request,
                "memory": settings.memory_request,
                settings.gpu_resource: str(settings.gpu_count),
            },
            # Extended resources (GPUs) must have request == limit; the limit alone would imply
            # it, stating both keeps the pod's shape obvious.
            "limits": {
                "cpu": settings.cpu_limit,
                "memory": settings.memory_limit,
                settings.gpu_resource: str(settings.gpu_count),
            },
        },
        "volumeMounts": [
            {
                "name": "warehouse",
                "mountPath": settings.assay_home,
                "readOnly": settings.warehouse_read_only,
            },
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "serviceAccountName": settings.service_account,
        # The trainer calls no Kubernetes API: no token in the pod (the account says so too).
        "automountServiceAccountToken": False,
        # Service discovery variables for every Service in the namespace are noise in a job pod.
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        "activeDeadlineSeconds": settings.max_runtime_seconds,
        "nodeSelector": dict(settings.node_selector),
        "tolerations": [
            {
                "key": settings.gpu_taint_key,
                "operator": "Exists",
                "effect": settings.gpu_taint_effect,
            }
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            # Skip the recursive chown of the whole warehouse volume on every pod start.
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {
                "name": "warehouse",
                "persistentVolumeClaim": {
                    "claimName": settings.warehouse_claim,
                    "readOnly": settings.warehouse_read_only,
                },
            },
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
        ],
    }


TRAINER_LABELS: dict[str, str] = {
    "app.kubernetes.io/name": "assay-trainer",
    "app.kubernetes.io/part-of": "assay",
    "app.kubernetes.io/component": "training",
}


def training_pod_meta(use_case: str, family: str, run_id: str) -> dict[str, Any]:
    """Pod metadata (`base_pod_meta`): labels to select training pods by use case, model family
    and Dagster run; the exact values again as annotations.

    dagster-k8s merges its own common labels underneath; ours win where both set a key.
    """
    for name, value in (("use_case", use_case), ("family", family), ("run_id", run_id)):
        if not value or not value.strip():
            raise TrainingPodConfigError(f"{name} is empty")
    labels = {
        **TRAINER_LABELS,
        "assay.dev/use-case": _label_value(use_case),
        "assay.dev/family": _label_value(family),
        "dagster/run-id": _label_value(run_id),
    }
    return {
        "labels": labels,
        "annotations": {
            "assay.dev/use-case": use_case,
            "assay.dev/family": family,
            "assay.dev/dagster-run-id": run_id,
            # A GPU node running a training must not be drained by the autoscaler mid-run.
            "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
        },
    }


def kubernetes_trainer_client(
    settings: TrainingPodSettings,
    *,
    kubeconfig_file: str | None = None,
    kube_context: str | None = None,
):
    """The Pipes client that launches training pods.

    In the cluster (the default) it uses the run pod's own service account (in-cluster config);
    pass `kubeconfig_file` / `kube_context` to drive a cluster from outside, or in tests. The
    configuration is loaded when `.run` is called, not here, so building it needs no cluster.
    """
    from dagster_k8s import PipesK8sClient

    in_cluster = kubeconfig_file is None and kube_context is None
    return PipesK8sClient(
        load_incluster_config=in_cluster,
        kubeconfig_file=kubeconfig_file,
        kube_context=kube_context,
        poll_interval=settings.poll_interval_seconds,
    )


def run_kubernetes_training(
    client,
    settings: TrainingPodSettings,
    context,
    command: Sequence[str] = TRAINING_COMMAND,
    extras: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    use_case: str | None = None,
    family: str | None = None,
):
    """Run one training pod through `client` (a PipesK8sClient) and return its
    `PipesClientCompletedInvocation` (call `.get_materialize_result()` / `.get_results()`).

    `extras` reach the training process through the Pipes context (`pipes.get_extra(...)`);
    `env` adds plain, non-secret variables. `use_case` and `family` label the pod; when not
    given they are read from `extras["use_case"]` / `extras["family"]`.

    Both `extras` and `env` end up as literal values in the pod spec (the Pipes context is an
    environment variable), readable by anyone who may get pods in the namespace. So credentials
    come only from the Secret: `env` may not name them, nor anything else the pod spec or the
    Pipes session sets, and neither may carry a credential's value (the values of
    MLFLOW_TRACKING_URI / AWS_* in this process's environment, a URL with a password, an AWS key).
    """
    extras = dict(extras or {})
    env = dict(env or {})
    use_case = use_case or extras.get("use_case")
    family = family or extras.get("family")
    if not use_case or not family:
        raise TrainingPodConfigError(
            "use_case and family label the training pod: pass them, or put them in extras "
            "as 'use_case' and 'family'"
        )
    reserved = {"ASSAY_ENV", "ASSAY_HOME", *settings.secret_env, *_PIPES_ENV}
    clashes = sorted(reserved.intersection(env))
    if clashes:
        raise TrainingPodConfigError(
            f"env may not set {', '.join(clashes)}: the pod spec sets them "
            f"(credentials only from Secret {settings.runtime_secret!r})"
        )
    _refuse_literal_credentials({"extras": extras, "env": env}, settings)
    return client.run(
        context=context,
        image=settings.image,
        command=list(command),
        namespace=settings.namespace,
        env=env,
        base_pod_meta=training_pod_meta(use_case, family, context.run.run_id),
        base_pod_spec=training_pod_spec(settings),
        extras=extras,
        pod_wait_timeout=settings.pod_wait_timeout_seconds,
    )


# ------------------------------------------------------------------------------------- helpers


_CREDENTIAL_PATTERN = re.compile(
    r"AKIA[0-9A-Z]{16}"  # an AWS access key id
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|://[^/\s:@]+:[^/\s@]+@"  # a password inside a URL
)


def _refuse_literal_credentials(values: Mapping[str, Any], settings: TrainingPodSettings) -> None:
    """Raise if any string under `values` holds a credential; the message names where, never
    the value."""
    known = {
        name: os.environ[name]
        for name in settings.secret_env
        if len(os.environ.get(name, "").strip()) >= 4
    }

    def walk(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{where}[{key!r}]")
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")
        elif isinstance(node, str):
            for name, secret in known.items():
                if secret.strip() in node:
                    raise TrainingPodConfigError(
                        f"{where} holds the value of {name}, which the training pod gets from "
                        f"Secret {settings.runtime_secret!r}: leave it out (the pod spec would "
                        f"show it to anyone who may read pods); training reads ${name}"
                    )
            if _CREDENTIAL_PATTERN.search(node):
                raise TrainingPodConfigError(
                    f"{where} looks like a credential (a password in a URL, an AWS key, a "
                    "private key): pass credentials through Secret "
                    f"{settings.runtime_secret!r}, never in extras or env"
                )

    for name, value in values.items():
        walk(value, name)


def _check_image_is_pinned(image: str) -> None:
    if "@sha256:" in image:
        return
    name = image.rsplit("/", 1)[-1]
    tag = name.partition(":")[2]
    if not tag or tag == "latest":
        raise TrainingPodConfigError(
            f"image {image!r} is not pinned: give it a tag per build (the git SHA) or a digest "
            f"({IMAGE_VAR}); a moving tag could run other code than the run records"
        )


def _quantity(name: str, value: str):
    try:
        return parse_quantity(value)
    except (ValueError, TypeError) as error:
        raise TrainingPodConfigError(
            f"{name}={value!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)"
        ) from error


def _int_var(env: Mapping[str, str], variable: str) -> int:
    raw = env[variable].strip()
    try:
        return int(raw)
    except ValueError:
        raise TrainingPodConfigError(f"{variable}={raw!r} is not an integer") from None


def _parse_node_selector(raw: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in raw.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip():
            raise TrainingPodConfigError(
                f"{NODE_SELECTOR_VAR}={raw!r}: want key=value[,key=value], e.g. assay.dev/pool=gpu"
            )
        _check_label(NODE_SELECTOR_VAR, key.strip(), value.strip())
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _check_label(where: str, key: str, value: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if (slash and not prefix) or not _LABEL_KEY_NAME.match(name) or len(prefix) > 253:
        raise TrainingPodConfigError(f"{where}: {key!r} is not a valid label key")
    if not _LABEL_VALUE.match(value):
        raise TrainingPodConfigError(f"{where}: {value!r} is not a valid label value for {key!r}")


def _label_value(value: str) -> str:
    """A label-safe form of `value` (63 characters, alphanumerics, '-', '_', '.')."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")
    if not cleaned:
        raise TrainingPodConfigError(f"{value!r} leaves nothing usable as a label value")
    return cleaned

