"""The registry a process talks to is the state folder's (or the server the user chose), never one left
behind by an earlier state folder in the same process."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess

from assay.settings import StateLayout, mlflow_tracking_uri
from resources.registry import ModelRegistry


def test_using_one_registry_does_not_redirect_the_next_state_folder_to_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = StateLayout(tmp_path / "first"), StateLayout(tmp_path / "second")
    for layout in (first, second):
        layout.mlflow.mkdir(parents=True)

    ModelRegistry(tracking_uri=mlflow_tracking_uri(first)).client().search_registered_models()

    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow_tracking_uri(second) == f"sqlite:///{second.mlflow / 'mlflow.db'}"


def test_a_tracking_server_chosen_in_the_environment_stays_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.com")
    layout = StateLayout(tmp_path)
    layout.mlflow.mkdir(parents=True)

    ModelRegistry(tracking_uri=f"sqlite:///{layout.mlflow / 'mlflow.db'}").client()

    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.example.com"
    assert mlflow_tracking_uri(layout) == "http://mlflow.example.com"



def _state_with_a_registered_model(layout: StateLayout) -> ModelRegistry:
    import mlflow

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    layout.mlflow.mkdir(parents=True)
    registry = ModelRegistry(tracking_uri=mlflow_tracking_uri(layout), artifact_root=str(layout.mlflow / "artifacts"))
    registry.ensure_experiment("echo")
    client = registry.client()
    experiment = client.get_experiment_by_name("echo").experiment_id
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    mlflow.register_model(info.model_uri, "echo")
    return registry


def test_a_copied_state_downloads_its_models_from_the_copy_even_once_the_original_is_gone(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    original, copy = StateLayout(tmp_path / "original"), StateLayout(tmp_path / "copy")
    _state_with_a_registered_model(original)
    subprocess.run(["cp", "-a", str(original.root), str(copy.root)], check=True)
    shutil.rmtree(original.mlflow / "artifacts")

    registry = ModelRegistry(tracking_uri=mlflow_tracking_uri(copy), artifact_root=str(copy.mlflow / "artifacts"))
    downloaded = registry.download("echo", "1", tmp_path / "download")

    assert (downloaded / "MLmodel").exists()
    with sqlite3.connect(copy.mlflow / "mlflow.db") as store:  # what MLflow's client does not show
        (stored,) = store.execute("SELECT storage_location FROM model_versions").fetchone()
    assert stored.startswith(str(copy.mlflow / "artifacts"))
    with mlflow.start_run(experiment_id=registry.client().get_experiment_by_name("echo").experiment_id) as run:
        mlflow.log_text("written by the copy", "note.txt")
    assert (copy.mlflow / "artifacts" / "echo" / run.info.run_id / "artifacts" / "note.txt").exists()
    assert not (original.mlflow / "artifacts").exists()


def test_a_copied_state_serves_its_own_staged_model_files(tmp_path):
    """The model settings name their artifact relative to themselves, as MLServer resolves them: the copy's
    server loads the copy's files, and the original's may be gone."""
    import asyncio
    import json

    from mlserver.settings import ModelSettings
    from mlserver.utils import get_model_uri

    from resources.deployment.model_server import LocalModelServer
    from training.artifacts import model_sha256

    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "code" / "wrapper.py").write_text("VALUE = 1\n")
    original = LocalModelServer(root=str(tmp_path / "original" / "serving"))
    original.stage("echo", "1", model, model_sha256(model))
    subprocess.run(["cp", "-a", str(tmp_path / "original"), str(tmp_path / "copy")], check=True)
    shutil.rmtree(tmp_path / "original")

    settings_file = tmp_path / "copy" / "serving" / "models" / "echo-v1" / "model-settings.json"
    settings = ModelSettings.parse_file(str(settings_file))
    resolved = asyncio.run(get_model_uri(settings))

    assert resolved == str(settings_file.parent / "artifact")
    assert model_sha256(settings_file.parent / "artifact") == json.loads(settings_file.read_text())["parameters"]["extra"]["assay_model_sha256"]


def test_a_copied_state_trains_on_its_own_snapshot_not_the_path_recorded_in_the_event(tmp_path, monkeypatch, weather_spec):
    from resources.training.trainer import training_job

    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "copy"))
    recorded = {"snapshot": str(tmp_path / "original" / "snapshots" / "weather" / "training_set" / "abc.parquet"),
                "sha256": "abc", "window_start": "2013-01-01", "window_end": "2013-01-14"}

    extras = training_job(weather_spec, "lightgbm", recorded, None, {}).to_extras()

    assert extras["snapshot"] == str((tmp_path / "copy").resolve() / "snapshots" / "weather" / "training_set" / "abc.parquet")
