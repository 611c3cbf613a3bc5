"""A real Dagster UI for browser tests: the webserver and daemon over a state folder, and headless
Chromium (Debian's package, driven by Playwright) with a screenshot of every step.

Nothing here downloads a browser: Chromium is the one on PATH (`make test` installs Debian's
`chromium` when it is missing and apt is usable). Where there is none, or Playwright is not
installed, `chromium_or_skip` skips the test and says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from assay.settings import REPO_ROOT
from conftest import venv_bin

# Screenshots land here (git-ignored); ASSAY_UI_ARTIFACTS moves them.
ARTIFACTS = Path(os.environ.get("ASSAY_UI_ARTIFACTS", REPO_ROOT / "test-artifacts" / "ui"))
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_or_skip() -> str:
    """The Chromium executable to drive, or a skip that says what is missing."""
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed in this venv: "
                        "`make install` installs it from requirements.lock")
    explicit = os.environ.get("ASSAY_CHROMIUM")
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.skip(f"ASSAY_CHROMIUM={explicit} is not an executable")
        return explicit
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on PATH (looked for chromium, chromium-browser): `make test` installs Debian's "
                "`chromium` when run as root with apt; elsewhere install it, or set ASSAY_CHROMIUM")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop_group(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the whole process group (webserver or daemon, their code servers, run workers and
    trainings), then SIGKILL whatever is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@dataclass
class DagsterUI:
    """`make ui`'s two processes, started one after the other so the sensors can be paused first."""

    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - the child holds it
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-chars:]}"
                         for p in sorted(self.logs.glob("*.log")))

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def start_webserver(self, timeout: float = 240) -> None:
        server = self._start("webserver", [venv_bin("dagster-webserver"), "-w", "workspace.yaml",
                                           "-h", "127.0.0.1", "-p", str(self.port)])
        deadline = time.monotonic() + timeout
        while True:
            assert server.poll() is None, f"the webserver exited ({server.returncode}):\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"the webserver was not ready in {timeout:.0f} s:\n{self.log_tail()}"
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5):
                    pass
                entries = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                                       "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
                entry = entries["workspaceOrError"]["locationEntries"][0]
            except (OSError, KeyError, IndexError, TypeError):
                time.sleep(1)
                continue
            if entry["loadStatus"] == "LOADED":
                error = entry["locationOrLoadError"]
                assert error["__typename"] == "RepositoryLocation", f"the code location failed to load: {error}"
                return
            time.sleep(1)

    def stop_sensors(self) -> list[str]:
        """Pause every sensor, so the daemon runs only what the test launches from the UI (otherwise the
        landing sensor would reload every landed day and the retrain sensor would train on its own)."""
        query = ('{ sensorsOrError(repositorySelector: {repositoryLocationName: "assay", repositoryName: '
                 '"__repository__"}) { ... on Sensors { results { name sensorState { id status } } } } }')
        stopped = []
        for sensor in self.graphql(query)["sensorsOrError"]["results"]:
            result = self.graphql("mutation($id: String) { stopSensor(id: $id) { __typename } }",
                                  {"id": sensor["sensorState"]["id"]})
            assert result["stopSensor"]["__typename"] == "StopSensorMutationResult", result
            stopped.append(sensor["name"])
        still_running = [s["name"] for s in self.graphql(query)["sensorsOrError"]["results"]
                         if s["sensorState"]["status"] != "STOPPED"]
        assert not still_running, f"sensors still running: {still_running}"
        return stopped

    def start_daemon(self) -> None:
        daemon = self._start("daemon", [venv_bin("dagster-daemon"), "run", "-w", "workspace.yaml"])
        time.sleep(1)
        assert daemon.poll() is None, f"the daemon exited ({daemon.returncode}):\n{self.log_tail()}"

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop_group(process)
        self.processes.clear()


class Steps:
    """Names and screenshots each step of a browser session; a failing step fails the test with its
    screenshot's path and the servers' log tails."""

    def __init__(self, page, folder: Path, ui: DagsterUI):
        self.page, self.folder, self.ui = page, folder, ui
        self.count = 0
        self.shots: list[Path] = []
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    @contextlib.contextmanager
    def step(self, name: str):
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        shot = self.folder / f"{self.count:02d}-{slug}.png"
        try:
            yield
        except Exception as error:  # noqa: BLE001 - any failure of a step is reported the same way
            failed = shot.with_name(shot.stem + "-FAILED.png")
            with contextlib.suppress(Exception):
                self.page.screenshot(path=str(failed), full_page=True)
            pytest.fail(f"step {self.count} '{name}' failed; screenshot: {failed}\n"
                        f"url: {self.page.url}\n{type(error).__name__}: {error}\n{self.ui.log_tail(1500)}",
                        pytrace=False)
        self.page.screenshot(path=str(shot))
        self.shots.append(shot)
