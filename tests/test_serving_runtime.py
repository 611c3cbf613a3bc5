"""Assay's MLServer runtime, in process: its direct path answers what the registered model predicts
offline, a malformed request is a 422 naming the field, and a model the direct path cannot vouch for
is served the stock way."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import mlflow.pyfunc
import numpy as np
import polars as pl
import pytest
import torch
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest

from assay.settings import REPO_ROOT
from serving.requests import predictions, v2_request
from serving.runtime import AssayMLflowRuntime, RequestRejected, decode_columns
from training import lightgbm_family, torch_family
from training.artifacts import model_sha256
from training.pyfunc import AssayPyfunc, pip_requirements
from training.tabular import FeatureSet
from training.train import model_input, model_signature

FAMILIES = {"lightgbm": lightgbm_family, "torch": torch_family}
MODEL_CLASSES = {"lightgbm": lightgbm_family.LightGBMModel, "torch": torch_family.TorchModel}
FEATURES = FeatureSet(numeric=["signal", "count"], categorical=["city", "segment"], target="target",
                      task="binary_classification")
NUMERIC, CATEGORICAL = FEATURES.numeric, FEATURES.categorical


def frame(rows: int, seed: int) -> pl.DataFrame:
    """Rows whose target depends on `signal` and `city`, with nulls in every input column and, from
    seed 1 on, a city that training never saw."""
    rng = np.random.default_rng(seed)
    cities = ["paris", "oslo", "lima"] + (["zurich"] if seed else [])
    city = rng.choice(cities, size=rows)
    signal = rng.normal(size=rows)
    score = 1.5 * signal + np.where(city == "paris", 1.0, -0.5)
    return pl.DataFrame({
        "timestamp": [datetime(2013, 1, 1) + timedelta(minutes=i) for i in range(rows)],
        "signal": np.where(rng.random(rows) < 0.1, None, signal).tolist(),
        "count": np.where(rng.random(rows) < 0.1, None, rng.integers(0, 50, size=rows)).tolist(),
        "city": np.where(rng.random(rows) < 0.1, None, city).tolist(),
        "segment": np.where(rng.random(rows) < 0.3, None, rng.choice(["a", "b"], size=rows)).tolist(),
        "target": (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(np.int32),
    }, schema_overrides={"signal": pl.Float64, "count": pl.Int64, "city": pl.String, "segment": pl.String})


@pytest.fixture(scope="module", params=list(FAMILIES))
def logged(request, tmp_path_factory):
    """A model of each family, logged as training logs it: Assay's pyfunc, its code, signature and example."""
    family = request.param
    folder = tmp_path_factory.mktemp(f"logged-{family}")
    train = frame(1200, seed=0)
    model = FAMILIES[family].train(train[:1000], train[1000:], FEATURES, seed=3)
    model.save(folder / "payload")
    mlflow.pyfunc.save_model(
        path=folder / "pyfunc", python_model=AssayPyfunc(), artifacts={"payload": str(folder / "payload")},
        code_paths=[str(REPO_ROOT / "training")], input_example=model_input(train.tail(5), FEATURES),
        signature=model_signature(FEATURES, FEATURES.task), pip_requirements=pip_requirements(family),
    )
    return family, folder / "pyfunc"


@pytest.fixture
def keep_torch_threads():
    """Loading a torch model sets the process's torch threads to one; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def held_out() -> pl.DataFrame:
    return frame(60, seed=1)


def load(path) -> AssayMLflowRuntime:
    expected = {"assay_model_sha256": model_sha256(path)}  # the runtime refuses a model it cannot verify
    runtime = AssayMLflowRuntime(ModelSettings(name="m", implementation=AssayMLflowRuntime,
                                               parameters=ModelParameters(uri=str(path), version="1", extra=expected)))
    asyncio.run(runtime.load())
    return runtime


def infer(runtime: AssayMLflowRuntime, body: dict) -> np.ndarray:
    response = asyncio.run(runtime.predict(InferenceRequest.model_validate(body)))
    return np.asarray(predictions(response.model_dump()))


def offline(path, rows: pl.DataFrame) -> np.ndarray:
    return np.asarray(mlflow.pyfunc.load_model(str(path)).predict(model_input(rows, FEATURES)), dtype=float)


def test_the_direct_path_answers_what_the_registered_model_predicts_offline(logged, held_out, keep_torch_threads):
    family, path = logged
    runtime = load(path)
    assert runtime._direct is not None and runtime._direct.__name__ == "predict_columns"
    assert held_out["city"].to_list().count("zurich") and held_out["signal"].null_count()
    expected = offline(path, held_out)
    np.testing.assert_allclose(infer(runtime, v2_request(held_out, NUMERIC, CATEGORICAL)), expected, rtol=0, atol=1e-9)
    one_by_one = [infer(runtime, v2_request(held_out[i : i + 1], NUMERIC, CATEGORICAL))[0] for i in range(held_out.height)]
    np.testing.assert_allclose(one_by_one, expected, rtol=0, atol=1e-6)
    if family == "torch":
        assert torch.get_num_threads() == 1


@pytest.mark.parametrize("break_it, expected", [
    (lambda b: b["inputs"].pop(0), "missing feature 'signal'"),
    (lambda b: b["inputs"].append({"name": "dep_delay", "datatype": "FP64", "shape": [2, 1], "data": [3.0, 4.0]}),
     "unknown feature 'dep_delay'"),
    (lambda b: b["inputs"][2].update(datatype="FP64", data=[1.0, 2.0]), "feature 'city' has datatype FP64"),
    (lambda b: b["inputs"][0].update(datatype="BYTES", data=["warm", "cold"]), "feature 'signal' has datatype BYTES"),
    (lambda b: b["inputs"][1].update(shape=[3, 1], data=[1.0, 2.0, 3.0]), "disagree on the number of rows"),
    (lambda b: b["inputs"][3].update(data=["a"]), "feature 'segment' has 1 values for shape [2, 1]"),
    (lambda b: b["inputs"][0].update(data=["warm", 1.0]), "feature 'signal' has values that are not numbers"),
])
def test_a_malformed_request_is_a_422_naming_the_field_and_the_runtime_keeps_serving(
    logged, held_out, keep_torch_threads, break_it, expected
):
    _, path = logged
    runtime = load(path)
    body = v2_request(held_out.head(2), NUMERIC, CATEGORICAL)
    break_it(body)
    with pytest.raises(RequestRejected, match=expected.replace("[", r"\[").replace("]", r"\]")) as rejected:
        asyncio.run(runtime.predict(InferenceRequest.model_validate(body)))
    assert rejected.value.status_code == 422
    np.testing.assert_allclose(infer(runtime, v2_request(held_out.head(2), NUMERIC, CATEGORICAL)),
                               offline(path, held_out.head(2)), rtol=0, atol=1e-9)


def test_a_model_whose_direct_path_disagrees_at_load_is_served_the_stock_way(
    logged, held_out, keep_torch_threads, monkeypatch
):
    family, path = logged
    honest = MODEL_CLASSES[family].predict_columns
    monkeypatch.setattr(MODEL_CLASSES[family], "predict_columns", lambda self, columns: honest(self, columns) + 1e-4)
    runtime = load(path)
    assert runtime._direct is None
    np.testing.assert_allclose(infer(runtime, v2_request(held_out, NUMERIC, CATEGORICAL)), offline(path, held_out),
                               rtol=0, atol=1e-9)


def test_a_model_logged_before_predict_columns_existed_is_served_directly_from_a_polars_frame(
    logged, held_out, keep_torch_threads, monkeypatch
):
    family, path = logged
    monkeypatch.delattr(MODEL_CLASSES[family], "predict_columns")
    runtime = load(path)
    assert runtime._direct is not None and runtime._direct.__name__ == "predict_frame"
    np.testing.assert_allclose(infer(runtime, v2_request(held_out, NUMERIC, CATEGORICAL)), offline(path, held_out),
                               rtol=0, atol=1e-9)


class Halves(mlflow.pyfunc.PythonModel):
    """Not Assay's wrapper: there is no model under it to call directly."""

    def predict(self, context, model_input, params=None):
        return np.full(len(model_input), 0.5)


def test_a_pyfunc_model_that_is_not_assays_is_served_the_stock_way(held_out, tmp_path):
    mlflow.pyfunc.save_model(path=tmp_path / "halves", python_model=Halves(),
                             signature=model_signature(FEATURES, FEATURES.task), pip_requirements=["mlflow"])
    runtime = load(tmp_path / "halves")
    assert runtime._direct is None
    np.testing.assert_array_equal(infer(runtime, v2_request(held_out.head(3), NUMERIC, CATEGORICAL)), [0.5] * 3)
    body = v2_request(held_out.head(3), NUMERIC, CATEGORICAL)
    body["inputs"].pop(0)
    with pytest.raises(RequestRejected, match="missing feature 'signal'"):
        asyncio.run(runtime.predict(InferenceRequest.model_validate(body)))


def test_an_input_in_a_content_type_the_direct_path_does_not_decode_is_left_to_the_stock_codecs(held_out):
    types = {name: "double" for name in NUMERIC} | {name: "string" for name in CATEGORICAL}
    body = v2_request(held_out.head(2), NUMERIC, CATEGORICAL)
    columns = decode_columns(InferenceRequest.model_validate(body), types)
    assert list(columns) == NUMERIC + CATEGORICAL and columns["city"] == held_out["city"].head(2).to_list()
    body["inputs"][2]["parameters"] = {"content_type": "base64"}
    assert decode_columns(InferenceRequest.model_validate(body), types) is None


def test_fp32_inputs_are_rounded_as_the_stock_codec_rounds_them(logged, held_out, keep_torch_threads):
    _, path = logged
    runtime = load(path)
    body = v2_request(held_out.head(5), NUMERIC, CATEGORICAL)
    body["inputs"][0].update(datatype="FP32", data=[None if v is None else v + 1e-3 for v in body["inputs"][0]["data"]])
    columns = decode_columns(InferenceRequest.model_validate(body), runtime._types)
    expected = np.asarray([np.nan if v is None else v for v in body["inputs"][0]["data"]], dtype=np.float32)
    np.testing.assert_array_equal(columns["signal"], expected.astype(np.float64))
    direct = infer(runtime, body)
    runtime._direct = None
    np.testing.assert_array_equal(direct, infer(runtime, body))


def test_integers_for_a_double_feature_are_served_as_the_same_doubles(logged, held_out, keep_torch_threads):
    """The signature check accepts INT64 for a double; MLflow's own schema check on the stock path refuses it."""
    _, path = logged
    runtime = load(path)
    rows = held_out.filter(pl.col("count").is_not_null()).head(5)
    body = v2_request(rows, NUMERIC, CATEGORICAL)
    as_integers = v2_request(rows, NUMERIC, CATEGORICAL)
    as_integers["inputs"][1].update(datatype="INT64", data=[int(v) for v in as_integers["inputs"][1]["data"]])
    np.testing.assert_array_equal(infer(runtime, as_integers), infer(runtime, body))


def test_data_null_is_refused_before_the_model_answers_and_nothing_is_logged(
    logged, held_out, keep_torch_threads, tmp_path, monkeypatch
):
    """It used to be answered, and then the inference log raised on it: a 500."""
    _, path = logged
    monkeypatch.setenv("ASSAY_INFERENCE_LOG", str(tmp_path))
    runtime = load(path)
    body = v2_request(held_out.head(2), NUMERIC, CATEGORICAL)
    body["inputs"][0]["data"] = None
    with pytest.raises(RequestRejected, match="feature 'signal': data must be a list") as rejected:
        asyncio.run(runtime.predict(InferenceRequest.model_validate(body)))
    assert rejected.value.status_code == 422 and not list(tmp_path.rglob("*.jsonl"))
    infer(runtime, v2_request(held_out.head(2), NUMERIC, CATEGORICAL))
    assert len(list(tmp_path.rglob("*.jsonl"))) == 1
