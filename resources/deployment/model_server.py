"""Local serving: MLServer as its own process on loopback, serving registered model versions.

The process is managed the way users expect of a server: one per state folder (a pid file naming
the folder and the process, so a copied folder's file never signals the original's server), a busy
port or a stale pid file is a clear error and never a silent second server, and what it serves is
generated from the registry. Before a version is served the whole model folder is hashed and compared
with the `assay.model_sha256` recorded at training: a swapped payload, an edited code/ file or a replaced
python_model.pkl is refused. The expected hash also goes into the model's settings
(`parameters.extra.assay_model_sha256`), and the runtime hashes the folder again before MLflow unpickles
anything (serving/runtime.py): a copy changed after staging is not loaded either.
Each model is served under its use case's `serving:` limits and partitions (assay/spec.py), written
into its model settings for the runtime (serving/validation.py); the body-size limit is the server's,
the largest of its models'.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg

from assay.processes import alive as _alive
from assay.processes import is_same_process, started_at
from assay.settings import REPO_ROOT, usecases_dir
from assay.spec import Serving, load_spec
from resources.deployment.deployer import Served
from serving.inference_log import LOG_DIR_ENV
from serving.server import MAX_BODY_SETTING
from training.artifacts import ArtifactMismatch, check_model_folder
from training.tags import MODEL_SHA256_TAG

RUNTIME = "serving.runtime.AssayMLflowRuntime"
EXPECTED_SHA256_PARAMETER = "assay_model_sha256"  # in model-settings parameters.extra; read by the runtime


class ServingError(RuntimeError):
    pass


class ArtifactRejected(ServingError):
    pass


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def serving_parameters(name: str) -> dict:
    """The model-settings parameters that hold `name`'s requests to its spec: its `serving:` limits
    and its partitions (the days an event time may name); none for a model with no spec here."""
    path = usecases_dir() / f"{name}.yaml"
    if not path.exists():
        return {}
    spec = load_spec(path)
    return {"assay_serving": spec.serving.model_dump(mode="json"),
            "assay_partitions": [spec.partitions.start.isoformat(), spec.partitions.end.isoformat()]}


class LocalModelServer(dg.ConfigurableResource):
    """MLServer on loopback, its repository under the state folder (`serving/`)."""

    root: str
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    metrics_port: int = 8082
    ready_timeout_seconds: float = 90

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def inference_log(self) -> Path:
        """Where the server appends every prediction it serves (serving/inference_log.py)."""
        return Path(self.root) / "inference_log"

    @property
    def _pid_file(self) -> Path:
        return Path(self.root) / "mlserver.pid"

    def record(self, pid: int) -> None:
        """Write the pid file of this folder's server: its pid, its start time and this folder, so the
        file identifies the process even after the folder is copied or the pid is reused."""
        self._pid_file.write_text(json.dumps({"pid": pid, "started_at": started_at(pid),
                                              "root": str(Path(self.root).resolve()), "url": self.url}) + "\n")

    def pid(self) -> int | None:
        """The server's pid, or None. A pid file whose process is gone, whose pid now names another
        process, or that was written for another folder (a copied state) is stale and is removed:
        only this folder's own server is ever signalled."""
        if not self._pid_file.exists():
            return None
        text = self._pid_file.read_text()
        try:
            recorded = json.loads(text)
        except json.JSONDecodeError:  # a server started before pid files said whose they are
            recorded = {"pid": int(text.split()[0]), "started_at": None, "root": None}
        pid = int(recorded["pid"])
        ours = (recorded["root"] == str(Path(self.root).resolve()) if recorded["root"] is not None
                else f"start {Path(self.root)}" in _cmdline(pid))
        if ours and is_same_process(pid, recorded["started_at"]):
            return pid
        self._pid_file.unlink()
        return None

    # --- the model repository -------------------------------------------------------------------

    @staticmethod
    def verify(name: str, version: str, artifact_dir: Path, expected_sha256: str | None) -> None:
        """Refuse a model folder whose files do not hash to the whole-model sha256 recorded at training."""
        try:
            check_model_folder(Path(artifact_dir), expected_sha256, f"{name} v{version}")
        except ArtifactMismatch as mismatch:
            raise ArtifactRejected(f"{mismatch}; refusing to serve it") from None

    def stage(self, name: str, version: str, artifact_dir: Path, expected_sha256: str | None) -> Path:
        """Copy a downloaded version into the repository after checking its whole-model hash; the
        hash travels in its settings for the runtime to check again at load."""
        self.verify(name, version, artifact_dir, expected_sha256)
        target = Path(self.root) / "models" / f"{name}-v{version}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(artifact_dir, target / "artifact")
        self.write_model_settings(name, version, expected_sha256)
        return target

    def write_model_settings(self, name: str, version: str, expected_sha256: str) -> None:
        """A staged version's MLServer settings: the hash the runtime checks before loading, and its
        use case's limits as the spec says now."""
        target = Path(self.root) / "models" / f"{name}-v{version}"
        (target / "model-settings.json").write_text(json.dumps({
            "name": name,
            "implementation": RUNTIME,
            # Relative to this file (MLServer resolves it so): a copied state serves its own copy.
            "parameters": {"uri": "artifact", "version": str(version), **serving_parameters(name),
                           "extra": {EXPECTED_SHA256_PARAMETER: expected_sha256}},
        }, indent=2))

    def staged(self) -> list[tuple[str, str]]:
        return sorted(tuple(folder.name.rsplit("-v", 1)) for folder in (Path(self.root) / "models").glob("*-v*"))

    def unstage_all_but(self, keep: set[tuple[str, str]]) -> None:
        for folder in (Path(self.root) / "models").glob("*-v*"):
            name, _, version = folder.name.rpartition("-v")
            if (name, version) not in keep:
                shutil.rmtree(folder)

    def serve(self, registry, versions: list[tuple[str, str]]) -> list[Served]:
        """Serve exactly these registered versions: download, verify, stage, (re)start, check ready."""
        import tempfile

        for name, version in versions:
            recorded = registry.version(name, version).tags.get(MODEL_SHA256_TAG)
            staged = Path(self.root) / "models" / f"{name}-v{version}"
            if staged.exists():  # staged before: its copy is checked again, not trusted
                self.verify(name, version, staged / "artifact", recorded)
                self.write_model_settings(name, version, recorded)  # the spec's limits may have changed since
                continue
            with tempfile.TemporaryDirectory() as scratch:
                self.stage(name, version, registry.download(name, version, Path(scratch)), recorded)
        self.unstage_all_but(set(versions))
        self.restart()
        return self.served()

    # --- the process ---------------------------------------------------------------------------

    def start(self) -> int:
        if self.pid() is not None:
            raise ServingError(f"a model server is already running (pid {self.pid()}, {self.url}); "
                               "`assay serve stop` first")
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            if not _port_free(self.host, port):
                raise ServingError(f"port {port} on {self.host} is busy: another process holds it, "
                                   "so no model server was started (choose other ports or stop it)")
        root = Path(self.root)
        (root / "models").mkdir(parents=True, exist_ok=True)
        max_body = self.max_body_bytes()
        (root / "settings.json").write_text(json.dumps({
            "host": self.host, "http_port": self.http_port, "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "parallel_workers": 0,  # inference in the server process: 1.6 ms p50 instead of 7 ms here
            "load_models_at_startup": True,
            "grpc_max_message_length": max_body,
            MAX_BODY_SETTING: max_body,  # serving/server.py: 413 before a body is parsed
        }, indent=2))
        log = open(root / "mlserver.log", "ab")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               LOG_DIR_ENV: str(self.inference_log)}
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.server", str(root)],
            cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        self.record(process.pid)
        self.wait_ready(process)
        return process.pid

    def max_body_bytes(self) -> int:
        """The largest `serving.max_body_bytes` of the staged models (the default with none)."""
        limits = [Serving.model_validate(json.loads(path.read_text())["parameters"].get("assay_serving") or {})
                  .max_body_bytes for path in (Path(self.root) / "models").glob("*/model-settings.json")]
        return max(limits, default=Serving().max_body_bytes)

    def wait_ready(self, process: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + self.ready_timeout_seconds
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ServingError(f"the model server exited with {process.returncode}; "
                                   f"see {Path(self.root) / 'mlserver.log'}")
            if self._get("/v2/health/ready") == 200:
                return
            time.sleep(0.25)
        raise ServingError(f"the model server was not ready after {self.ready_timeout_seconds:.0f}s")

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self._pid_file.unlink(missing_ok=True)
        return True

    def restart(self) -> int:
        """Reload after the repository changed (a new champion): MLServer loads models at start."""
        self.stop()
        return self.start()

    # --- requests ------------------------------------------------------------------------------

    def _get(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    def infer(self, name: str, body: dict, version: str | None = None) -> tuple[int, dict]:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                return error.code, json.loads(text)
            except json.JSONDecodeError:
                return error.code, {"error": text}

    def served(self) -> list[Served]:
        request = urllib.request.Request(self.url + "/v2/repository/index", data=b"{}",
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            index = json.loads(response.read())
        return [Served(m["name"], m.get("version") or "", self.url) for m in index if m.get("state") == "READY"]
