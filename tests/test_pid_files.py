"""A pid file names the state folder and the process it was written for; no other process is signalled."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from assay.processes import alive
from resources.deployment.model_server import LocalModelServer


@pytest.fixture
def server_process():
    """A real process in its own session, standing where a model server would (stopping signals its group)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def _server(root) -> LocalModelServer:
    root.mkdir(parents=True, exist_ok=True)
    return LocalModelServer(root=str(root))


def test_stopping_the_servers_of_a_copied_state_never_signals_the_originals(tmp_path, server_process):
    original = _server(tmp_path / "original" / "serving" / "staging")
    original.record(server_process.pid)
    subprocess.run(["cp", "-a", str(tmp_path / "original"), str(tmp_path / "copy")], check=True)
    copy = _server(tmp_path / "copy" / "serving" / "staging")

    assert copy.pid() is None
    assert copy.stop() is False
    assert server_process.poll() is None
    assert not (tmp_path / "copy" / "serving" / "staging" / "mlserver.pid").exists()
    assert original.pid() == server_process.pid
    assert original.stop() is True
    assert not alive(server_process.pid)


def test_a_pid_reused_by_another_process_is_not_taken_for_the_server(tmp_path, server_process):
    server = _server(tmp_path / "serving" / "staging")
    server.record(server_process.pid)
    pid_file = tmp_path / "serving" / "staging" / "mlserver.pid"
    recorded = json.loads(pid_file.read_text())
    pid_file.write_text(json.dumps({**recorded, "started_at": recorded["started_at"] - 3600}))  # an earlier owner

    assert server.pid() is None
    assert server.stop() is False
    assert server_process.poll() is None
