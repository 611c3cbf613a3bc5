"""The GPU training pod, checked up to the Kubernetes API boundary.

No cluster or GPU runs here. The pod body is the one dagster-k8s itself builds (`build_pod_body`,
the pure function `PipesK8sClient.run` calls) from our spec and metadata, validated against
Kubernetes' own schema in strict mode. The client is then driven for real through
`dg.materialize`: every line of dagster-k8s runs (config loading, pod creation, waiting, log
streaming, Pipes message parsing, clean-up) and the kubernetes client's own, down to its HTTP
transport, which is the only thing replaced (by tests/fake_kubernetes.py's API server). That
server runs the pod's container command as a local process with the environment the kubelet would
give it (literal values, and Secret references resolved from a Secret holding the keys
platform/README.md creates), so the Pipes messages that come back through the pod's log were
written by a real dagster-pipes program from the pod's own env.
"""

from __future__ import annotations

import copy
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s import PipesK8sClient
from dagster_k8s.pipes import build_pod_body
from dagster_pipes import (
    DAGSTER_PIPES_CONTEXT_ENV_VAR,
    DAGSTER_PIPES_MESSAGES_ENV_VAR,
    decode_env_var,
    encode_env_var,
)
from kubernetes.client import CoreV1Api

from resources.training.pod import _CREDENTIAL_PATTERN as _SECRET_VALUE
from resources.training.pod import (
    TRAINING_COMMAND,
    TrainingPodConfigError,
    TrainingPodSettings,
    kubernetes_trainer_client,
    run_kubernetes_training,
    training_pod_meta,
    training_pod_spec,
)
from fake_kubernetes import FakeApiServer, documents_by_kind, grants

REPO = Path(__file__).resolve().parents[1]
K8S_DIR = REPO / "platform" / "k8s"
README = REPO / "platform" / "README.md"
HELM_VALUES = REPO / "platform" / "helm" / "dagster-values.yaml"
TEMPLATE = K8S_DIR / "gpu-training-pod-template.yaml"
RBAC = K8S_DIR / "trainer-rbac.yaml"

KUBERNETES_VERSION = "1.33.0"  # as in tests/test_platform_manifests.py
IMAGE = "registry.example.com/assay-trainer-gpu:3f2c1ab"
RUN_ID = "4e5b2c1a-9d8f-4a7b-8c6d-1e2f3a4b5c6d"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
SECRET_ENV = ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

# dagster's Pipes context builder and dagster-k8s's pod naming still call these on the context.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:AssetExecutionContext\.(run_id|op) is deprecated:DeprecationWarning"
)

_SECRET_NAME = re.compile(r"(password|passwd|secret|access_?key|token|api_?key|credential)", re.I)


@pytest.fixture
def settings() -> TrainingPodSettings:
    return TrainingPodSettings(image=IMAGE)


def _pipes_env(extras: dict) -> dict[str, str]:
    """What a Pipes session hands PipesK8sClient to inject (PipesEnvContextInjector and the pod
    logs message reader)."""
    return {
        DAGSTER_PIPES_CONTEXT_ENV_VAR: encode_env_var({"run_id": RUN_ID, "extras": extras}),
        DAGSTER_PIPES_MESSAGES_ENV_VAR: encode_env_var({"stdio": "stderr"}),
    }


def _as_api_dict(pod: kubernetes.client.V1Pod) -> dict:
    """The JSON the client sends. `build_pod_body` leaves apiVersion/kind out (the client's
    create_namespaced_pod does not need them); validation does."""
    body = kubernetes.client.ApiClient().sanitize_for_serialization(pod)
    return {"apiVersion": "v1", "kind": "Pod", **body}


def _body(settings: TrainingPodSettings, extras: dict | None = None) -> dict:
    pod = build_pod_body(
        pod_name="dagster-4e5b2c1a-9d8f-4a7b-flights-candidate-0123456789",
        image=settings.image,
        command=list(TRAINING_COMMAND),
        env_vars=_pipes_env(extras or {"family": "lightgbm"}),
        base_pod_meta=training_pod_meta("flights", "lightgbm", RUN_ID),
        base_pod_spec=training_pod_spec(settings),
    )
    return _as_api_dict(pod)


def _tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' ToleratesTaint, for the fields used here."""
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if toleration.get("key") and toleration["key"] != taint["key"]:
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return True
    return toleration.get("value", "") == taint.get("value", "")


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _readme_runtime_secret_keys() -> set[str]:
    text = README.read_text()
    start = text.index("create secret generic assay-runtime")
    block = text[start : text.index("```", start)]
    return set(re.findall(r"--from-literal=([A-Z0-9_]+)=", block))


# --------------------------------------------------------------------------------- pod body


def test_the_pod_body_dagster_k8s_builds_validates_strictly(settings):
    assert kubernetes_validate.validate(_body(settings), KUBERNETES_VERSION, strict=True) == "1.33"


def test_strict_validation_rejects_a_typo_in_the_pod_body(settings):
    body = _body(settings)
    typo = copy.deepcopy(body)
    typo["spec"]["containers"][0]["resources"]["limts"] = typo["spec"]["containers"][0][
        "resources"
    ].pop("limits")
    kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=False)  # lenient lets it by
    with pytest.raises(kubernetes_validate.ValidationError, match="limts"):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def test_dagster_k8s_rejects_a_typo_in_our_spec_before_any_api_call(settings):
    # A second guard, in dagster-k8s itself: base_pod_spec keys must be V1PodSpec fields, in
    # either camelCase or snake_case; anything else is refused while building the body.
    spec = training_pod_spec(settings)
    spec["nodeSelectr"] = spec.pop("nodeSelector")
    with pytest.raises(Exception, match="nodeSelectr"):
        build_pod_body("p", IMAGE, None, {}, None, spec)


def test_the_trainer_container_is_first_and_runs_the_training_entrypoint(settings):
    spec = _body(settings)["spec"]
    (container,) = spec["containers"]  # the only container, so the one Pipes talks to
    assert container["name"] == "trainer"
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "training.train"]
    assert container["workingDir"] == "/app"
    assert spec["restartPolicy"] == "Never"


def test_the_pod_requests_a_gpu(settings):
    resources = _body(settings)["spec"]["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    # An extended resource's request, when given, must equal its limit.
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
    two = TrainingPodSettings(image=IMAGE, gpu_count=2)
    assert _body(two)["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_the_pod_lands_on_the_gpu_pool_and_tolerates_its_taint(settings):
    spec = _body(settings)["spec"]
    assert spec["nodeSelector"] == {"assay.dev/pool": "gpu"}
    assert any(_tolerates(t, GPU_TAINT) for t in spec["tolerations"])
    # ...and the valueless variant some providers use.
    assert any(_tolerates(t, {**GPU_TAINT, "value": ""}) for t in spec["tolerations"])
    # It tolerates nothing else (no blanket toleration that would let it land anywhere).
    assert not any(
        _tolerates(t, {"key": "dedicated", "value": "x", "effect": "NoSchedule"})
        for t in spec["tolerations"]
    )


def test_the_pod_runs_as_assay_trainer_without_a_token(settings):
    spec = _body(settings)["spec"]
    assert spec["serviceAccountName"] == "assay-trainer"
    assert spec["automountServiceAccountToken"] is False


def test_credentials_come_only_from_the_runtime_secret(settings):
    body = _body(settings)
    container = body["spec"]["containers"][0]
    by_name = {e["name"]: e for e in container["env"]}
    for name in SECRET_ENV:
        assert by_name[name] == {
            "name": name,
            "valueFrom": {
                "secretKeyRef": {"name": "assay-runtime", "key": name, "optional": False}
            },
        }
    # No env var that looks like a credential carries a literal value...
    literal = [e["name"] for e in container["env"] if "value" in e]
    assert not [n for n in literal if _SECRET_NAME.search(n)], literal
    # ...every reference names a key the README's `kubectl create secret` creates...
    refs = {
        e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e
    }
    assert refs <= _readme_runtime_secret_keys()
    # ...and nothing anywhere in the body looks like a credential.
    assert not _SECRET_VALUE.search(yaml.safe_dump(body))


def test_the_warehouse_volume_is_mounted_read_only_at_assay_home(settings):
    spec = _body(settings)["spec"]
    values = yaml.safe_load(HELM_VALUES.read_text())
    assay_home = values["dagster-user-deployments"]["deployments"][0]["env"]["ASSAY_HOME"]
    container = spec["containers"][0]
    assert {"name": "ASSAY_HOME", "value": assay_home} in container["env"]
    assert {"name": "ASSAY_ENV", "value": "kubernetes"} in container["env"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    warehouse = volumes[mounts[assay_home]["name"]]
    assert warehouse["persistentVolumeClaim"]["claimName"] == "assay-warehouse"
    assert mounts[assay_home]["readOnly"] is True
    (claim,) = _documents(K8S_DIR / "warehouse-pvc.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["metadata"]["name"] == "assay-warehouse"
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"


def test_the_pod_meets_pod_security_restricted(settings):
    # The namespace warns on "restricted" (platform/k8s/namespace.yaml); training pods pass it.
    spec = _body(settings)["spec"]
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == 10001  # the image's user (platform/docker/Dockerfile)
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in security
    allowed_volume_types = {"persistentVolumeClaim", "emptyDir", "configMap", "secret", "projected"}
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= allowed_volume_types, volume
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec)


def test_pod_metadata_labels_the_use_case_family_and_run(settings):
    meta = _body(settings)["metadata"]
    labels = meta["labels"]
    assert labels["app.kubernetes.io/name"] == "assay-trainer"  # ours win over dagster-k8s's
    assert labels["app.kubernetes.io/part-of"] == "assay"
    assert labels["app.kubernetes.io/instance"] == "dagster"  # dagster-k8s's common labels stay
    assert labels["assay.dev/use-case"] == "flights"
    assert labels["assay.dev/family"] == "lightgbm"
    assert labels["dagster/run-id"] == RUN_ID
    assert meta["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    label_value = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
    assert all(label_value.match(v) for v in labels.values()), labels


def test_label_values_are_sanitized_and_the_exact_values_kept_as_annotations():
    meta = training_pod_meta("Flights Delays/2013", "torch-mlp" + "x" * 80, RUN_ID)
    assert meta["labels"]["assay.dev/use-case"] == "Flights-Delays-2013"
    assert len(meta["labels"]["assay.dev/family"]) <= 63
    assert meta["annotations"]["assay.dev/use-case"] == "Flights Delays/2013"
    with pytest.raises(TrainingPodConfigError, match="family"):
        training_pod_meta("flights", " ", RUN_ID)


def test_the_checked_in_pod_template_is_what_the_code_builds():
    # platform/k8s/gpu-training-pod-template.yaml is a rendering for review; it must not drift.
    (template,) = _documents(TEMPLATE)
    assert template["kind"] == "PodTemplate"
    spec = template["template"]["spec"]
    rendered = training_pod_spec(TrainingPodSettings(image=spec["containers"][0]["image"]))
    assert spec == rendered
    meta = training_pod_meta("flights", "lightgbm", RUN_ID)
    assert template["template"]["metadata"]["labels"].items() <= meta["labels"].items()
    assert template["template"]["metadata"]["annotations"].items() <= meta["annotations"].items()


# ------------------------------------------------------------------------------------- RBAC


def test_the_trainer_account_has_no_token_and_no_role():
    docs = documents_by_kind(RBAC)
    account = docs["ServiceAccount"]
    assert account["metadata"]["name"] == "assay-trainer"
    assert account["metadata"]["namespace"] == "assay"
    assert account["automountServiceAccountToken"] is False
    every_subject = [
        s
        for path in K8S_DIR.glob("*.y*ml")
        for d in _documents(path)
        if d["kind"] == "RoleBinding"
        for s in d["subjects"]
    ]
    assert not [s for s in every_subject if s["name"] == "assay-trainer"]


def test_the_run_pods_may_launch_and_follow_training_pods_and_nothing_more():
    docs = documents_by_kind(RBAC)
    assert grants(docs["Role"]) == {
        ("", "pods"): {"create", "get", "list", "watch", "delete"},
        ("", "pods/log"): {"get"},
        ("", "events"): {"list"},
    }
    binding = docs["RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": docs["Role"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "assay-runs", "namespace": "assay"}
    ]
    for doc in docs.values():
        assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.33"


# --------------------------------------------------------------------------------- settings


def test_settings_from_env_require_the_training_image():
    with pytest.raises(TrainingPodConfigError, match="ASSAY_TRAINING_IMAGE"):
        TrainingPodSettings.from_env({})
    with pytest.raises(TrainingPodConfigError, match="ASSAY_TRAINING_IMAGE"):
        TrainingPodSettings.from_env({"ASSAY_TRAINING_IMAGE": "  "})


@pytest.mark.parametrize("image", ["assay-trainer-gpu", "reg:5000/assay-trainer-gpu:latest"])
def test_settings_refuse_an_unpinned_image(image):
    with pytest.raises(TrainingPodConfigError, match="not pinned"):
        TrainingPodSettings.from_env({"ASSAY_TRAINING_IMAGE": image})
    TrainingPodSettings(image="reg:5000/assay-trainer-gpu@sha256:" + "a" * 64)  # a digest pins


def test_settings_from_env_overrides():
    settings = TrainingPodSettings.from_env(
        {
            "ASSAY_TRAINING_IMAGE": IMAGE,
            "ASSAY_K8S_NAMESPACE": "ml",
            "ASSAY_TRAINING_GPUS": "2",
            "ASSAY_TRAINING_CPU_REQUEST": "3500m",
            "ASSAY_TRAINING_CPU_LIMIT": "4",
            "ASSAY_TRAINING_MEMORY_REQUEST": "12Gi",
            "ASSAY_TRAINING_MEMORY_LIMIT": "14Gi",
            "ASSAY_TRAINING_NODE_SELECTOR": (
                "cloud.google.com/gke-accelerator=nvidia-l4, assay.dev/pool=gpu"
            ),
            "ASSAY_TRAINING_TIMEOUT_SECONDS": "7200",
        }
    )
    assert settings.namespace == "ml" and settings.gpu_count == 2
    spec = training_pod_spec(settings)
    assert spec["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "assay.dev/pool": "gpu",
    }
    assert spec["containers"][0]["resources"]["requests"]["cpu"] == "3500m"
    assert spec["activeDeadlineSeconds"] == 7200
    assert settings.pod_wait_timeout_seconds > 7200  # waiting also covers scheduling
    defaults = TrainingPodSettings.from_env({"ASSAY_TRAINING_IMAGE": IMAGE})
    assert defaults == TrainingPodSettings(image=IMAGE)


@pytest.mark.parametrize(
    "variable,value,match",
    [
        ("ASSAY_TRAINING_MEMORY_LIMIT", "32 gigs", "ASSAY_TRAINING_MEMORY_LIMIT"),
        ("ASSAY_TRAINING_GPUS", "one", "ASSAY_TRAINING_GPUS"),
        ("ASSAY_TRAINING_GPUS", "0", "ASSAY_TRAINING_GPUS"),
        ("ASSAY_TRAINING_CPU_REQUEST", "16", "cpu_request=16 exceeds cpu_limit=8"),
        ("ASSAY_TRAINING_NODE_SELECTOR", "gpu", "ASSAY_TRAINING_NODE_SELECTOR"),
        ("ASSAY_TRAINING_NODE_SELECTOR", "pool=a b", "not a valid label value"),
    ],
)
def test_settings_from_env_name_the_bad_variable(variable, value, match):
    with pytest.raises(TrainingPodConfigError, match=match):
        TrainingPodSettings.from_env({"ASSAY_TRAINING_IMAGE": IMAGE, variable: value})


def test_the_client_uses_in_cluster_config_unless_given_a_kubeconfig(settings, tmp_path):
    in_cluster = kubernetes_trainer_client(settings)
    assert isinstance(in_cluster, PipesK8sClient)
    assert in_cluster.load_incluster_config is True and in_cluster.kubeconfig_file is None
    outside = kubernetes_trainer_client(settings, kubeconfig_file=str(tmp_path / "kubeconfig"))
    assert outside.load_incluster_config is False
    assert outside.kubeconfig_file == str(tmp_path / "kubeconfig")


class _NeverCalled:
    def run(self, **kwargs):
        raise AssertionError("must not launch")


_CONTEXT = SimpleNamespace(run=SimpleNamespace(run_id=RUN_ID))


def test_run_refuses_env_that_would_shadow_a_secret_or_the_spec(settings):
    for name in ("AWS_SECRET_ACCESS_KEY", "ASSAY_HOME", DAGSTER_PIPES_CONTEXT_ENV_VAR):
        with pytest.raises(TrainingPodConfigError, match=name):
            run_kubernetes_training(
                _NeverCalled(), settings, _CONTEXT, env={name: "x"}, use_case="f", family="g"
            )


def test_run_refuses_extras_holding_a_credential_the_secret_provides(settings, monkeypatch):
    # The Pipes context is a literal env var of the pod: a credential put in extras would be in
    # the pod spec for anyone who may read pods. The run pod has the real values (envSecrets),
    # so a copy of one is recognised, and the error names where it is but not what it is.
    uri = "https://mlflow.internal.example:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    extras = {"use_case": "flights", "family": "lightgbm", "tracking_uri": uri}
    with pytest.raises(TrainingPodConfigError, match=r"extras\['tracking_uri'\].*MLFLOW") as error:
        run_kubernetes_training(_NeverCalled(), settings, _CONTEXT, TRAINING_COMMAND, extras)
    assert uri not in str(error.value)


@pytest.mark.parametrize(
    "value",
    ["https://bob:hunter2@mlflow.example.com", "AKIA" + "ABCDEFGHIJKLMNOP"],
)
def test_run_refuses_anything_that_looks_like_a_credential(settings, monkeypatch, value):
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    extras = {"use_case": "flights", "family": "lightgbm", "nested": {"list": [value]}}
    with pytest.raises(TrainingPodConfigError, match=r"extras\['nested'\]\['list'\]\[0\]"):
        run_kubernetes_training(_NeverCalled(), settings, _CONTEXT, TRAINING_COMMAND, extras)
    with pytest.raises(TrainingPodConfigError, match=r"env\['X'\]"):
        run_kubernetes_training(
            _NeverCalled(), settings, _CONTEXT, TRAINING_COMMAND, {}, {"X": value},
            use_case="flights", family="lightgbm",
        )  # fmt: skip


def test_run_needs_the_use_case_and_family_for_its_labels(settings):
    with pytest.raises(TrainingPodConfigError, match="use_case and family"):
        run_kubernetes_training(
            _NeverCalled(), settings, _CONTEXT, TRAINING_COMMAND, {"family": "lightgbm"}
        )


# ------------------------------------------------------- the client, driven through the API


class CoreV1Calls:
    """The CoreV1Api calls dagster-k8s makes, as (method, namespace, the other arguments by name):
    what the trainer Role's rules and these tests speak of. Each is passed on to the real client,
    whose transport is the fake API server."""

    def __init__(self, server: FakeApiServer):
        self.server = server
        self.calls: list[tuple[str, str, dict]] = []

    def core_v1_api(self, api_client=None):
        """Stands in for `kubernetes.client.CoreV1Api(api_client=...)`, made anew for each run."""
        return _Recorded(CoreV1Api(self.server.connect(api_client)), self.calls)

    def called(self, method: str) -> list[tuple[str, dict]]:
        return [(ns, kw) for name, ns, kw in self.calls if name == method]


class _Recorded:
    def __init__(self, api: CoreV1Api, calls: list):
        self._api, self._calls = api, calls

    def __getattr__(self, name):
        method = getattr(self._api, name)
        if not callable(method):
            return method

        def recorded(*args, **kwargs):
            arguments = inspect.signature(method).bind(*args, **kwargs).arguments
            extra = arguments.pop("kwargs", {})
            self._calls.append((name, arguments.pop("namespace", None), {**arguments, **extra}))
            return method(*args, **kwargs)

        return recorded


# The RBAC rule each CoreV1Api method needs.
_CALL_RIGHTS = {
    "create_namespaced_pod": ("pods", "create"),
    "list_namespaced_pod": ("pods", "list"),
    "read_namespaced_pod_log": ("pods/log", "get"),
    "delete_namespaced_pod": ("pods", "delete"),
    "list_namespaced_event": ("events", "list"),
}

# Stands in for `python -m training.train`: a dagster-pipes program that reports back what it was
# given through the Pipes context and its environment.
STAND_IN_TRAINING = """
import os
from dagster_pipes import open_dagster_pipes

with open_dagster_pipes() as pipes:
    pipes.log.info("stand-in training started")
    print("an ordinary log line")
    pipes.report_asset_materialization(
        metadata={
            "family": pipes.get_extra("family"),
            "snapshot": pipes.get_extra("snapshot"),
            "seed": os.environ["ASSAY_TRAINING_SEED"],
            "assay_home": os.environ["ASSAY_HOME"],
            "credentials": ",".join(
                k for k in ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if os.environ.get(k)
            ),
        }
    )
"""

CRASHING_TRAINING = "import sys; print('CUDA error: out of memory', file=sys.stderr); sys.exit(3)"


@pytest.fixture
def fake_cluster(tmp_path, monkeypatch):
    """A kubeconfig for a cluster that is never dialled, and the fake API server behind the
    `kubernetes.client.CoreV1Api` that dagster-k8s instantiates in production_client()."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )

    def run_here(command: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
        """The container runtime: the command as a local process, with the image's PATH, the
        environment the kubelet built and this environment's python for the image's."""
        if command[0] == "python":
            command = [sys.executable, *command[1:]]
        done = subprocess.run(command, env={"PATH": "/usr/bin:/bin", **env}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        return done.returncode, (done.stdout + done.stderr).splitlines()

    server = FakeApiServer(run_container=run_here)
    # The Secret holds the keys the README tells the operator to create, nothing else.
    server.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "assay-runtime", "namespace": "assay"},
                "stringData": {k: f"fake-{k.lower()}" for k in _readme_runtime_secret_keys()}})  # fmt: skip
    calls = CoreV1Calls(server)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", calls.core_v1_api)
    saved = kubernetes.client.Configuration.get_default_copy()
    yield SimpleNamespace(api=calls, kubeconfig=str(kubeconfig))
    kubernetes.client.Configuration.set_default(saved)


def _materialize_training(fake_cluster, settings, command):
    client = kubernetes_trainer_client(settings, kubeconfig_file=fake_cluster.kubeconfig)

    @dg.asset(key_prefix=["flights"], name="candidate_lightgbm", pool="gpu")
    def candidate(context):  # (no annotation: this module defers annotations to strings)
        # Called the way resources/training/local.py calls it: positionally, labels from the extras.
        extras = {
            "use_case": "flights",
            "family": "lightgbm",
            "snapshot": "snapshots/flights/abc123.parquet",
        }
        env = {"ASSAY_TRAINING_SEED": "7"}
        return run_kubernetes_training(
            client, settings, context, command, extras, env
        ).get_materialize_result()

    return dg.materialize([candidate], raise_on_error=False)


def test_running_the_client_creates_one_gpu_pod_streams_its_logs_and_cleans_up(
    fake_cluster, settings
):
    command = ["python", "-c", STAND_IN_TRAINING]
    result = _materialize_training(fake_cluster, settings, command)
    assert result.success
    api = fake_cluster.api

    # Exactly one pod, in namespace assay, with our image, command, GPU and Pipes context.
    (created,) = api.called("create_namespaced_pod")
    namespace, kwargs = created
    assert namespace == "assay"
    body = _as_api_dict(kwargs["body"])
    assert kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True) == "1.33"
    (container,) = body["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == command
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert body["spec"]["serviceAccountName"] == "assay-trainer"
    env = {e["name"]: e for e in container["env"]}
    # PipesEnvContextInjector passes the whole context inline, under the loader's "data" key.
    pipes_context = decode_env_var(env[DAGSTER_PIPES_CONTEXT_ENV_VAR]["value"])["data"]
    assert pipes_context["extras"] == {
        "use_case": "flights",
        "family": "lightgbm",
        "snapshot": "snapshots/flights/abc123.parquet",
    }
    assert pipes_context["run_id"] == result.run_id
    assert env["ASSAY_TRAINING_SEED"] == {"name": "ASSAY_TRAINING_SEED", "value": "7"}
    assert body["metadata"]["labels"]["dagster/run-id"] == result.run_id
    pod_name = body["metadata"]["name"]

    # Its logs were followed (that is how Pipes messages come back), then the pod was deleted.
    (logs,) = api.called("read_namespaced_pod_log")
    assert logs == (
        "assay",
        {**logs[1], "name": pod_name, "follow": True, "timestamps": True},
    )
    assert api.called("delete_namespaced_pod") == [("assay", {"name": pod_name})]
    assert all(ns == "assay" for _, ns, _ in api.calls)

    # What the training process reported arrived as the asset's materialization.
    (event,) = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["family"] == "lightgbm"
    assert metadata["snapshot"] == "snapshots/flights/abc123.parquet"
    assert metadata["seed"] == "7"
    assert metadata["assay_home"] == "/var/lib/assay"
    assert metadata["credentials"] == ",".join(SECRET_ENV)  # resolved from the Secret


def test_a_failed_training_fails_the_step_with_its_log_tail_and_still_deletes_the_pod(
    fake_cluster, settings
):
    result = _materialize_training(fake_cluster, settings, ["python", "-c", CRASHING_TRAINING])
    assert not result.success
    api = fake_cluster.api
    (created,) = api.called("create_namespaced_pod")
    pod_name = created[1]["body"].metadata.name
    assert api.called("delete_namespaced_pod") == [("assay", {"name": pod_name})]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "CUDA error: out of memory" in str(failure.event_specific_data.error)


def test_every_call_the_client_made_is_granted_to_the_run_pods(fake_cluster, settings):
    _materialize_training(fake_cluster, settings, ["python", "-c", STAND_IN_TRAINING])
    _materialize_training(fake_cluster, settings, ["python", "-c", CRASHING_TRAINING])
    granted = grants(documents_by_kind(RBAC)["Role"])
    made = {name for name, _, _ in fake_cluster.api.calls}
    assert {"create_namespaced_pod", "read_namespaced_pod_log", "delete_namespaced_pod"} <= made
    for name in made:
        resource, verb = _CALL_RIGHTS[name]
        assert verb in granted[("", resource)], name
