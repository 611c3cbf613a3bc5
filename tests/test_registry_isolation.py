"""The registry a process talks to is the state folder's (or the server the user chose), never one left
behind by an earlier state folder in the same process."""

from __future__ import annotations

import os

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

