"""The Kubernetes API server as the tests see it, and what an RBAC Role grants.

No cluster runs in the tests. The kubernetes client runs for real (API classes, serialization, and
whatever calls it: dagster-k8s, Assay's deployer); only its HTTP transport, urllib3's
`PoolManager.request`, is replaced by `FakeApiServer`, which keeps what it is sent as an API
server does and records every request, so a test asserts the exact calls and checks each against
the Role in platform/k8s/ that grants it.
"""

from __future__ import annotations

import base64
import copy
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

import kubernetes
import yaml

# What the server adds to the metadata of an object it stores (and `as_sent` takes away again).
_SERVER_METADATA = ("generation", "creationTimestamp", "managedFields")
_CLOCK = datetime(2026, 1, 1, tzinfo=timezone.utc)  # the server's clock starts here and ticks once per request
_CORE_KINDS = {"pods": "Pod", "secrets": "Secret", "events": "Event"}

# status(obj, reads) -> what the object's controller reports on its reads-th GET, or None
Status = Callable[[dict, int], "dict | None"]
# run_container(command, env) -> (exit code, output lines): the kubelet's container runtime
ContainerRuntime = Callable[[list[str], dict[str, str]], "tuple[int, list[str]]"]


class FakeApiServer:
    """The Kubernetes API server, as the kubernetes client's HTTP transport sees it.

    PATCH (server-side apply) stores an object, a new generation when its spec changed; POST creates
    one; GET reads one, or lists a collection filtered by `labelSelector` and `fieldSelector`;
    DELETE removes one; a missing object is answered 404, and a `dryRun` request stores nothing.
    `answers` maps "METHOD name" to a status to refuse that request with instead.

    `status(obj, reads)`, when given, is what the object's controller reports (Seldon's readiness,
    say) on its reads-th GET; without it an object reports the status it was stored with.
    `run_container`, when given, is the kubelet: a created Pod's first container runs at once, its
    env resolved from literal values and the Secrets stored here, and the Pod reports it terminated,
    its output served as the pod's log.
    """

    def __init__(self, answers: dict[str, int] | None = None, *, status: Status | None = None,
                 run_container: ContainerRuntime | None = None):
        self.answers = answers or {}
        self.status = status
        self.run_container = run_container
        self.objects: dict[str, dict] = {}  # by path, as stored (without status)
        self.logs: dict[str, list[str]] = {}  # a pod's path -> its container's output lines
        self.requests: list[SimpleNamespace] = []  # method, path, query, headers, body
        self.reads: Counter = Counter()  # GETs of each object

    def connect(self, api_client: kubernetes.client.ApiClient | None = None) -> kubernetes.client.ApiClient:
        """`api_client` (by default a new one, for a cluster that is never dialled) with this server
        as its HTTP transport."""
        if api_client is None:
            configuration = kubernetes.client.Configuration(host="https://kube.example:6443")
            api_client = kubernetes.client.ApiClient(configuration)
        api_client.rest_client.pool_manager = self
        return api_client

    def put(self, obj: dict) -> None:
        """Store `obj` as an operator's `kubectl apply` would (a Secret the platform expects, say)."""
        group_version = "api/v1" if obj["apiVersion"] == "v1" else f"apis/{obj['apiVersion']}"
        metadata = obj["metadata"]
        plural = obj["kind"].lower() + "s"
        self._store(f"/{group_version}/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}", obj,
                    "kubectl", "Apply")

    def calls(self, since: int = 0) -> list[tuple[str, str]]:
        """(method, path) of each request from the `since`-th on."""
        return [(r.method, r.path) for r in self.requests[since:]]

    def names(self) -> set[str]:
        """The names of the objects stored now."""
        return {path.rsplit("/", 1)[-1] for path in self.objects}

    # ------------------------------------------------------------------ the transport

    def request(self, method, url, body=None, headers=None, fields=None, **_):
        parts = urlsplit(url)
        query = {key: str(value) for key, value in [*parse_qsl(parts.query), *(fields or [])]}
        sent = SimpleNamespace(method=method, path=parts.path, query=query, headers=dict(headers or {}),
                               body=json.loads(body) if body else None)  # fmt: skip
        self.requests.append(sent)
        refusal = self.answers.get(f"{method} {parts.path.rsplit('/', 1)[-1]}")
        if refusal:
            return _Response.json(refusal, {"kind": "Status", "code": refusal, "reason": "Refused"})
        segments = parts.path.strip("/").split("/")
        if "namespaces" not in segments:
            raise AssertionError(f"{method} {parts.path}: the fake serves namespaced resources only")
        at = segments.index("namespaces") + 3  # .../namespaces/<namespace>/<plural>, then a name
        collection, (name, subresource) = "/" + "/".join(segments[:at]), (segments[at:] + [None, None])[:2]
        path = f"{collection}/{name}"
        dry_run = query.get("dryRun") == "All"
        if name is None and method == "GET":
            return _Response.json(200, {"apiVersion": "v1", "kind": "List", "items": self._list(collection, query)})
        if name is None and method == "POST":
            path = f"{collection}/{sent.body['metadata']['name']}"
            if path in self.objects:
                return _Response.json(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
            stored = self._store(path, sent.body, query.get("fieldManager", "kubectl"), "Update", dry_run)
            return _Response.json(201, self._view(path, stored))
        if method == "PATCH" and subresource is None:
            stored = self._store(path, sent.body, query.get("fieldManager", "kubectl"), "Apply", dry_run)
            return _Response.json(200, self._view(path, stored))
        if path not in self.objects:
            return _Response.json(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        if method == "GET" and subresource == "log":
            return _Response.text(200, self._log(path, query))
        if method == "GET" and subresource is None:
            self.reads[path] += 1
            return _Response.json(200, self._view(path))
        if method == "DELETE" and subresource is None:
            answer = self._view(path)
            if not dry_run:
                del self.objects[path]
                self.logs.pop(path, None)
            return _Response.json(200, answer)
        return _Response.json(405, {"kind": "Status", "code": 405, "reason": "MethodNotAllowed"})

    def _store(self, path: str, body: dict, manager: str, operation: str, dry_run: bool = False) -> dict:
        """Store `body` at `path` with the metadata the server sets; a dry run only answers it."""
        before = self.objects.get(path)
        obj = copy.deepcopy(body)
        # What a client may leave out, the server knows from the path.
        plural = path.rsplit("/", 2)[-2]
        if plural in _CORE_KINDS:
            obj = {"apiVersion": "v1", "kind": _CORE_KINDS[plural], **obj}
        obj["metadata"].setdefault("namespace", path.split("/namespaces/", 1)[1].split("/", 1)[0])
        if obj["kind"] == "Secret" and "stringData" in obj:  # the server folds stringData into data
            encoded = {k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()}
            obj["data"] = {**obj.get("data", {}), **encoded}
        now = (_CLOCK + timedelta(seconds=len(self.requests))).strftime("%Y-%m-%dT%H:%M:%SZ")
        if before is None:
            obj["metadata"].update(generation=1, creationTimestamp=now)
        else:
            changed = before.get("spec") != obj.get("spec")
            obj["metadata"].update(generation=before["metadata"]["generation"] + changed,
                                   creationTimestamp=before["metadata"]["creationTimestamp"])  # fmt: skip
        obj["metadata"]["managedFields"] = [{"manager": manager, "operation": operation, "time": now}]
        if not dry_run:
            if obj["kind"] == "Pod" and before is None:
                self._start(path, obj)
            self.objects[path] = obj
        return obj

    def _view(self, path: str, obj: dict | None = None) -> dict:
        """The object at `path` (or `obj`, not stored) as the server answers it: with the status its
        controller reports."""
        obj = copy.deepcopy(self.objects[path] if obj is None else obj)
        reported = self.status(obj, self.reads[path]) if self.status else obj.get("status")
        obj["status"] = reported or {}
        return obj

    def _list(self, collection: str, query: dict) -> list[dict]:
        labels = _selector(query.get("labelSelector", ""))
        fields = _selector(query.get("fieldSelector", ""))
        return [self._view(path) for path, obj in sorted(self.objects.items())
                if path.rsplit("/", 1)[0] == collection
                and labels.items() <= (obj["metadata"].get("labels") or {}).items()
                and all(_field(obj, name) == value for name, value in fields.items())]  # fmt: skip

    # ------------------------------------------------------------------ the kubelet

    def _start(self, path: str, pod: dict) -> None:
        """Run the pod's first container, if there is a container runtime, and record how it ended."""
        if self.run_container is None:
            pod["status"] = {"phase": "Pending"}
            return
        container = pod["spec"]["containers"][0]
        exit_code, lines = self.run_container([*container["command"], *container.get("args", [])],
                                              self._environment(pod, container))  # fmt: skip
        succeeded = exit_code == 0
        pod["status"] = {
            "phase": "Succeeded" if succeeded else "Failed",
            "containerStatuses": [{
                "name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": "Completed" if succeeded else "Error"}},
            }],
        }  # fmt: skip
        self.logs[path] = lines

    def _environment(self, pod: dict, container: dict) -> dict[str, str]:
        """The container's env as the kubelet builds it: `envFrom` Secrets, then `env` (which wins)."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        env = {}
        for source in container.get("envFrom") or []:
            env.update(self._secret(namespace, source["secretRef"]["name"], name))
        for var in container.get("env") or []:
            if "valueFrom" in var:
                ref = var["valueFrom"]["secretKeyRef"]
                values = self._secret(namespace, ref["name"], name)
                if ref["key"] not in values:
                    raise AssertionError(f"Pod {name}: Secret {ref['name']} has no key {ref['key']}: "
                                         "the kubelet would not start the container")  # fmt: skip
                env[var["name"]] = values[ref["key"]]
            else:
                env[var["name"]] = var.get("value", "")
        return env

    def _secret(self, namespace: str, secret: str, pod: str) -> dict[str, str]:
        obj = self.objects.get(f"/api/v1/namespaces/{namespace}/secrets/{secret}")
        if obj is None:
            raise AssertionError(f"Pod {pod}: no Secret {secret} in namespace {namespace}")
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

    def _log(self, path: str, query: dict) -> list[str]:
        lines = self.logs.get(path, [])
        if query.get("tailLines"):
            lines = lines[-int(query["tailLines"]):]
        if query.get("timestamps", "").lower() == "true":
            lines = [f"{(_CLOCK + timedelta(microseconds=i)).strftime('%Y-%m-%dT%H:%M:%S.%fZ')} {line}"
                     for i, line in enumerate(lines)]  # fmt: skip
        return lines


def as_sent(obj: dict) -> dict:
    """`obj` without what the API server added to it (its status and server-set metadata)."""
    sent = {k: v for k, v in obj.items() if k != "status"}
    sent["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in _SERVER_METADATA}
    return sent


def _selector(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if item)


def _field(obj: dict, dotted: str):
    for part in dotted.split("."):
        obj = (obj or {}).get(part)
    return obj


class _Response:
    """urllib3's response, as far as the kubernetes client reads it; `stream()` is what a caller that
    asked for the raw response (`_preload_content=False`, as a log follower does) iterates."""

    def __init__(self, status: int, chunks: list[bytes], content_type: str):
        self.status = status
        self.reason = HTTPStatus(status).phrase
        self.chunks = chunks
        self.data = b"".join(chunks)
        self.headers = {"content-type": content_type}

    @classmethod
    def json(cls, status: int, body: dict) -> _Response:
        return cls(status, [json.dumps(body).encode()], "application/json")

    @classmethod
    def text(cls, status: int, lines: list[str]) -> _Response:
        return cls(status, [f"{line}\n".encode() for line in lines], "text/plain")

    def getheaders(self) -> dict:
        return self.headers

    def getheader(self, name: str, default=None):
        return self.headers.get(name.lower(), default)

    def stream(self, *_, **__):
        return iter(self.chunks)

    def __iter__(self):
        return iter(self.chunks)

    def release_conn(self) -> None:
        pass


# ---------------------------------------------------------------------------------------- RBAC


def documents_by_kind(path: Path) -> dict[str, dict]:
    """The manifests of a YAML file by kind (an RBAC file holds one ServiceAccount, Role, RoleBinding)."""
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text()) if d}


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    """What a Role grants: (API group, resource) -> the verbs of every rule naming them."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs.setdefault((group, resource), set()).update(rule["verbs"])
    return verbs
