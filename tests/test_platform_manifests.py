"""The Kubernetes path, checked up to the API boundary.

No cluster, Docker engine or helm runs here. What can be checked without them is checked against
the real thing: manifests against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict, so
an unknown or misspelt field fails), the run pod as the Job body dagster-k8s itself builds from the
Helm values, and the image's command against the installed dagster CLI. The rest are the facts the
Helm values and the Dockerfile must keep, asserted one by one.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import kubernetes
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PLATFORM = REPO / "platform"
K8S_DIR = PLATFORM / "k8s"
DOCKERFILE = PLATFORM / "docker" / "Dockerfile"
DOCKERIGNORE = PLATFORM / "docker" / "Dockerfile.dockerignore"
HELM_VALUES = PLATFORM / "helm" / "dagster-values.yaml"
README = PLATFORM / "README.md"

# The oldest Kubernetes release the platform supports (platform/README.md). Pinned, so a schema
# change in a kubernetes-validate upgrade shows up as a test change, not as a silent drift.
KUBERNETES_VERSION = "1.33.0"

NAMESPACE = "assay"
RUN_SERVICE_ACCOUNT = "assay-runs"
WAREHOUSE_CLAIM = "assay-warehouse"
APP_UID = 10001
CODE_SERVER_PORT = 3030


# --------------------------------------------------------------------------------------- helpers


def _manifest_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                docs.append((f"{path.name}#{index}", doc))
    return docs


MANIFESTS = _manifest_documents()


def _manifest(kind: str, name: str) -> dict:
    found = [d for _, d in MANIFESTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"want one {kind}/{name} under platform/k8s, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(HELM_VALUES.read_text())


@pytest.fixture(scope="module")
def code_location(values) -> dict:
    deployments = values["dagster-user-deployments"]["deployments"]
    assert [d["name"] for d in deployments] == ["assay"]
    return deployments[0]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined, the way
    Docker reads the file."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a line continuation"
    return instructions


def _index_of(instructions, keyword: str, *needles: str) -> int:
    for i, (kw, args) in enumerate(instructions):
        if kw == keyword and all(n in args for n in needles):
            return i
    raise AssertionError(f"no {keyword} containing {needles} in {DOCKERFILE}")


def _exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def _code_server_start_command():
    from dagster._cli import cli

    return cli.commands["code-server"].commands["start"]


# ------------------------------------------------------------------------ Kubernetes manifests


def test_platform_k8s_holds_the_expected_manifests():
    kinds = sorted((d["kind"], d["metadata"]["name"]) for _, d in MANIFESTS)
    assert kinds == sorted(
        [
            ("Namespace", NAMESPACE),
            ("ServiceAccount", RUN_SERVICE_ACCOUNT),
            ("Role", RUN_SERVICE_ACCOUNT),
            ("RoleBinding", RUN_SERVICE_ACCOUNT),
            ("PersistentVolumeClaim", WAREHOUSE_CLAIM),
            ("ServiceAccount", "assay-trainer"),
            ("Role", "assay-trainer-launcher"),
            ("RoleBinding", "assay-trainer-launcher"),
            ("ServiceAccount", "assay-deployer"),
            ("Role", "assay-deployer"),
            ("RoleBinding", "assay-deployer"),
            ("PodTemplate", "assay-trainer"),
        ]
    )


@pytest.mark.parametrize("name,doc", MANIFESTS, ids=[name for name, _ in MANIFESTS])
def test_every_platform_manifest_validates_strictly(name, doc):
    validated = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert validated == "1.33", f"{name} was validated against {validated}, not the pinned release"


def test_strict_validation_rejects_a_manifest_with_an_unknown_field():
    # A misspelt field is the mistake strict mode exists for: a live API server would refuse it at
    # apply time, or a lenient client drop it silently; no cluster runs here, so this is the check.
    typo = copy.deepcopy(_manifest("ServiceAccount", RUN_SERVICE_ACCOUNT))
    typo["automountServiceAcountToken"] = True

    # Lenient validation lets it through, so it is strictness that catches it...
    kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=False)
    # ...and strict validation, the mode every platform manifest is checked in, rejects it.
    with pytest.raises(kubernetes_validate.ValidationError, match="automountServiceAcountToken"):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def test_every_namespaced_manifest_lives_in_the_assay_namespace():
    for name, doc in MANIFESTS:
        if doc["kind"] == "Namespace":
            continue
        assert doc["metadata"].get("namespace") == NAMESPACE, name


def test_the_run_role_grants_only_what_the_k8s_run_launcher_calls():
    role = _manifest("Role", RUN_SERVICE_ACCOUNT)
    granted = {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    # The calls dagster-k8s 0.29.27 makes from K8sRunLauncher (launch, health check, terminate,
    # debug info); see the table in platform/k8s/rbac.yaml.
    assert granted == {
        ("batch", "jobs"): sorted(["create", "get", "list", "watch", "delete"]),
        ("batch", "jobs/status"): ["get"],
        ("", "pods"): sorted(["get", "list", "watch", "delete"]),
        ("", "pods/log"): ["get"],
        ("", "events"): ["list"],
    }
    all_verbs = {verb for verbs in granted.values() for verb in verbs}
    assert "*" not in all_verbs
    assert "create" not in granted[("", "pods")], "runs start pods through Jobs, never directly"


def test_the_role_binding_gives_the_run_role_to_the_run_service_account():
    binding = _manifest("RoleBinding", RUN_SERVICE_ACCOUNT)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": RUN_SERVICE_ACCOUNT,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RUN_SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]


def test_the_warehouse_claim_can_be_mounted_by_run_pods_on_any_node():
    claim = _manifest("PersistentVolumeClaim", WAREHOUSE_CLAIM)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_no_secret_object_is_kept_under_platform_k8s():
    # Secrets are created in the cluster from values held outside the repository (README step 3).
    assert [name for name, doc in MANIFESTS if doc["kind"] == "Secret"] == []


# ----------------------------------------------------------------------------------- Dockerfile


def test_the_image_builds_from_python_3_11_slim():
    froms = [args for kw, args in _dockerfile_instructions() if kw == "FROM"]
    assert len(froms) == 1
    assert re.fullmatch(r"python:3\.11-slim(@sha256:[0-9a-f]{64})?", froms[0]), froms[0]


def test_the_image_installs_the_lock_and_then_the_project_without_resolving_again():
    steps = _dockerfile_instructions()
    copy_lock = _index_of(steps, "COPY", "requirements.lock")
    install_lock = _index_of(steps, "RUN", "pip install", "requirements.lock")
    install_project = _index_of(steps, "RUN", "pip install", "--no-deps")
    assert copy_lock < install_lock < install_project
    assert "requirements" not in steps[install_project][1], "the project step must add no pins"


def test_the_image_parses_the_dbt_project_at_build_time():
    steps = _dockerfile_instructions()
    parse = _index_of(steps, "RUN", "dbt parse")
    args = steps[parse][1]
    assert "--project-dir dbt_project" in args
    assert "--profiles-dir dbt_project" in args
    assert "manifest.json" in args, "the build must fail when dbt parse leaves no manifest"
    assert parse > _index_of(steps, "RUN", "pip install", "--no-deps"), "dbt comes from the lock"


def test_the_image_runs_as_the_non_root_uid_the_helm_values_expect(values):
    users = [args for kw, args in _dockerfile_instructions() if kw == "USER"]
    assert users, "no USER: the image would run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    assert final_user == str(APP_UID)
    run_k8s_config = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    pod_security = run_k8s_config["podSpecConfig"]["securityContext"]
    assert pod_security["runAsUser"] == APP_UID and pod_security["fsGroup"] == APP_UID


def test_the_image_exposes_3030_and_serves_the_code_location_there():
    steps = _dockerfile_instructions()
    exposed = {port for kw, args in steps if kw == "EXPOSE" for port in args.split()}
    assert exposed == {str(CODE_SERVER_PORT)}
    cmds = [args for kw, args in steps if kw == "CMD"]
    assert len(cmds) == 1
    assert _exec_form(cmds[0]) == [
        "dagster", "code-server", "start",
        "-h", "0.0.0.0", "-p", str(CODE_SERVER_PORT), "-f", "definitions.py",
    ]  # fmt: skip


def test_the_image_command_parses_with_the_installed_dagster_cli():
    import click

    cmd = _exec_form([args for kw, args in _dockerfile_instructions() if kw == "CMD"][0])
    start = _code_server_start_command()
    ctx = start.make_context("start", cmd[3:])
    assert ctx.params["host"] == "0.0.0.0"
    assert ctx.params["port"] == CODE_SERVER_PORT
    assert ctx.params["python_file"] == "definitions.py"
    # The same parser refuses a flag it does not know, so a renamed flag would fail here.
    with pytest.raises(click.NoSuchOption):
        start.make_context("start", ["--python-fil", "definitions.py", "-p", "3030"])


def test_the_build_context_leaves_out_local_state_and_env_files():
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".assay/", "**/.env", ".git/", "dbt_project/target/"} <= patterns


# ------------------------------------------------------------------------ image dependencies


def _locked_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_lock_holds_the_libraries_the_cluster_instance_loads():
    # The chart's dagster.yaml stores runs, events and schedules with dagster_postgres and launches
    # runs with dagster_k8s; the code server and every run pod load that instance from this image,
    # which installs requirements.lock and nothing else.
    pins = _locked_versions()
    missing = sorted({"dagster-postgres", "dagster-k8s"} - pins.keys())
    assert not missing, f"requirements.lock lacks {missing}: run pods could not load the instance"
    assert pins["dagster-postgres"] == pins["dagster-k8s"], "the dagster libraries move together"


def test_the_chart_version_is_the_locked_dagster_version():
    # The Dagster chart is versioned with the dagster library; the two must match.
    dagster = _locked_versions()["dagster"]
    for path in (HELM_VALUES, README):
        versions = set(re.findall(r"dagster/dagster --version (\S+)", path.read_text()))
        assert versions == {dagster}, f"{path.name} installs chart {versions}, lock has {dagster}"


# ---------------------------------------------------------------------------------- Helm values


def test_runs_launch_as_kubernetes_jobs_with_the_runtime_secret(values):
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    config = launcher["config"]["k8sRunLauncher"]
    assert config["loadInclusterConfig"] is True
    assert {"name": "assay-runtime"} in config["envSecrets"]


def test_dagster_postgres_password_comes_from_an_existing_secret(values):
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == "assay-dagster-postgresql"
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert values["postgresql"]["postgresqlPassword"] == ""


def test_every_dagster_pod_uses_the_service_account_platform_k8s_creates(values):
    assert values["global"]["serviceAccountName"] == RUN_SERVICE_ACCOUNT
    _manifest("ServiceAccount", RUN_SERVICE_ACCOUNT)
    # The chart must not create a second account or a broader Role beside platform/k8s/rbac.yaml.
    assert values["serviceAccount"]["create"] is False
    assert values["rbacEnabled"] is False
    assert values["dagster-user-deployments"]["rbacEnabled"] is False


def test_the_code_location_serves_its_image_on_3030_in_kubernetes_mode(values, code_location):
    user_deployments = values["dagster-user-deployments"]
    assert user_deployments["enabled"] is True and user_deployments["enableSubchart"] is True
    image = code_location["image"]
    assert image["repository"] == "assay-code-location"
    assert image["tag"] and image["tag"] != "latest", "runs must pin an exact image"
    assert code_location["port"] == CODE_SERVER_PORT
    assert code_location["env"]["ASSAY_ENV"] == "kubernetes"
    assert code_location["env"]["ASSAY_HOME"] == "/var/lib/assay"
    assert code_location["includeConfigInLaunchedRuns"] == {"enabled": True}


def test_the_chart_starts_the_code_server_with_the_image_command(code_location):
    # The chart runs `dagster code-server start -h 0.0.0.0 -p <port>` + codeServerArgs; it must
    # come out as the image's own CMD, and parse with the installed CLI.
    chart_command = [
        "dagster", "code-server", "start", "-h", "0.0.0.0", "-p", str(code_location["port"]),
        *code_location["codeServerArgs"],
    ]  # fmt: skip
    image_command = _exec_form([a for kw, a in _dockerfile_instructions() if kw == "CMD"][0])
    assert chart_command == image_command
    _code_server_start_command().make_context("start", chart_command[3:])


def test_the_warehouse_volume_is_the_claim_platform_k8s_creates(values, code_location):
    _manifest("PersistentVolumeClaim", WAREHOUSE_CLAIM)
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for source in (code_location, launcher):
        assert source["volumes"] == [
            {"name": "warehouse", "persistentVolumeClaim": {"claimName": WAREHOUSE_CLAIM}}
        ]
        assert source["volumeMounts"] == [
            {"name": "warehouse", "mountPath": code_location["env"]["ASSAY_HOME"]}
        ]


def test_the_daemon_queues_runs(values):
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] is True
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == "QueuedRunCoordinator"
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] > 0


def test_every_pool_defaults_to_one_slot(values):
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"] == {"defaultLimit": 1, "granularity": "op"}


def test_the_run_pod_dagster_k8s_builds_from_the_values_validates_strictly(values, code_location):
    # Build the run worker's Job the way K8sRunLauncher does (container context from the launcher
    # config merged with the code location's, then construct_dagster_k8s_job) and validate it
    # against the Kubernetes schema: a values key dagster-k8s turns into a bad field fails here.
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
    )

    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    from_launcher = K8sContainerContext(
        image_pull_policy=launcher["imagePullPolicy"],
        service_account_name=values["global"]["serviceAccountName"],
        env_secrets=[s["name"] for s in launcher["envSecrets"]],
        volumes=launcher["volumes"],
        volume_mounts=launcher["volumeMounts"],
        security_context=launcher["securityContext"],
        namespace=NAMESPACE,
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            {"pod_spec_config": launcher["runK8sConfig"]["podSpecConfig"]}
        ),
    )
    from_code_location = K8sContainerContext(
        env_config_maps=["assay-dagster-assay-user-env"],  # where the chart writes the env map
        env_secrets=[s["name"] for s in code_location["envSecrets"]],
        volumes=code_location["volumes"],
        volume_mounts=code_location["volumeMounts"],
    )
    context = from_launcher.merge(from_code_location)
    image = f"{code_location['image']['repository']}:{code_location['image']['tag']}"
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image=image,
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="assay-dagster-instance",
            postgres_password_secret=values["global"]["postgresqlSecretName"],
        ),
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-0123456789abcdef",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
    )
    body = kubernetes.client.ApiClient().sanitize_for_serialization(job)

    assert kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True) == "1.33"
    pod = body["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == RUN_SERVICE_ACCOUNT
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == APP_UID
    # The launcher and the code location name the same volume; dagster-k8s must merge them to one.
    assert pod["volumes"] == [
        {"name": "warehouse", "persistentVolumeClaim": {"claimName": WAREHOUSE_CLAIM}}
    ]
    (container,) = pod["containers"]
    assert container["image"] == image
    assert {"secretRef": {"name": "assay-runtime"}} in container["envFrom"]
    assert {
        "name": "DAGSTER_PG_PASSWORD",
        "valueFrom": {
            "secretKeyRef": {"key": "postgresql-password", "name": "assay-dagster-postgresql"}
        },
    } in container["env"]


# ------------------------------------------------------------------------------------- secrets

_SECRET_KEY = re.compile(r"(password|passwd|secret_?access_?key|token|api_?key|credential)", re.I)
_SECRET_VALUE = re.compile(
    r"AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|://[^/\s:@]+:[^/\s@]+@"  # credentials inside a URL
)


def _literal_secret_values(node, path="") -> list[str]:
    """Paths of keys that look like secrets and carry a non-empty literal string."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, str) and value and _SECRET_KEY.search(str(key)):
                found.append(where)
            found += _literal_secret_values(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _literal_secret_values(item, f"{path}[{i}]")
    return found


def test_the_secret_scan_would_catch_a_literal_password():
    planted = {
        "postgresql": {"postgresqlPassword": "hunter2"},
        "env": {"AWS_SECRET_ACCESS_KEY": "x"},
    }
    assert _literal_secret_values(planted) == [
        "postgresql.postgresqlPassword",
        "env.AWS_SECRET_ACCESS_KEY",
    ]
    assert _SECRET_VALUE.search("MLFLOW_TRACKING_URI=https://user:pa55@mlflow.example.com")


def test_no_secret_value_is_written_anywhere_under_platform():
    files = [p for p in PLATFORM.rglob("*") if p.is_file()]
    assert HELM_VALUES in files and DOCKERFILE in files
    for path in files:
        text = path.read_text()
        assert not _SECRET_VALUE.search(text), f"{path} holds what looks like a credential"
        if path.suffix in {".yaml", ".yml"}:
            for doc in yaml.safe_load_all(text):
                assert _literal_secret_values(doc) == [], path
    # The Dockerfile may not bake a secret into a layer either.
    for kw, args in _dockerfile_instructions():
        if kw in {"ENV", "ARG"}:
            names = [tok.split("=")[0] for tok in shlex.split(args)]
            assert not [n for n in names if _SECRET_KEY.search(n) or n.startswith("AWS_")], args


def test_the_readme_creates_every_secret_the_helm_values_reference(values, code_location):
    readme = README.read_text()
    referenced = {values["global"]["postgresqlSecretName"]}
    referenced |= {s["name"] for s in code_location["envSecrets"]}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    referenced |= {s["name"] for s in launcher["envSecrets"]}
    for secret in referenced:
        assert f"create secret generic {secret}" in readme, secret
    for variable in ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert f"--from-literal={variable}=\"${variable}\"" in readme, variable
