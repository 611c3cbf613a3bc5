"""Serving a registered model with MLServer on loopback: same predictions as offline, safe process."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from harness.replay import replay
from definitions import current_definitions
from harness.runs import materialize_window
from conftest import free_ports
from resources.deployment.model_server import ArtifactRejected, LocalModelServer, ServingError
from serving.requests import predictions, v2_request
from training.tabular import FeatureSet
from training.train import model_input


@pytest.fixture(scope="module")
def champion(assay_home, instance, landing, weather_spec):
    """The weather use case (small) built through its champion."""
    defs = current_definitions()
    days = [(date(2013, 1, 1) + timedelta(days=i)).isoformat() for i in range(10)]
    replay(weather_spec, landing, date(2013, 1, 1), len(days))
    runs = materialize_window(defs, instance, weather_spec, days, through="champion")
    assert all(r.success for r in runs), [(r.what, r.partition) for r in runs if not r.success]
    registry = defs.resources["registry"]
    return registry, registry.alias("weather")


@pytest.fixture(scope="module")
def server(assay_home, champion):
    port = free_ports()
    server = LocalModelServer(root=str(assay_home.serving), http_port=port, grpc_port=port + 1, metrics_port=port + 2)
    registry, version = champion
    server.serve(registry, [("weather", version.version)])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def holdout(champion, weather_spec):
    registry, version = champion
    snapshot = registry.version("weather", version.version).tags["assay.training_set_sha256"]
    path = next(p for p in (registry_root(champion)).rglob(f"{snapshot}.parquet"))
    return pl.read_parquet(path).tail(40)


def registry_root(champion):
    from assay.settings import state

    return state().snapshots / "weather"


def _features(spec) -> FeatureSet:
    f = spec.features
    return FeatureSet(f.columns.numeric, f.columns.categorical, f.target, f.task)


def test_the_served_champion_predicts_what_the_registered_model_predicts_offline(server, champion, holdout, weather_spec):
    import mlflow.pyfunc

    registry, version = champion
    f = weather_spec.features
    status, body = server.infer("weather", v2_request(holdout, f.columns.numeric, f.columns.categorical))
    assert status == 200, body
    offline = mlflow.pyfunc.load_model(version.uri).predict(model_input(holdout, _features(weather_spec)))
    np.testing.assert_allclose(predictions(body), np.asarray(offline, dtype=float), rtol=0, atol=1e-9)
    assert [(s.name, s.version) for s in server.served()] == [("weather", version.version)]


@pytest.mark.parametrize("break_it, expected", [
    (lambda b: b["inputs"].pop(0), "missing feature 'temp'"),
    (lambda b: b["inputs"][0].update(datatype="BYTES", data=["warm"] * b["inputs"][0]["shape"][0]), "datatype BYTES"),
    (lambda b: b["inputs"].append({"name": "dep_delay", "datatype": "FP64", "shape": [1, 1], "data": [3.0]}), "unknown feature"),
])
def test_a_malformed_request_gets_a_4xx_naming_the_field_and_the_server_keeps_serving(
    server, holdout, weather_spec, break_it, expected
):
    f = weather_spec.features
    body = v2_request(holdout.head(3), f.columns.numeric, f.columns.categorical)
    break_it(body)
    status, answer = server.infer("weather", body)
    assert 400 <= status < 500 and expected in str(answer)
    good, _ = server.infer("weather", v2_request(holdout.head(3), f.columns.numeric, f.columns.categorical))
    assert good == 200


def test_a_tampered_artifact_is_refused_before_it_is_served(server, champion, tmp_path):
    registry, version = champion
    downloaded = registry.download("weather", version.version, tmp_path / "download")
    weights = next(p for p in next(downloaded.rglob("payload")).iterdir() if p.name != "family.json")
    weights.write_bytes(weights.read_bytes().replace(b"1", b"2", 1))
    staged_before = sorted(p.name for p in (server_root(server)).iterdir())
    with pytest.raises(ArtifactRejected, match="refusing to serve"):
        server.stage("weather", "999", downloaded, version.tags["assay.artifact_sha256"])
    assert sorted(p.name for p in server_root(server).iterdir()) == staged_before


def server_root(server):
    from pathlib import Path

    return Path(server.root) / "models"


def test_a_second_server_or_a_busy_port_is_a_clear_error(server, assay_home, tmp_path):
    with pytest.raises(ServingError, match="already running"):
        server.start()
    other = LocalModelServer(root=str(tmp_path / "other"), http_port=server.http_port, grpc_port=server.grpc_port,
                             metrics_port=server.metrics_port)
    with pytest.raises(ServingError, match=f"port {server.http_port} .* is busy"):
        other.start()
    assert other.pid() is None


def test_stopping_removes_the_process_and_a_stale_pid_file_is_ignored(assay_home, champion, tmp_path):
    registry, version = champion
    port = free_ports()
    server = LocalModelServer(root=str(tmp_path / "serving"), http_port=port, grpc_port=port + 1, metrics_port=port + 2)
    server.serve(registry, [("weather", version.version)])
    pid = server.pid()
    assert pid and server.stop() and server.pid() is None
    (tmp_path / "serving" / "mlserver.pid").write_text(f"{pid} stale\n")
    assert server.pid() is None and not (tmp_path / "serving" / "mlserver.pid").exists()
    shutil.rmtree(tmp_path / "serving")
