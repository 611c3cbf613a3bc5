"""The deployer on Kubernetes, checked up to the API boundary and the inference boundary.

No cluster runs here. `SeldonDeployer` is driven through the real kubernetes client with only its
HTTP transport replaced by tests/fake_kubernetes.py's API server, which keeps what is applied,
answers reads and label-selected lists with the status a test chooses for Seldon to report, and
deletes. Every request is recorded, so the tests assert the exact calls (server-side apply PATCHes,
status GETs, lists, DELETEs), that every body validates strictly against Seldon's CRDs, and that
each call is granted to `assay-deployer` (platform/k8s/deployer-rbac.yaml). A loopback HTTP server
stands in for the Seldon mesh / ingress and records the path and headers of each inference request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import kubernetes
import pytest

from resources.deployment import seldon
from resources.deployment.deployer import Deployer
from resources.deployment.seldon import SeldonError, release_problems, validate_against_crd
from resources.deployment.seldon.deployer import (
    ENVIRONMENT_LABEL,
    SeldonDeployer,
    SeldonDeployError,
    SeldonNotReady,
    readiness,
    release_name,
)
from resources.deployment.deployer import Served
from training.artifacts import check_model_folder, model_sha256
from fake_kubernetes import FakeApiServer, documents_by_kind, grants

SHA = {"3": "3" * 64, "4": "4" * 64}
SOURCE = {"3": "s3://assay-mlflow/1/models/m-3/artifacts", "4": "s3://assay-mlflow/1/models/m-4/artifacts"}
CORE2 = "/apis/mlops.seldon.io/v1alpha1/namespaces/assay"
V1 = "/apis/machinelearning.seldon.io/v1/namespaces/assay"
RBAC = Path(__file__).resolve().parents[1] / "platform" / "k8s" / "deployer-rbac.yaml"
APPLY_QUERY = {"fieldManager": "assay", "force": "True", "fieldValidation": "Strict"}


def selector(environment: str = "staging") -> dict:
    return {"labelSelector": "app.kubernetes.io/managed-by=assay,assay.dev/use-case=flights,"
                             f"assay.dev/environment={environment}"}  # fmt: skip


# ------------------------------------------------------------------------------ the fakes


def ready_status(obj: dict, reads: int) -> dict:
    """What Seldon reports once a resource is up (the default)."""
    status = {"conditions": [{"type": "Ready", "status": "True"}],
              "observedGeneration": obj["metadata"]["generation"]}  # fmt: skip
    if obj["kind"] == "SeldonDeployment":
        status["state"] = "Available"
    return status


class FakeRegistry:
    """What the deployer asks of resources/registry.py's ModelRegistry: client().get_model_version
    (the MLflow ModelVersion's `source`), client().get_model_version_download_uri, version().tags,
    and download_verified (checks `folders[version]`, a real model folder, when one is given)."""

    def __init__(self, sources=None, downloads=None, shas=None, folders=None):
        self.sources = SOURCE if sources is None else sources
        self.downloads = {} if downloads is None else downloads
        self.shas = SHA if shas is None else shas
        self.folders = folders or {}
        self.asked: list[tuple] = []

    def download_verified(self, name, version, destination):
        self.asked.append(("download_verified", name, version))
        if version in self.folders:
            check_model_folder(self.folders[version], self.shas.get(version), f"models:/{name}/{version}")

    def client(self):
        return self

    def get_model_version(self, name, version):
        self.asked.append(("get_model_version", name, version))
        return SimpleNamespace(name=name, version=version, source=self.sources[version], tags={})

    def get_model_version_download_uri(self, name, version):
        self.asked.append(("get_model_version_download_uri", name, version))
        return self.downloads[version]

    def version(self, name, version):
        tags = {"assay.model_sha256": self.shas[version]} if version in self.shas else {}
        return SimpleNamespace(name=name, version=version, tags=tags)


class Mesh:
    """A loopback HTTP server standing in for the Seldon mesh (Core 2) or ingress (v1): records
    each request (path, headers, body); `answer(request)` returns (status, headers, body)."""

    def __init__(self):
        self.requests: list[SimpleNamespace] = []
        self.answer = lambda request: (200, {}, {"model_name": "m", "outputs": [
            {"name": "predict", "shape": [1], "datatype": "FP64", "data": [0.25]}]})  # fmt: skip
        mesh = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                request = SimpleNamespace(path=self.path, headers={k.lower(): v for k, v in self.headers.items()},
                                          body=json.loads(self.rfile.read(length) or b"null"))  # fmt: skip
                mesh.requests.append(request)
                status, headers, body = mesh.answer(request)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cluster():
    return FakeApiServer(status=ready_status)


@pytest.fixture
def api_client(cluster):
    return cluster.connect()


@pytest.fixture
def mesh():
    server = Mesh()
    yield server
    server.close()


@pytest.fixture
def registry():
    return FakeRegistry()


def make(api_client, flavour="core2", url="http://seldon-mesh.assay", **settings) -> SeldonDeployer:
    settings = {"poll_interval_seconds": 0.01, "ready_timeout_seconds": 5, **settings}
    return SeldonDeployer(flavour=flavour, inference_url=url, **settings).with_api_client(api_client)


@pytest.fixture
def core2(api_client, mesh):
    return make(api_client, "core2", mesh.url)


@pytest.fixture
def v1(api_client, mesh):
    return make(api_client, "v1", mesh.url)


def model_path(name: str) -> str:
    return f"{CORE2}/models/{name}"


def check_applied(sent, kind_path: str) -> dict:
    """A server-side apply of one resource whose body passes the strict CRD schema and admission."""
    assert (sent.method, sent.path) == ("PATCH", kind_path)
    assert sent.query == APPLY_QUERY
    assert sent.headers["Content-Type"] == "application/apply-patch+yaml"
    validate_against_crd(sent.body)
    assert seldon.admission_errors(sent.body) == []
    return sent.body


# ------------------------------------------------------------------------------ settings


def test_from_environment_reads_every_setting_from_its_variable():
    deployer = SeldonDeployer.from_environment({
        "ASSAY_SELDON_NAMESPACE": "models", "ASSAY_SELDON_FLAVOUR": "V1",
        "ASSAY_SELDON_INFERENCE_URL": "http://istio-ingressgateway.istio-system/",
        "ASSAY_SELDON_SERVER": "mlserver-gpu", "ASSAY_SELDON_STORAGE_SECRET": "assay-model-storage",
        "ASSAY_SELDON_READY_TIMEOUT": "120",
    })  # fmt: skip
    assert isinstance(deployer, Deployer)
    assert (deployer.namespace, deployer.flavour, deployer.inference_url) == (
        "models", "v1", "http://istio-ingressgateway.istio-system")
    assert (deployer.server, deployer.storage_secret, deployer.ready_timeout_seconds) == (
        "mlserver-gpu", "assay-model-storage", 120.0)


def test_from_environment_defaults_to_core2_through_the_namespaces_mesh():
    deployer = SeldonDeployer.from_environment({"ASSAY_SELDON_NAMESPACE": "ml"})
    assert (deployer.flavour, deployer.inference_url, deployer.server, deployer.storage_secret) == (
        "core2", "http://seldon-mesh.ml", "mlserver", None)
    assert deployer._api_client is None  # no client is made until the cluster is called


@pytest.mark.parametrize(
    "variables, variable, reason",
    [
        ({"ASSAY_SELDON_FLAVOUR": "core3"}, "ASSAY_SELDON_FLAVOUR", "not one of"),
        ({"ASSAY_SELDON_NAMESPACE": "Assay_Models"}, "ASSAY_SELDON_NAMESPACE", "DNS-1123"),
        ({"ASSAY_SELDON_INFERENCE_URL": "seldon-mesh:80"}, "ASSAY_SELDON_INFERENCE_URL", "http"),
        ({"ASSAY_SELDON_SERVER": "ML server"}, "ASSAY_SELDON_SERVER", "Server name"),
        ({"ASSAY_SELDON_STORAGE_SECRET": "s3/creds"}, "ASSAY_SELDON_STORAGE_SECRET", "Secret name"),
        ({"ASSAY_SELDON_READY_TIMEOUT": "soon"}, "ASSAY_SELDON_READY_TIMEOUT", "seconds"),
        ({"ASSAY_SELDON_READY_TIMEOUT": "-5"}, "ASSAY_SELDON_READY_TIMEOUT", "positive"),
        ({"ASSAY_SELDON_FLAVOUR": "v1"}, "ASSAY_SELDON_INFERENCE_URL", "required"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("ASSAY") else None,
)
def test_a_bad_setting_is_refused_naming_its_variable(variables, variable, reason):
    with pytest.raises(SeldonDeployError, match=f"{variable}.*{reason}"):
        SeldonDeployer.from_environment(variables)


def test_a_deployer_configured_badly_in_code_calls_nothing(api_client, cluster, registry):
    deployer = make(api_client, flavour="core3")
    with pytest.raises(SeldonDeployError, match="flavour: 'core3' is not one of"):
        deployer.deploy(registry, "flights", "staging", "3")
    assert cluster.requests == [] and registry.asked == []


def test_the_api_client_is_made_at_first_use_from_in_cluster_config_else_kube_config(monkeypatch):
    tried = []

    def in_cluster(client_configuration=None, **_):
        tried.append("in-cluster")
        raise kubernetes.config.ConfigException("not in a pod")

    def kube_config(client_configuration=None, **_):
        tried.append("kube-config")
        client_configuration.host = "https://dev-cluster:6443"

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", in_cluster)
    monkeypatch.setattr(kubernetes.config, "load_kube_config", kube_config)
    deployer = SeldonDeployer()
    assert tried == []
    client = deployer.api_client()
    assert tried == ["in-cluster", "kube-config"]
    assert client.configuration.host == "https://dev-cluster:6443"
    assert deployer.api_client() is client and len(tried) == 2


def test_the_deployer_is_a_dagster_resource_with_its_settings_as_config():
    fields = SeldonDeployer.to_config_schema().as_field().config_type.fields
    assert {"namespace", "flavour", "inference_url", "server", "storage_secret",
            "ready_timeout_seconds"} <= set(fields)  # fmt: skip
    assert "_api_client" not in fields and "api_client" not in fields
    dg.Definitions(resources={"deployer": SeldonDeployer()})


# ------------------------------------------------------------------------------ environments


def test_each_environment_is_released_under_its_own_names_and_labels_in_one_namespace(core2):
    staging, production = (core2.render(core2.plan("flights", env, seldon.ModelRef("3", SOURCE["3"], SHA["3"])),
                                        "flights", env)[0] for env in ("staging", "production"))  # fmt: skip
    assert staging["metadata"]["name"] == "flights-staging-v3"
    assert production["metadata"]["name"] == "flights-production-v3"
    assert staging["metadata"]["namespace"] == production["metadata"]["namespace"] == "assay"
    for model, env in ((staging, "staging"), (production, "production")):
        labels = model["metadata"]["labels"]
        assert labels[seldon.USE_CASE_LABEL] == "flights" and labels[ENVIRONMENT_LABEL] == env
        validate_against_crd(model)
    assert release_name("flight_delays", "staging") == "flight-delays-staging"


@pytest.mark.parametrize(
    "use_case, environment, reason",
    [("flights", "Staging", "environment 'Staging' must be a DNS-1123 label"),
     ("flights", "pre_prod", "must be a DNS-1123 label"),
     ("f" * 55, "production", "not a DNS-1123 label of at most 63")],
)  # fmt: skip
def test_an_environment_that_cannot_name_seldon_resources_is_refused(use_case, environment, reason):
    with pytest.raises(SeldonDeployError, match=reason):
        release_name(use_case, environment)


def test_a_version_name_too_long_for_a_dns_label_is_refused_before_any_call(core2, cluster):
    registry = FakeRegistry(sources={"3": SOURCE["3"]})
    with pytest.raises(SeldonError, match="DNS-1123"):
        core2.deploy(registry, "f" * 50, "production", "3")  # f...-production-v3: 64 characters
    assert cluster.requests == []


# ------------------------------------------------------------------------------ the registry


def test_the_storage_uri_is_the_registered_versions_source_when_seldon_can_fetch_it(core2, registry):
    ref = core2.model_ref(registry, "flights", "3")
    assert (ref.version, ref.storage_uri, ref.sha256) == ("3", SOURCE["3"], SHA["3"])
    assert registry.asked == [("get_model_version", "flights", "3"), ("download_verified", "flights", "3")]


def test_an_mlflow_logged_model_source_is_resolved_to_where_its_artifacts_lie(core2):
    artifacts = "gs://assay-mlflow/1/models/m-0f3c/artifacts"
    registry = FakeRegistry(sources={"3": "models:/m-0f3c"}, downloads={"3": artifacts})
    assert core2.model_ref(registry, "flights", "3").storage_uri == artifacts


@pytest.mark.parametrize("download", ["mlflow-artifacts:/1/models/m-0f3c/artifacts",
                                      "/var/mlflow/1/models/m-0f3c/artifacts", "file:///mlruns/1/m"])  # fmt: skip
def test_an_artifact_seldon_cannot_fetch_is_refused_before_any_call(core2, cluster, download):
    registry = FakeRegistry(sources={"3": "models:/m-0f3c"}, downloads={"3": download})
    with pytest.raises(SeldonDeployError, match="flights v3: the registry stores it at .*Seldon cannot fetch"):
        core2.deploy(registry, "flights", "staging", "3")
    assert cluster.requests == []


def test_a_version_without_its_recorded_sha256_is_refused(core2, cluster):
    with pytest.raises(SeldonDeployError, match="no assay.model_sha256 tag"):
        core2.deploy(FakeRegistry(shas={}), "flights", "staging", "3")
    assert cluster.requests == []


def test_a_stored_model_whose_code_changed_by_one_byte_is_refused_before_any_call(core2, cluster, tmp_path):
    """The deployer hashes the stored model folder (as the registry downloads it) before it renders:
    Seldon's stock MLflow runtime would load whatever it fetches."""
    folder = tmp_path / "model"
    (folder / "code" / "training").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "python_model.pkl").write_bytes(b"\x80\x04N.")
    (folder / "code" / "training" / "pyfunc.py").write_text("def predict(): ...\n")
    registry = FakeRegistry(shas={"3": model_sha256(folder)}, folders={"3": folder})
    assert core2.model_ref(registry, "flights", "3").sha256 == model_sha256(folder)
    (folder / "code" / "training" / "pyfunc.py").write_text("def predict(): ... \n")
    with pytest.raises(SeldonDeployError, match="flights/3: the model's files hash to .*nothing was applied"):
        core2.deploy(registry, "flights", "staging", "3")
    assert cluster.requests == []


def test_the_rendered_resources_carry_the_expected_hash_as_a_load_parameter(core2, v1, registry):
    """The hash the runtime checks before unpickling travels in the model's own load parameters,
    valid for each flavour's CRD."""
    ref = core2.model_ref(registry, "flights", "3")
    (model,) = core2.render(core2.plan("flights", "staging", ref), "flights", "staging")
    assert model["spec"]["parameters"] == [{"name": "assay_model_sha256", "value": SHA["3"]}]
    (deployment,) = v1.render(v1.plan("flights", "staging", ref), "flights", "staging")
    graph = deployment["spec"]["predictors"][0]["graph"]
    assert graph["parameters"] == [{"name": "assay_model_sha256", "type": "STRING", "value": SHA["3"]}]
    assert release_problems([model]) == [] and release_problems([deployment]) == []


# ------------------------------------------------------------------------------ Core 2 releases


def test_a_core2_deploy_applies_the_versions_model_waits_until_ready_and_checks_for_leftovers(core2, cluster, registry):
    endpoint = core2.deploy(registry, "flights", "staging", "3")

    patch, get, list_models, list_experiments = cluster.requests
    model = check_applied(patch, model_path("flights-staging-v3"))
    assert model["spec"] == {"storageUri": SOURCE["3"], "requirements": ["mlflow"], "memory": "2Gi",
                             "replicas": 1, "server": "mlserver",
                             "parameters": [{"name": "assay_model_sha256", "value": SHA["3"]}]}  # fmt: skip
    assert model["metadata"]["annotations"][seldon.SHA256_ANNOTATION] == SHA["3"]
    assert model["metadata"]["labels"] == {
        "app.kubernetes.io/part-of": "assay", "app.kubernetes.io/managed-by": "assay",
        "assay.dev/use-case": "flights", "assay.dev/environment": "staging",
        "assay.dev/model-version": "3", "assay.dev/role": "champion",
    }  # fmt: skip
    assert (get.method, get.path) == ("GET", model_path("flights-staging-v3"))
    assert (list_models.method, list_models.path, list_models.query) == ("GET", f"{CORE2}/models", selector())
    assert (list_experiments.path, list_experiments.query) == (f"{CORE2}/experiments", selector())
    assert endpoint.url == core2.inference_url and endpoint.models == {"3": "flights-staging-v3"}


def test_the_storage_secret_is_named_on_each_model_when_configured(api_client, cluster, registry):
    make(api_client, storage_secret="assay-model-storage").deploy(registry, "flights", "staging", "3")
    assert cluster.requests[0].body["spec"]["secretName"] == "assay-model-storage"


def test_a_deploy_polls_each_model_until_seldon_reports_it_ready(core2, cluster, registry):
    def slow(obj, reads):
        if reads < 3:
            return {"conditions": [{"type": "ModelReady", "status": "False", "reason": "ModelProgressing"},
                                   {"type": "Ready", "status": "False"}]}  # fmt: skip
        return ready_status(obj, reads)

    cluster.status = slow
    core2.deploy(registry, "flights", "staging", "3")
    assert cluster.calls()[:4] == [("PATCH", model_path("flights-staging-v3"))] + [
        ("GET", model_path("flights-staging-v3"))] * 3


def test_a_core2_canary_stage_applies_both_models_then_the_experiment_and_waits_for_all(core2, cluster, registry):
    core2.deploy(registry, "flights", "staging", "3")
    start = len(cluster.requests)
    endpoint = core2.stage(registry, "flights", "staging", "3", "4", "canary", 10)

    sent = cluster.requests[start:]
    champion = check_applied(sent[0], model_path("flights-staging-v3"))
    candidate = check_applied(sent[1], model_path("flights-staging-v4"))
    experiment = check_applied(sent[2], f"{CORE2}/experiments/flights-staging")
    assert release_problems([champion, candidate, experiment]) == []
    assert champion["metadata"]["labels"]["assay.dev/role"] == "champion"
    assert candidate["metadata"]["labels"]["assay.dev/role"] == "candidate"
    assert candidate["spec"]["storageUri"] == SOURCE["4"]
    assert experiment["spec"] == {
        "default": "flights-staging-v3", "resourceType": "model",
        "candidates": [{"name": "flights-staging-v3", "weight": 90}, {"name": "flights-staging-v4", "weight": 10}],
    }  # fmt: skip
    assert experiment["metadata"]["labels"][ENVIRONMENT_LABEL] == "staging"
    assert [(r.method, r.path) for r in sent[3:6]] == [
        ("GET", model_path("flights-staging-v3")), ("GET", model_path("flights-staging-v4")),
        ("GET", f"{CORE2}/experiments/flights-staging")]  # fmt: skip
    assert not any(r.method == "DELETE" for r in sent)
    assert endpoint.experiment == "flights-staging"


def test_a_core2_shadow_stage_mirrors_every_request_to_the_candidate(core2, cluster, registry):
    core2.stage(registry, "flights", "staging", "3", "4", "shadow", 10)
    experiment = cluster.objects[f"{CORE2}/experiments/flights-staging"]
    assert experiment["spec"] == {"default": "flights-staging-v3", "resourceType": "model",
                                  "candidates": [{"name": "flights-staging-v3", "weight": 100}],
                                  "mirror": {"name": "flights-staging-v4", "percent": 100}}  # fmt: skip


def test_a_step_that_is_neither_shadow_nor_canary_is_refused(core2, cluster, registry):
    with pytest.raises(SeldonDeployError, match="step must be one of"):
        core2.stage(registry, "flights", "staging", "3", "4", "blue-green", 10)
    assert cluster.requests == []


def test_a_full_promotion_deletes_the_experiment_then_the_former_champion_once_ready(core2, cluster, registry):
    core2.deploy(registry, "flights", "production", "3")  # the other environment: never touched
    core2.stage(registry, "flights", "staging", "3", "4", "canary", 10)
    start = len(cluster.requests)

    core2.deploy(registry, "flights", "staging", "4")

    sent = cluster.requests[start:]
    promoted = check_applied(sent[0], model_path("flights-staging-v4"))
    assert promoted["metadata"]["labels"]["assay.dev/role"] == "champion"
    assert [(r.method, r.path) for r in sent[1:]] == [
        ("GET", model_path("flights-staging-v4")),
        ("GET", f"{CORE2}/models"), ("GET", f"{CORE2}/experiments"),
        ("DELETE", f"{CORE2}/experiments/flights-staging"),
        ("DELETE", model_path("flights-staging-v3")),
    ]
    assert sent[2].query == sent[3].query == selector("staging")
    assert cluster.names() == {"flights-staging-v4", "flights-production-v3"}


def test_a_rollback_during_a_canary_deletes_the_experiment_and_the_failed_candidate(core2, cluster, registry):
    core2.stage(registry, "flights", "staging", "3", "4", "canary", 10)
    start = len(cluster.requests)
    core2.deploy(registry, "flights", "staging", "3")
    assert [c for c in cluster.calls(start) if c[0] == "DELETE"] == [
        ("DELETE", f"{CORE2}/experiments/flights-staging"), ("DELETE", model_path("flights-staging-v4"))]
    assert cluster.names() == {"flights-staging-v3"}


def test_a_model_that_never_becomes_ready_fails_naming_it_and_deletes_nothing(api_client, cluster, registry):
    deployer = make(api_client, ready_timeout_seconds=0.2)
    deployer.deploy(registry, "flights", "staging", "3")

    def v4_unschedulable(obj, reads):
        if obj["metadata"]["name"] == "flights-staging-v4":
            return {"conditions": [{"type": "ModelReady", "status": "False", "reason": "ScheduleFailed",
                                    "message": "no server mlserver with 2Gi free"},
                                   {"type": "Ready", "status": "False"}]}  # fmt: skip
        return ready_status(obj, reads)

    cluster.status = v4_unschedulable
    start = len(cluster.requests)
    with pytest.raises(SeldonNotReady) as raised:
        deployer.deploy(registry, "flights", "staging", "4")
    message = str(raised.value)
    assert "not Ready after 0.2s in namespace assay: Model/flights-staging-v4: " in message
    assert "ModelReady=False (ScheduleFailed; no server mlserver with 2Gi free)" in message
    assert "nothing of the previous release was deleted" in message
    calls = cluster.calls(start)
    assert calls[0] == ("PATCH", model_path("flights-staging-v4"))
    assert set(calls[1:]) == {("GET", model_path("flights-staging-v4"))} and len(calls) > 3
    assert cluster.names() == {"flights-staging-v3", "flights-staging-v4"}


def test_a_ready_status_of_an_older_generation_is_waited_past(api_client, cluster, registry):
    make(api_client).deploy(registry, "flights", "staging", "3")
    changed = make(api_client, storage_secret="assay-model-storage")  # a new spec: generation 2

    def lagging(obj, reads):  # Seldon still reports on generation 1 for two more reads
        return {**ready_status(obj, reads), "observedGeneration": 1 if reads < 4 else 2}

    cluster.status = lagging
    start = len(cluster.requests)
    changed.deploy(registry, "flights", "staging", "3")
    assert cluster.objects[model_path("flights-staging-v3")]["metadata"]["generation"] == 2
    assert cluster.calls(start)[:4] == [("PATCH", model_path("flights-staging-v3"))] + [
        ("GET", model_path("flights-staging-v3"))] * 3
    stale = {"kind": "Model", "metadata": {"generation": 2},
             "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
    assert readiness(stale) == (False, "status is of generation 1, the spec is generation 2")


@pytest.mark.parametrize(
    "obj, ready",
    [
        ({"kind": "Model", "status": {"conditions": [{"type": "Ready", "status": "True"}]}}, True),
        ({"kind": "Model", "status": {"conditions": [{"type": "ModelReady", "status": "True"}]}}, False),
        ({"kind": "Model", "status": {}}, False),
        ({"kind": "Experiment", "status": {"conditions": [{"type": "Ready", "status": "False"}]}}, False),
        ({"kind": "SeldonDeployment", "status": {"state": "Available"}}, True),
        ({"kind": "SeldonDeployment", "status": {"state": "Creating"}}, False),
        ({"kind": "SeldonDeployment", "status": {"state": "Available",
                                                 "conditions": [{"type": "Ready", "status": "False"}]}}, False),
    ],
    ids=["model ready", "model loaded but not routed", "no status", "experiment not ready",
         "v1 available", "v1 creating", "v1 available but not ready"],
)  # fmt: skip
def test_readiness_is_seldons_ready_condition_or_v1s_available_state(obj, ready):
    assert readiness({"metadata": {}, **obj})[0] is ready


# ------------------------------------------------------------------------------ incumbent


def test_the_incumbent_is_none_when_nothing_is_deployed(core2, v1, cluster):
    assert core2.incumbent("flights", "staging") is None
    assert cluster.calls() == [("GET", f"{CORE2}/models"), ("GET", f"{CORE2}/experiments")]
    assert v1.incumbent("flights", "staging") is None
    assert cluster.calls(2) == [("GET", f"{V1}/seldondeployments/flights-staging")]


def test_the_core2_incumbent_is_read_back_from_the_cluster_for_its_environment_only(core2, registry):
    core2.deploy(registry, "flights", "production", "4")
    core2.deploy(registry, "flights", "staging", "3")
    assert core2.incumbent("flights", "staging") == "3"
    core2.stage(registry, "flights", "staging", "3", "4", "canary", 10)
    assert core2.incumbent("flights", "staging") == "3"  # the Experiment's default answers
    core2.deploy(registry, "flights", "staging", "4")
    assert core2.incumbent("flights", "staging") == "4"
    assert core2.incumbent("flights", "production") == "4"
    assert core2.incumbent("weather", "staging") is None


def test_after_an_interrupted_release_the_incumbent_is_the_champion_that_is_ready(api_client, cluster, registry):
    deployer = make(api_client, ready_timeout_seconds=0.1)
    deployer.deploy(registry, "flights", "staging", "3")
    cluster.status = lambda obj, reads: None if obj["metadata"]["name"].endswith("v4") else ready_status(obj, reads)
    with pytest.raises(SeldonNotReady):
        deployer.deploy(registry, "flights", "staging", "4")  # v4 applied as champion, never ready
    assert deployer.incumbent("flights", "staging") == "3"
    cluster.status = ready_status  # both ready: the one applied last
    assert deployer.incumbent("flights", "staging") == "4"


def test_the_v1_incumbent_is_the_champion_predictor_of_the_seldondeployment(v1, registry):
    v1.deploy(registry, "flights", "staging", "3")
    assert v1.incumbent("flights", "staging") == "3"
    v1.stage(registry, "flights", "staging", "3", "4", "shadow", 10)
    assert v1.incumbent("flights", "staging") == "3"
    v1.deploy(registry, "flights", "staging", "4")
    assert v1.incumbent("flights", "staging") == "4"


# ------------------------------------------------------------------------------ Core v1 releases


def test_a_v1_release_is_one_seldondeployment_applied_and_polled_and_never_deleted(v1, cluster, registry):
    v1.deploy(registry, "flights", "staging", "3")
    v1.stage(registry, "flights", "staging", "3", "4", "canary", 25)
    v1.deploy(registry, "flights", "staging", "4")

    path = f"{V1}/seldondeployments/flights-staging"
    assert cluster.calls() == [("PATCH", path), ("GET", path)] * 3
    full, canary, promoted = (check_applied(r, path) for r in cluster.requests[::2])
    assert full["metadata"]["labels"][ENVIRONMENT_LABEL] == "staging"
    assert [(p["name"], p["traffic"], p["graph"]["modelUri"]) for p in full["spec"]["predictors"]] == [
        ("flights-staging-v3", 100, SOURCE["3"])]
    assert [(p["name"], p["traffic"]) for p in canary["spec"]["predictors"]] == [
        ("flights-staging-v3", 75), ("flights-staging-v4", 25)]
    assert [p["name"] for p in promoted["spec"]["predictors"]] == ["flights-staging-v4"]
    assert {p["graph"]["name"] for p in canary["spec"]["predictors"]} == {"flights-staging"}


def test_a_v1_deployment_that_stays_creating_fails_naming_it(api_client, cluster, registry, mesh):
    deployer = make(api_client, "v1", mesh.url, ready_timeout_seconds=0.1)
    cluster.status = lambda obj, reads: {"state": "Creating", "conditions": [
        {"type": "DeploymentsReady", "status": "False", "reason": "DeploymentsNotReady"}]}  # fmt: skip
    with pytest.raises(SeldonNotReady, match="SeldonDeployment/flights-staging: state 'Creating', not 'Available'; "
                                             "DeploymentsReady=False \\(DeploymentsNotReady\\)"):  # fmt: skip
        deployer.deploy(registry, "flights", "staging", "3")


# ------------------------------------------------------------------------------ inference


V2_REQUEST = {"inputs": [{"name": "dep_delay", "shape": [1, 1], "datatype": "FP64", "data": [[3.0]]}]}


def test_core2_inference_goes_through_the_mesh_with_the_seldon_model_header(core2, registry, mesh):
    endpoint = core2.deploy(registry, "flights", "staging", "3")
    assert endpoint.infer("flights", V2_REQUEST) == (200, mesh.answer(None)[2])
    assert endpoint.infer("flights", V2_REQUEST, version="3")[0] == 200
    for request in mesh.requests:
        assert request.path == "/v2/models/flights-staging-v3/infer"
        assert request.headers["seldon-model"] == "flights-staging-v3"
        assert request.headers["content-type"] == "application/json"
        assert request.body == V2_REQUEST


def test_during_a_core2_stage_the_use_cases_traffic_goes_to_the_experiment_and_a_version_to_its_model(
    core2, registry, mesh
):
    endpoint = core2.stage(registry, "flights", "staging", "3", "4", "shadow", 10)
    endpoint.infer("flights", V2_REQUEST)
    endpoint.infer("flights", V2_REQUEST, version="4")
    assert [(r.path, r.headers["seldon-model"], "x-seldon-route" in r.headers) for r in mesh.requests] == [
        ("/v2/models/flights-staging-v3/infer", "flights-staging.experiment", False),
        ("/v2/models/flights-staging-v4/infer", "flights-staging-v4", False),
    ]


def test_a_request_for_the_champion_during_a_canary_is_pinned_past_the_split(core2, registry, mesh):
    endpoint = core2.stage(registry, "flights", "staging", "3", "4", "canary", 10)
    answered = []

    def split(request):
        # Seldon's Envoy: a sticky route header picks its model; else the Experiment splits the
        # default model's requests (here: the first to the candidate, then to the champion).
        pinned = request.headers.get("x-seldon-route")
        champion = pinned == ":flights-staging-v3_2:" or len(mesh.requests) > 1
        model, version = ("flights-staging-v3", "2") if champion else ("flights-staging-v4", "1")
        answered.append(model)
        output = {"name": "p", "shape": [1], "datatype": "FP64", "data": [0.3 if champion else 0.9]}
        body = {"model_name": f"{model}_{version}", "outputs": [output]}
        return 200, {"x-seldon-route": f":{model}_{version}:"}, body

    mesh.answer = split
    status, body = endpoint.infer("flights", V2_REQUEST, version="3")
    assert (status, body["model_name"]) == (200, "flights-staging-v3_2")  # never the candidate's answer
    assert answered == ["flights-staging-v4", "flights-staging-v3"]
    endpoint.infer("flights", V2_REQUEST, version="3")
    assert [(r.headers["seldon-model"], r.headers.get("x-seldon-route")) for r in mesh.requests] == [
        ("flights-staging-v3", None), ("flights-staging-v3", None),
        ("flights-staging-v3", ":flights-staging-v3_2:"),
    ]


def test_v1_inference_goes_through_the_ingress_path_and_a_version_to_its_predictor_service(v1, cluster, registry, mesh):
    host = mesh.url.removeprefix("http://")
    services = {
        "flights-staging-flights-staging-v3": {"svcName": "flights-staging-flights-staging-v3", "httpEndpoint": host},
        "flights-staging-flights-staging-v4": {"svcName": "flights-staging-flights-staging-v4", "httpEndpoint": host},
    }  # fmt: skip
    cluster.status = lambda obj, reads: {**ready_status(obj, reads), "serviceStatus": services}
    endpoint = v1.stage(registry, "flights", "staging", "3", "4", "canary", 10)
    assert endpoint.url == f"{mesh.url}/seldon/assay/flights-staging"
    endpoint.infer("flights", V2_REQUEST)
    endpoint.infer("flights", V2_REQUEST, version="4")
    assert [r.path for r in mesh.requests] == [
        "/seldon/assay/flights-staging/v2/models/flights-staging/infer",
        "/v2/models/flights-staging/infer",
    ]
    assert "seldon-model" not in mesh.requests[0].headers


def test_a_v1_predictor_service_not_in_status_is_addressed_by_its_service_name(v1, registry):
    endpoint = v1.deploy(registry, "flights", "staging", "3")
    assert endpoint.request("3")[0] == (
        "http://flights-staging-flights-staging-v3.assay:8000/v2/models/flights-staging/infer")


@pytest.mark.parametrize("flavour", ["core2", "v1"])
def test_a_4xx_or_5xx_from_seldon_comes_back_as_status_and_body(flavour, api_client, registry, mesh):
    endpoint = make(api_client, flavour, mesh.url).deploy(registry, "flights", "staging", "3")
    refusal = {"error": "inputs: missing 'dep_delay'"}
    mesh.answer = lambda request: (422, {}, refusal)
    assert endpoint.infer("flights", {"inputs": []}) == (422, refusal)
    mesh.answer = lambda request: (503, {"Content-Type": "text/plain"}, b"upstream connect error")
    assert endpoint.infer("flights", V2_REQUEST) == (503, {"error": "upstream connect error"})


def test_a_version_the_release_does_not_serve_is_answered_404_without_a_request(core2, registry, mesh):
    endpoint = core2.deploy(registry, "flights", "staging", "3")
    status, body = endpoint.infer("flights", V2_REQUEST, version="7")
    assert status == 404 and "v7 is not served in staging" in body["error"]
    assert mesh.requests == []
    with pytest.raises(ValueError, match="serves 'flights', not 'weather'"):
        endpoint.infer("weather", V2_REQUEST)


def test_served_lists_the_versions_whose_model_is_ready(core2, cluster, registry):
    endpoint = core2.stage(registry, "flights", "staging", "3", "4", "canary", 10)
    core2.deploy(registry, "flights", "production", "3")
    url = core2.inference_url
    assert endpoint.served() == [Served("flights", "3", url), Served("flights", "4", url)]
    cluster.status = lambda obj, reads: (None if obj["metadata"]["name"] == "flights-staging-v4"
                                         else ready_status(obj, reads))  # fmt: skip
    assert endpoint.served() == [Served("flights", "3", url)]
    assert cluster.requests[-1].query == selector("staging")


def test_v1_served_lists_every_predictors_version_once_the_deployment_is_available(v1, cluster, registry):
    endpoint = v1.stage(registry, "flights", "staging", "3", "4", "shadow", 10)
    assert endpoint.served() == [Served("flights", "3", endpoint.url), Served("flights", "4", endpoint.url)]
    cluster.status = lambda obj, reads: {"state": "Creating"}
    assert endpoint.served() == []


# ------------------------------------------------------------------------------ RBAC


def test_every_call_the_deployer_makes_is_granted_to_assay_deployer(api_client, cluster, registry, mesh):
    role = documents_by_kind(RBAC)["Role"]
    granted = grants(role)
    for flavour in ("core2", "v1"):
        deployer = make(api_client, flavour, mesh.url)
        deployer.incumbent("flights", "staging")
        deployer.deploy(registry, "flights", "staging", "3")
        deployer.stage(registry, "flights", "staging", "3", "4", "shadow", 10)
        deployer.stage(registry, "flights", "staging", "3", "4", "canary", 10)
        deployer.deploy(registry, "flights", "staging", "4")  # full promotion: deletes on Core 2
        deployer.incumbent("flights", "staging")
        deployer.served("flights", "staging")
    verbs = set()
    for sent in cluster.requests:
        _, group, _, _, namespace, plural, *name = sent.path.strip("/").split("/")
        assert namespace == role["metadata"]["namespace"]
        if sent.method == "PATCH":
            assert sent.headers["Content-Type"] == "application/apply-patch+yaml"
            needed = {"patch", "create"}  # server-side apply, as the API server authorizes it
        elif sent.method == "GET":
            needed = {"get"} if name else {"list"}
        else:
            needed = {sent.method.lower()}
        verbs |= {(plural, verb) for verb in needed}
        assert needed <= granted[(group, plural)], (sent.method, sent.path)
    assert {("models", "delete"), ("experiments", "delete"), ("models", "list"), ("models", "get"),
            ("seldondeployments", "get"), ("seldondeployments", "patch")} <= verbs  # fmt: skip
    assert ("seldondeployments", "delete") not in verbs


def test_withdrawing_a_core2_release_deletes_its_models_and_leaves_the_other_environment(core2, cluster, registry):
    core2.deploy(registry, "flights", "staging", "3")
    core2.deploy(registry, "flights", "production", "3")
    start = len(cluster.requests)
    core2.withdraw(registry, "flights", "staging")
    assert [c for c in cluster.calls(start) if c[0] == "DELETE"] == [("DELETE", model_path("flights-staging-v3"))]
    assert core2.incumbent("flights", "staging") is None
    assert core2.incumbent("flights", "production") == "3"


def test_withdrawing_a_core_v1_release_is_refused_before_any_call(v1, cluster, registry):
    with pytest.raises(SeldonDeployError, match="SeldonDeployment flights-staging .*needs a person"):
        v1.withdraw(registry, "flights", "staging")
    assert cluster.requests == []
