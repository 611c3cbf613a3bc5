"""The whole logged model is what is hashed and verified before anything loads it: a one-byte change
to its code/ or a replaced python_model.pkl is refused by the serving runtime and the local server
before MLflow unpickles it."""

from __future__ import annotations

import asyncio
import pickle
import shutil

import numpy as np
import polars as pl
import pytest
from mlserver.settings import ModelParameters, ModelSettings

from conftest import log_lightgbm_model
from resources.deployment.model_server import ArtifactRejected, LocalModelServer
from serving.runtime import AssayMLflowRuntime, ModelRefused
from training.artifacts import ArtifactMismatch, check_model_folder, model_sha256
from training.tabular import FeatureSet

FEATURES = FeatureSet(numeric=["signal"], categorical=["city"], target="target", task="binary_classification")


class _WritesMarker:
    """Unpickling this runs code: it creates the marker file (what a hostile python_model.pkl would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A LightGBM model logged as training logs it (Assay's pyfunc, its code, signature, example)."""
    folder = tmp_path_factory.mktemp("logged")
    rng = np.random.default_rng(0)
    rows = 600
    signal = rng.normal(size=rows)
    frame = pl.DataFrame({"signal": signal, "city": rng.choice(["oslo", "lima"], size=rows).tolist(),
                          "target": (signal + rng.normal(size=rows) > 0).astype(np.int32)})
    return log_lightgbm_model(folder, frame, FEATURES)


@pytest.fixture
def copy(logged, tmp_path):
    """A fresh copy of the logged model and the hash it had when logged."""
    target = tmp_path / "model"
    shutil.copytree(logged, target)
    return target, model_sha256(logged)


def _runtime(folder, expected) -> AssayMLflowRuntime:
    extra = {} if expected is None else {"assay_model_sha256": expected}
    return AssayMLflowRuntime(ModelSettings(name="m", implementation=AssayMLflowRuntime,
                                            parameters=ModelParameters(uri=str(folder), version="1", extra=extra)))


def _code_file(folder):
    return folder / "code" / "training" / "pyfunc.py"


def test_the_runtime_loads_a_model_whose_files_hash_as_logged_and_leaves_them_unchanged(copy):
    folder, expected = copy
    runtime = _runtime(folder, expected)
    assert asyncio.run(runtime.load())
    assert model_sha256(folder) == expected  # no bytecode or other file written into the verified folder


def test_a_one_byte_change_to_the_logged_code_is_refused_by_the_runtime(copy):
    folder, expected = copy
    code = _code_file(folder)
    code.write_bytes(code.read_bytes() + b"#")
    with pytest.raises(ModelRefused, match="refusing to load"):
        asyncio.run(_runtime(folder, expected).load())


def test_a_replaced_python_model_pickle_is_never_unpickled(copy, tmp_path):
    folder, expected = copy
    marker = tmp_path / "unpickled"
    (folder / "python_model.pkl").write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(ModelRefused, match="refusing to load"):
        asyncio.run(_runtime(folder, expected).load())
    assert not marker.exists()
    # The pickle is live: loading it without the check would have run it.
    pickle.loads((folder / "python_model.pkl").read_bytes())
    assert marker.exists()


def test_a_model_without_an_expected_hash_in_its_settings_is_refused(copy):
    folder, _ = copy
    with pytest.raises(ModelRefused, match="no assay.model_sha256 recorded"):
        asyncio.run(_runtime(folder, None).load())


def test_the_local_server_refuses_to_stage_a_model_with_a_changed_code_file(copy, tmp_path):
    folder, expected = copy
    server = LocalModelServer(root=str(tmp_path / "serving"))
    _code_file(folder).write_bytes(_code_file(folder).read_bytes().replace(b"def ", b"def  ", 1))
    with pytest.raises(ArtifactRejected, match="refusing to serve"):
        server.stage("m", "1", folder, expected)
    assert not (tmp_path / "serving" / "models" / "m-v1").exists()


def test_staging_writes_the_expected_hash_for_the_runtime_to_check(copy, tmp_path):
    folder, expected = copy
    server = LocalModelServer(root=str(tmp_path / "serving"))
    staged = server.stage("m", "1", folder, expected)
    settings = ModelSettings.parse_file(str(staged / "model-settings.json"))
    assert settings.parameters.extra == {"assay_model_sha256": expected}
    check_model_folder(staged / "artifact", expected, "staged")
    (staged / "artifact" / "MLmodel").write_text((staged / "artifact" / "MLmodel").read_text() + "\n")
    with pytest.raises(ArtifactMismatch):
        check_model_folder(staged / "artifact", expected, "staged")
