"""`make ui`'s path: the Dagster webserver and daemon start over the state and serve the graph."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

from assay.settings import REPO_ROOT
from conftest import venv_bin


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_assay_ui_serves_every_use_case_graph(assay_home, tmp_path):
    port = _free_port()
    log = open(tmp_path / "ui.log", "w")
    server = subprocess.Popen([venv_bin("assay"), "ui", "--port", str(port)], cwd=REPO_ROOT,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, nodes = time.monotonic() + 120, None
        while time.monotonic() < deadline and nodes is None:
            assert server.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            try:
                nodes = _graphql(port, "{ assetNodes { assetKey { path } groupName } }")["data"]["assetNodes"]
            except (OSError, KeyError, TypeError):
                time.sleep(1)
        assert nodes is not None, "the webserver did not answer within 120 s"
        groups = {tuple(n["assetKey"]["path"]): n["groupName"] for n in nodes}
        assert groups[("flights", "raw_flights")] == "flights_ingest"
        assert groups[("flights", "flight_features")] == "flights_features"
        assert groups[("weather", "training_set")] == "weather_training"
        assert (assay_home.dagster_home / "dagster.yaml").exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
