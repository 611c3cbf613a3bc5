"""Releases to Seldon, checked up to the Kubernetes API boundary.

No cluster runs here. Every rendering is validated against Seldon's own CRDs
(platform/seldon/crds) in strict mode, so an unknown field fails as the API server's strict
field validation would fail it, and against the admission rules the CRDs do not encode, each
broken once on purpose. `apply` is then driven through the real kubernetes client down to its
HTTP transport, which is the only thing replaced (by tests/fake_kubernetes.py's API server): what
it would send to the API server (method, path, query, content type, body) is recorded and checked,
and every call is checked against the Role in platform/k8s/deployer-rbac.yaml.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from resources.deployment import seldon
from resources.deployment.seldon import (
    ModelRef,
    ReleasePlan,
    ReleasePlanError,
    ReleaseRejected,
    SeldonApplyError,
    SeldonError,
    SeldonValidationError,
    admission_errors,
    apply,
    delete,
    obsolete,
    release_problems,
    render_core2,
    render_v1,
    validate_against_crd,
)
from fake_kubernetes import FakeApiServer, as_sent, documents_by_kind, grants

REPO = Path(__file__).resolve().parents[1]
RBAC = REPO / "platform" / "k8s" / "deployer-rbac.yaml"

CHAMPION = ModelRef("3", "s3://assay-mlflow/1/0f3c/artifacts/model", "3" * 64)
CANDIDATE = ModelRef("4", "s3://assay-mlflow/1/9a2d/artifacts/model", "4" * 64)
STRATEGIES = ["full", "shadow", "canary"]


def plan(strategy: str = "canary", **changes) -> ReleasePlan:
    candidate = None if strategy == "full" else CANDIDATE
    return ReleasePlan(use_case="flights", champion=CHAMPION, candidate=candidate,
                       strategy=strategy, **changes)  # fmt: skip


def _one(resources: list[dict], kind: str, name: str | None = None) -> dict:
    found = [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [r["metadata"]["name"] for r in resources])
    return found[0]


# ------------------------------------------------------------------------------------ the plan


def test_each_version_is_named_as_a_dns_label_after_its_use_case():
    assert plan().name("3") == "flights-v3"
    assert plan().name("v12") == "flights-v12"
    snake = dataclasses.replace(plan(), use_case="flight_delays")
    assert snake.name("7") == "flight-delays-v7"
    assert snake.base_name == "flight-delays"


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"strategy": "full"}, "serves the champion alone"),
        ({"candidate": None}, "needs a candidate"),
        ({"strategy": "blue-green"}, "not one of"),
        ({"canary_weight": 0}, "canary_weight"),
        ({"canary_weight": 100}, "canary_weight"),
        ({"candidate": CHAMPION}, "same version"),
        ({"champion": dataclasses.replace(CHAMPION, sha256="abc")}, "sha256"),
        ({"champion": dataclasses.replace(CHAMPION, storage_uri="model/")}, "storage_uri"),
        ({"namespace": "Assay"}, "namespace"),
        ({"implementation": "MY_SERVER"}, "prepackaged"),
        ({"replicas": 0}, "replicas"),
        ({"resources": {"cpu": "one", "memory": "2Gi"}}, "resources.cpu"),
        ({"use_case": "x" * 70}, "DNS-1123"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_plan_that_cannot_be_released_is_refused_when_it_is_made(changes, reason):
    fields = {f.name: getattr(plan(), f.name) for f in dataclasses.fields(ReleasePlan)}
    with pytest.raises(ReleasePlanError, match=reason):
        ReleasePlan(**{**fields, **changes})


# ------------------------------------------------------------------- renderings are admissible


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("render", [render_core2, render_v1], ids=["core2", "v1"])
def test_every_rendering_validates_strictly_against_the_crds_and_passes_admission(render, strategy):
    resources = render(plan(strategy))
    for resource in resources:
        validate_against_crd(resource)
        assert admission_errors(resource) == []
    assert release_problems(resources) == []
    assert {r["metadata"]["namespace"] for r in resources} == {"assay"}


def test_a_full_core2_release_is_the_champions_model_alone():
    (model,) = render_core2(plan("full"))
    assert model["apiVersion"] == "mlops.seldon.io/v1alpha1" and model["kind"] == "Model"
    assert model["metadata"]["name"] == "flights-v3"
    assert model["spec"] == {
        "storageUri": CHAMPION.storage_uri,
        "requirements": ["mlflow"],
        "memory": "2Gi",
        "replicas": 1,
        "server": "mlserver",
        "parameters": [{"name": "assay_model_sha256", "value": CHAMPION.sha256}],
    }
    assert model["metadata"]["annotations"][seldon.SHA256_ANNOTATION] == CHAMPION.sha256


def test_a_core2_canary_splits_the_champions_endpoint_by_the_plans_weight():
    resources = render_core2(plan("canary", canary_weight=10))
    assert [r["kind"] for r in resources] == ["Model", "Model", "Experiment"]
    _one(resources, "Model", "flights-v4")
    experiment = _one(resources, "Experiment")
    assert experiment["metadata"]["name"] == "flights"
    assert experiment["spec"] == {
        "default": "flights-v3",
        "candidates": [{"name": "flights-v3", "weight": 90}, {"name": "flights-v4", "weight": 10}],
        "resourceType": "model",
    }


def test_a_core2_shadow_mirrors_every_request_to_the_candidate_and_answers_from_the_champion():
    experiment = _one(render_core2(plan("shadow")), "Experiment")
    assert experiment["spec"] == {
        "default": "flights-v3",
        "candidates": [{"name": "flights-v3", "weight": 100}],
        "mirror": {"name": "flights-v4", "percent": 100},
        "resourceType": "model",
    }


def test_a_v1_canary_is_two_mlserver_predictors_whose_traffic_sums_to_100():
    (deployment,) = render_v1(plan("canary", canary_weight=25))
    assert deployment["apiVersion"] == "machinelearning.seldon.io/v1"
    assert deployment["metadata"]["name"] == "flights"
    assert deployment["spec"]["protocol"] == "v2"
    main, canary = deployment["spec"]["predictors"]
    assert (main["name"], main["traffic"]) == ("flights-v3", 75)
    assert (canary["name"], canary["traffic"]) == ("flights-v4", 25)
    for predictor, ref in ((main, CHAMPION), (canary, CANDIDATE)):
        graph = predictor["graph"]
        assert graph["implementation"] == "MLFLOW_SERVER" and graph["modelUri"] == ref.storage_uri
        # One model name in both predictors: the same V2 URL whichever predictor answers.
        assert graph["name"] == "flights"
        (container,) = predictor["componentSpecs"][0]["spec"]["containers"]
        assert container["name"] == graph["name"]
        assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}


def test_a_v1_shadow_is_a_second_predictor_marked_shadow_beside_a_main_with_all_traffic():
    (deployment,) = render_v1(plan("shadow"))
    main, shadow = deployment["spec"]["predictors"]
    assert main["traffic"] == 100 and "shadow" not in main
    assert shadow["shadow"] is True and shadow["graph"]["modelUri"] == CANDIDATE.storage_uri
    assert "traffic" not in shadow


def test_the_storage_secret_is_named_on_every_model_when_the_plan_has_one():
    secret_plan = plan("canary", storage_secret="assay-model-storage")
    for model in render_core2(secret_plan)[:2]:
        assert model["spec"]["secretName"] == "assay-model-storage"
    for predictor in render_v1(secret_plan)[0]["spec"]["predictors"]:
        assert predictor["graph"]["envSecretRefName"] == "assay-model-storage"
    assert release_problems(render_core2(secret_plan) + render_v1(secret_plan)) == []


# ---------------------------------------------------------------------------- strict validation


@pytest.mark.parametrize(
    "render, where, path",
    [
        (render_core2, lambda r: r[0]["spec"], "$.spec.storageURI"),
        (render_core2, lambda r: r[2]["spec"]["candidates"][1], "$.spec.candidates[1].storageURI"),
        (render_v1, lambda r: r[0]["spec"]["predictors"][1]["graph"],
         "$.spec.predictors[1].graph.storageURI"),
        (render_v1, lambda r: r[0]["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0],
         "$.spec.predictors[0].componentSpecs[0].spec.containers[0].storageURI"),
        (render_v1, lambda r: r[0], "$.storageURI"),
    ],
    ids=["model spec", "experiment candidate", "v1 graph", "v1 container", "top level"],
)  # fmt: skip
def test_strict_validation_rejects_an_unknown_field_naming_the_resource_and_its_path(render, where, path):
    resources = render(plan("canary"))
    where(resources)["storageURI"] = "s3://typo"
    bad = next(r for r in resources if "storageURI" in json.dumps(r))
    # The CRD schemas do not forbid extra fields themselves; the API server would prune it...
    import jsonschema

    crd = seldon.crds._crd_for(bad)
    group, version = bad["apiVersion"].split("/")
    lenient = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    jsonschema.Draft4Validator(lenient["schema"]["openAPIV3Schema"]).validate(bad)
    # ...and strict validation refuses it, saying where.
    with pytest.raises(SeldonValidationError) as raised:
        validate_against_crd(bad)
    error = raised.value
    assert error.resource == f"{bad['kind']}/{bad['metadata']['name']}"
    assert error.path == path
    assert "unknown field 'storageURI'" in str(error)
    assert str(error).startswith(f"{error.resource}: {path}: ")


def test_a_wrong_type_is_reported_at_its_json_path():
    (deployment,) = render_v1(plan("canary"))
    deployment["spec"]["predictors"][1]["replicas"] = "two"
    with pytest.raises(SeldonValidationError, match=r"SeldonDeployment/flights: "
                       r"\$\.spec\.predictors\[1\]\.replicas: 'two' is not of type 'integer'"):  # fmt: skip
        validate_against_crd(deployment)


def test_a_missing_required_field_is_refused():
    model = render_core2(plan("full"))[0]
    del model["spec"]["storageUri"]
    with pytest.raises(SeldonValidationError, match=r"Model/flights-v3: \$\.spec: 'storageUri' is a required"):
        validate_against_crd(model)


@pytest.mark.parametrize("memory, ok", [("2Gi", True), (2147483648, True), ("500M", True),
                                        ("2 gigs", False), (True, False), (1.5, False)])  # fmt: skip
def test_int_or_string_quantities_accept_an_integer_or_a_quantity_string_only(memory, ok):
    model = render_core2(plan("full"))[0]
    model["spec"]["memory"] = memory
    if ok:
        validate_against_crd(model)
    else:
        with pytest.raises(SeldonValidationError, match=r"\$\.spec\.memory"):
            validate_against_crd(model)


def test_an_int32_field_refuses_a_number_too_wide_for_it():
    model = render_core2(plan("full"))[0]
    model["spec"]["replicas"] = 2**31
    with pytest.raises(SeldonValidationError, match=r"\$\.spec\.replicas: .*int32"):
        validate_against_crd(model)


def test_metadata_is_checked_leniently_but_its_names_and_labels_must_be_strings():
    model = render_core2(plan("full"))[0]
    model["metadata"]["generateName"] = "flights-"  # ObjectMeta is the API server's to check
    validate_against_crd(model)
    model["metadata"]["labels"]["assay.dev/model-version"] = 3
    with pytest.raises(SeldonValidationError, match=r"\$\.metadata\.labels\['assay\.dev/model-version'\]"):
        validate_against_crd(model)


def test_a_resource_without_a_matching_crd_is_refused_clearly():
    model = render_core2(plan("full"))[0]
    with pytest.raises(SeldonError, match="no CRD for mlops.seldon.io Modell"):
        validate_against_crd({**model, "kind": "Modell"})
    with pytest.raises(SeldonError, match="has no version 'v2'"):
        validate_against_crd({**model, "apiVersion": "mlops.seldon.io/v2"})


def test_the_crds_are_read_from_the_folder_assay_seldon_crds_names(tmp_path, monkeypatch):
    model = render_core2(plan("full"))[0]
    monkeypatch.setenv(seldon.CRDS_ENV, str(tmp_path))
    with pytest.raises(SeldonError, match=f"no Seldon CRDs in {tmp_path}"):
        validate_against_crd(model)
    shutil.copy(seldon.DEFAULT_CRDS_DIR / "mlops.seldon.io_models.yaml", tmp_path)
    validate_against_crd(model)
    with pytest.raises(SeldonError, match="no CRD for mlops.seldon.io Experiment"):
        validate_against_crd(render_core2(plan("canary"))[2])


# ------------------------------------------------------------------------------ admission rules


def _v1(strategy="canary"):
    return render_v1(plan(strategy))[0]


def _predictors(resource):
    return resource["spec"]["predictors"]


def _break_traffic(r):
    _predictors(r)[1]["traffic"] = 20  # 90 + 20


def _two_shadows(r):
    third = copy.deepcopy(_predictors(r)[1])
    third["name"] = "flights-v5"
    _predictors(r).append(third)


def _shadow_alone(r):
    del _predictors(r)[0]


def _duplicate_predictor(r):
    _predictors(r)[1]["name"] = _predictors(r)[0]["name"]


def _no_model_uri(r):
    del _predictors(r)[0]["graph"]["modelUri"]


def _sklearn_without_model_uri(r):
    _predictors(r)[0]["graph"].update(implementation="SKLEARN_SERVER", modelUri="")


def _tensorflow_protocol(r):
    r["spec"]["protocol"] = "tensorflow"


def _unknown_protocol(r):
    r["spec"]["protocol"] = "v3"


def _custom_node_without_container(r):
    del _predictors(r)[0]["graph"]["implementation"]
    _predictors(r)[0]["componentSpecs"][0]["spec"]["containers"][0]["name"] = "other"


def _predictor_name_not_dns(r):
    _predictors(r)[1]["name"] = "Flights_V4"


def _no_predictors(r):
    r["spec"]["predictors"] = []


def _traffic_over_100(r):
    _predictors(r)[0]["traffic"] = 110
    _predictors(r)[1]["traffic"] = -10


def _core2(index, strategy="canary"):
    return render_core2(plan(strategy))[index]


def _default_not_candidate(r):
    r["spec"]["default"] = "flights-v2"


def _mirror_also_candidate(r):
    r["spec"]["mirror"]["name"] = "flights-v3"


def _weights_not_100(r):
    r["spec"]["candidates"][1]["weight"] = 20


def _no_candidates(r):
    r["spec"]["candidates"] = []


def _zero_weight(r):
    r["spec"]["candidates"] = [{"name": "flights-v3", "weight": 0}]
    del r["spec"]["default"]


def _duplicate_candidate(r):
    r["spec"]["candidates"][1]["name"] = "flights-v3"


def _mirror_percent_0(r):
    r["spec"]["mirror"]["percent"] = 0


def _empty_storage_uri(r):
    r["spec"]["storageUri"] = " "


def _replicas_above_max(r):
    r["spec"].update(replicas=5, maxReplicas=3)


def _name_not_dns(r):
    r["metadata"]["name"] = "Flights.V3"


def _bad_label(r):
    r["metadata"]["labels"]["assay.dev/role"] = "champion!"


ADMISSION_CASES = [
    ("non-shadow traffic that does not sum to 100", lambda: _v1(), _break_traffic, "must sum to 100, got 110"),
    ("two shadow predictors", lambda: _v1("shadow"), _two_shadows, "at most one shadow predictor"),
    ("a shadow predictor alone", lambda: _v1("shadow"), _shadow_alone, "cannot stand alone"),
    ("two predictors of one name", lambda: _v1(), _duplicate_predictor, "duplicate predictor name 'flights-v3'"),
    ("MLFLOW_SERVER without a modelUri", lambda: _v1(), _no_model_uri, "MLFLOW_SERVER needs a modelUri"),
    ("SKLEARN_SERVER with an empty modelUri", lambda: _v1(), _sklearn_without_model_uri, "SKLEARN_SERVER needs a modelUri"),
    ("MLFLOW_SERVER on the tensorflow protocol", lambda: _v1(), _tensorflow_protocol, "does not speak the tensorflow protocol"),
    ("an unknown protocol", lambda: _v1(), _unknown_protocol, "'v3' is not one of"),
    ("a custom graph node without its container", lambda: _v1(), _custom_node_without_container, "no container of that name"),
    ("a predictor name that is not a DNS label", lambda: _v1(), _predictor_name_not_dns, "predictor name 'Flights_V4' must be a DNS-1123"),
    ("no predictors", lambda: _v1(), _no_predictors, "at least one predictor"),
    ("traffic outside 0..100", lambda: _v1(), _traffic_over_100, "110 is outside 0..100"),
    ("an experiment default that is not a candidate", lambda: _core2(2), _default_not_candidate, "'flights-v2' is not one of the candidates"),
    ("a mirror that is also a candidate", lambda: _core2(2, "shadow"), _mirror_also_candidate, "'flights-v3' is also a candidate"),
    ("candidate weights that do not sum to 100", lambda: _core2(2), _weights_not_100, "weights must sum to 100, got 110"),
    ("an experiment without candidates", lambda: _core2(2), _no_candidates, "at least one candidate"),
    ("a candidate weighted 0", lambda: _core2(2), _zero_weight, "must be at least 1"),
    ("one model twice among the candidates", lambda: _core2(2), _duplicate_candidate, "is a candidate twice"),
    ("a mirror of 0 percent", lambda: _core2(2, "shadow"), _mirror_percent_0, "outside 1..100"),
    ("a model with a blank storageUri", lambda: _core2(0), _empty_storage_uri, "needs a storageUri"),
    ("a model with more replicas than its maximum", lambda: _core2(0), _replicas_above_max, "above maxReplicas"),
    ("a name that is not a DNS label", lambda: _core2(0), _name_not_dns, "name 'Flights.V3' must be a DNS-1123"),
    ("an invalid label value", lambda: _core2(0), _bad_label, "not a valid Kubernetes label"),
]  # fmt: skip


@pytest.mark.parametrize(
    "rendered, breaks, reason", [c[1:] for c in ADMISSION_CASES], ids=[c[0] for c in ADMISSION_CASES]
)
def test_admission_refuses_a_resource_that_breaks_a_rule_the_crd_does_not_encode(rendered, breaks, reason):
    resource = rendered()
    assert admission_errors(resource) == []
    breaks(resource)
    errors = admission_errors(resource)
    assert any(reason in e for e in errors), errors
    described = f"{resource['kind']}/{resource['metadata']['name']}"
    assert all(e.startswith(f"{described}: $.") for e in errors), errors


def test_a_missing_model_uri_passes_the_crd_schema_so_only_admission_catches_it():
    deployment = _v1()
    _no_model_uri(deployment)
    validate_against_crd(deployment)
    assert admission_errors(deployment)


def test_a_batch_refuses_an_experiment_over_models_it_does_not_hold():
    resources = render_core2(plan("canary"))
    without_candidate = [r for r in resources if r["metadata"]["name"] != "flights-v4"]
    assert any("'flights-v4' is not a Model of this batch" in p for p in release_problems(without_candidate))


def test_a_batch_refuses_a_model_that_is_the_default_of_two_experiments():
    resources = render_core2(plan("canary"))
    second = copy.deepcopy(resources[2])
    second["metadata"]["name"] = "flights-again"
    problems = release_problems([*resources, second])
    assert any("already the default of Experiment/flights" in p for p in problems), problems


def test_a_batch_refuses_the_same_resource_twice():
    resources = render_core2(plan("full"))
    assert any("appears twice" in p for p in release_problems(resources * 2))


# ------------------------------------------------------------------------------- API boundary


@pytest.fixture
def server():
    return FakeApiServer()


@pytest.fixture
def api_client(server):
    return server.connect()


def _path(resource: dict, plural: str) -> str:
    group, version = resource["apiVersion"].split("/")
    return f"/apis/{group}/{version}/namespaces/assay/{plural}/{resource['metadata']['name']}"


PLURALS = {"Model": "models", "Experiment": "experiments", "SeldonDeployment": "seldondeployments"}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("render", [render_core2, render_v1], ids=["core2", "v1"])
def test_apply_sends_one_server_side_apply_per_resource_as_field_manager_assay(render, strategy, server, api_client):
    resources = render(plan(strategy))
    answers = apply(resources, api_client)

    assert len(server.requests) == len(resources)
    for resource, sent, answer in zip(resources, server.requests, answers, strict=True):
        assert sent.method == "PATCH"
        assert sent.path == _path(resource, PLURALS[resource["kind"]])
        assert sent.query == {"fieldManager": "assay", "force": "True", "fieldValidation": "Strict"}
        assert sent.headers["Content-Type"] == "application/apply-patch+yaml"
        assert sent.body == resource
        assert as_sent(answer) == resource


def test_apply_sends_the_models_before_the_experiment_that_routes_to_them(server, api_client):
    resources = render_core2(plan("canary"))
    apply(list(reversed(resources)), api_client)
    assert [r.path.split("/")[-2] for r in server.requests] == ["models", "models", "experiments"]


def test_a_dry_run_apply_asks_the_server_to_store_nothing(server, api_client):
    apply(render_core2(plan("full")), api_client, dry_run=True)
    assert server.requests[0].query["dryRun"] == "All"


@pytest.mark.parametrize(
    "breaks",
    [
        lambda rs: rs[2]["spec"]["candidates"][0].update(weigth=90),  # schema: unknown field
        lambda rs: rs[2]["spec"].update(default="flights-v9"),  # admission: default not a candidate
        lambda rs: rs[1]["metadata"].update(name="flights_v4"),  # admission: not a DNS name
    ],
    ids=["an unknown field", "an admission rule", "a bad name"],
)
def test_a_batch_with_one_invalid_resource_applies_nothing(breaks, server, api_client):
    resources = render_core2(plan("canary"))
    breaks(resources)
    with pytest.raises(ReleaseRejected, match="nothing applied") as raised:
        apply(resources, api_client)
    assert server.requests == []
    assert raised.value.problems


def test_a_refusal_by_the_api_server_names_the_resource_and_what_was_applied_before(api_client):
    api_client.rest_client.pool_manager = FakeApiServer({"PATCH flights-v4": 422})
    with pytest.raises(SeldonApplyError, match=r"Model/flights-v4: .*422.*applied before it: \['Model/flights-v3'\]"):
        apply(render_core2(plan("canary")), api_client)


def test_ending_a_core2_release_deletes_the_experiment_then_the_candidate(server, api_client):
    before = render_core2(plan("canary"))
    after = render_core2(dataclasses.replace(plan("canary"), candidate=None, strategy="full"))
    gone = obsolete(before, after)
    assert [(r["kind"], r["metadata"]["name"]) for r in gone] == [("Model", "flights-v4"), ("Experiment", "flights")]

    apply(after, api_client)
    deleted = delete(gone, api_client)

    assert deleted == ["Experiment/flights", "Model/flights-v4"]
    assert [(r.method, r.path) for r in server.requests] == [
        ("PATCH", _path(after[0], "models")),
        ("DELETE", _path(before[2], "experiments")),
        ("DELETE", _path(before[1], "models")),
    ]


def test_deleting_what_is_already_gone_counts_as_deleted(api_client):
    api_client.rest_client.pool_manager = FakeApiServer({"DELETE flights": 404})
    experiment = render_core2(plan("canary"))[2]
    assert delete([experiment], api_client) == ["Experiment/flights"]


def test_a_seldondeployment_is_never_deleted_it_is_rolled_back_by_applying(server, api_client):
    with pytest.raises(SeldonError, match="only Core 2 Models and Experiments"):
        delete(render_v1(plan("canary")), api_client)
    assert server.requests == []


# ---------------------------------------------------------------------------------------- RBAC


def test_the_deployer_role_grants_exactly_what_releases_call():
    granted = grants(documents_by_kind(RBAC)["Role"])
    assert granted == {
        ("mlops.seldon.io", "models"): {"get", "list", "watch", "create", "patch", "delete"},
        ("mlops.seldon.io", "experiments"): {"get", "list", "watch", "create", "patch", "delete"},
        ("machinelearning.seldon.io", "seldondeployments"): {"get", "list", "watch", "create", "patch"},
    }
    assert not any("*" in verbs for verbs in granted.values())
    assert not any(resource in {"secrets", "*"} for _, resource in granted)


def test_every_call_a_release_makes_is_granted_to_assay_deployer(server, api_client):
    docs = documents_by_kind(RBAC)
    assert docs["RoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "assay-deployer", "namespace": "assay"}
    ]
    assert docs["RoleBinding"]["roleRef"]["name"] == docs["Role"]["metadata"]["name"]
    granted = grants(docs["Role"])

    for strategy in STRATEGIES:
        apply(render_core2(plan(strategy)) + render_v1(plan(strategy)), api_client)
    delete(render_core2(plan("canary"))[1:], api_client)

    for sent in server.requests:
        _, group, _, _, namespace, plural, _ = sent.path.strip("/").split("/")
        assert namespace == docs["Role"]["metadata"]["namespace"]
        if sent.method == "PATCH":
            assert sent.headers["Content-Type"] == "application/apply-patch+yaml"
            # Server-side apply is authorized as patch, and as create when it creates the object.
            needed = {"patch", "create"}
        else:
            needed = {sent.method.lower()}
        assert needed <= granted[(group, plural)], (sent.method, sent.path)
