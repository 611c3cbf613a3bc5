"""Model families (LightGBM, PyTorch): they learn, their payloads are byte-deterministic, and the
saved, loaded and MLflow-served models predict exactly what the trained one does."""

from __future__ import annotations

import functools
import json
import types
from datetime import datetime, timedelta

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.metrics import mean_squared_error, roc_auc_score

from assay.settings import REPO_ROOT
from training import lightgbm_family, plots, torch_family
from training.pyfunc import AssayPyfunc, pip_requirements
from training.tabular import FeatureSet, load_model

FAMILIES = {"lightgbm": lightgbm_family, "torch": torch_family}
TASKS = ["binary_classification", "regression"]
CASES = [(family, task) for family in FAMILIES for task in TASKS]
CITY_EFFECT = {"paris": 1.2, "oslo": -1.2, "lima": 0.6, "kyiv": -0.6, "rome": 0.0}
# Categorical columns deliberately not in alphabetical order: payload JSON is key-sorted, and a
# model must still encode columns in the feature set's order after loading.
FEATURES = {
    task: FeatureSet(numeric=["signal", "noise", "count"], categorical=["segment", "city"], target="target", task=task)
    for task in TASKS
}


def synthetic_frame(task: str, rows: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Rows in time order whose target depends on one numeric and one categorical column, with
    nulls in both kinds of column and a city in the last rows that the first rows never show."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    city = rng.choice(list(CITY_EFFECT), size=rows)
    score = 1.5 * signal + np.array([CITY_EFFECT[c] for c in city])
    if task == "binary_classification":
        target = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(np.int32)
    else:
        target = 10.0 + 3.0 * score + rng.normal(scale=1.0, size=rows)
    late = np.arange(rows) >= int(rows * 2 / 3)
    city = np.where(late & (rng.random(rows) < 0.05), "zurich", city)
    return pl.DataFrame(
        {
            "entity": [f"row-{i}" for i in range(rows)],
            "timestamp": [datetime(2013, 1, 1) + timedelta(minutes=10 * i) for i in range(rows)],
            "signal": np.where(rng.random(rows) < 0.05, None, signal).tolist(),
            "noise": rng.normal(size=rows),
            "count": rng.integers(0, 50, size=rows),
            "segment": np.where(rng.random(rows) < 0.1, None, rng.choice(["a", "b", "c"], size=rows)).tolist(),
            "city": city.tolist(),
            "target": target,
        },
        schema_overrides={"signal": pl.Float64, "segment": pl.String},
    )


@functools.cache
def splits(task: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Train, validation and held-out rows, split by time."""
    frame = synthetic_frame(task)
    return frame[:2000], frame[2000:2500], frame[2500:]


@functools.cache
def trained(family: str, task: str):
    train, valid, _ = splits(task)
    return FAMILIES[family].train(train, valid, FEATURES[task], seed=7)


def payload_bytes(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize(("family", "task"), CASES)
def test_each_family_beats_a_trivial_baseline_on_held_out_rows(family, task):
    _, _, test = splits(task)
    y = test.get_column("target").to_numpy().astype(float)
    predicted = trained(family, task).predict(test)
    if task == "binary_classification":
        assert roc_auc_score(y, predicted) > 0.7
    else:
        assert mean_squared_error(y, predicted) ** 0.5 < y.std()


@pytest.mark.parametrize(("family", "task"), CASES)
def test_predictions_are_one_float_per_row(family, task):
    _, _, test = splits(task)
    predicted = trained(family, task).predict(test)
    assert predicted.shape == (test.height,)
    assert predicted.dtype == np.float64
    assert np.isfinite(predicted).all()
    if task == "binary_classification":
        assert ((predicted >= 0) & (predicted <= 1)).all()


@pytest.mark.parametrize(("family", "task"), CASES)
def test_saving_twice_writes_byte_identical_files(family, task, tmp_path):
    model = trained(family, task)
    model.save(tmp_path / "first")
    model.save(tmp_path / "second")
    first = payload_bytes(tmp_path / "first")
    assert "family.json" in first and "preprocessing.json" in first
    assert first == payload_bytes(tmp_path / "second")


@pytest.mark.parametrize(("family", "task"), CASES)
def test_training_again_with_the_same_seed_writes_the_same_payload(family, task, tmp_path):
    train, valid, _ = splits(task)
    trained(family, task).save(tmp_path / "first")
    FAMILIES[family].train(train, valid, FEATURES[task], seed=7).save(tmp_path / "again")
    assert payload_bytes(tmp_path / "first") == payload_bytes(tmp_path / "again")


@pytest.mark.parametrize(("family", "task"), CASES)
def test_a_loaded_payload_predicts_exactly_like_the_trained_model(family, task, tmp_path):
    _, _, test = splits(task)
    model = trained(family, task)
    model.save(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.family == family
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))
    assert loaded.feature_importance() == model.feature_importance()


@pytest.mark.parametrize(("family", "task"), CASES)
def test_the_mlflow_pyfunc_predicts_exactly_like_the_trained_model(family, task, tmp_path):
    _, _, test = splits(task)
    model = trained(family, task)
    model.save(tmp_path / "payload")
    mlflow.pyfunc.save_model(
        path=tmp_path / "pyfunc",
        python_model=AssayPyfunc(),
        artifacts={"payload": str(tmp_path / "payload")},
        code_paths=[str(REPO_ROOT / "training")],
        pip_requirements=pip_requirements(family),  # given, so mlflow skips inferring them in a subprocess
    )
    served = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"))
    inputs = test.select(FEATURES[task].inputs).to_pandas()
    np.testing.assert_array_equal(np.asarray(served.predict(inputs)), model.predict(test))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_pyfunc_scores_rows_with_nulls_unseen_categories_and_extra_columns(family, tmp_path):
    """What a serving request looks like once MLServer has turned its JSON into pandas."""
    trained(family, "binary_classification").save(tmp_path)
    pyfunc = AssayPyfunc()
    pyfunc.load_context(types.SimpleNamespace(artifacts={"payload": str(tmp_path)}))
    rows = pd.DataFrame(
        {
            "signal": [0.5, None, np.nan],
            "noise": [1, 2, 3],
            "count": [None, None, None],
            "segment": [None, "a", None],
            "city": ["paris", None, "atlantis"],
            "request_id": ["x", "y", "z"],
        }
    )
    predicted = pyfunc.predict(None, rows)
    assert predicted.shape == (3,)
    assert ((predicted > 0) & (predicted < 1)).all()


@pytest.mark.parametrize(("family", "task"), CASES)
def test_predict_columns_gives_exactly_what_predict_gives_for_the_same_rows(family, task):
    """The serving fast path: plain columns as a V2 request carries them (None for a missing value,
    categories as strings, some never seen in training), one row or many, extra columns ignored."""
    _, _, test = splits(task)
    model = trained(family, task)
    rows = test.head(200)
    columns = {name: rows[name].to_list() for name in FEATURES[task].inputs} | {"request_id": ["x"] * rows.height}
    assert None in columns["signal"] and None in columns["segment"] and "zurich" in columns["city"]
    np.testing.assert_array_equal(model.predict_columns(columns), model.predict(rows))
    one = {name: values[:1] for name, values in columns.items()}
    np.testing.assert_array_equal(model.predict_columns(one), model.predict(rows.head(1)))
    with pytest.raises(KeyError, match="city"):
        model.predict_columns({name: values for name, values in columns.items() if name != "city"})
    with pytest.raises(ValueError, match="noise"):
        model.predict_columns(columns | {"noise": columns["noise"][:-1]})


@pytest.mark.parametrize(("family", "task"), CASES)
def test_feature_importance_covers_every_input_and_favours_the_signal(family, task):
    importance = trained(family, task).feature_importance()
    assert list(importance) == FEATURES[task].inputs
    assert all(value >= 0 for value in importance.values())
    assert sum(importance.values()) == pytest.approx(1.0)
    assert importance["signal"] > importance["noise"]


@pytest.mark.parametrize(("family", "task"), CASES)
def test_params_record_how_training_stopped(family, task):
    params = trained(family, task).params
    assert params["seed"] == 7
    if family == "lightgbm":
        assert 1 <= params["best_iteration"] <= params["max_rounds"]
    else:
        assert 1 <= params["best_epoch"] <= params["epochs_run"] <= params["max_epochs"]
        assert params["device"] in ("cpu", "cuda")
        assert params["seconds_per_epoch"] > 0


def test_a_frame_without_an_input_column_is_refused_by_name():
    _, _, test = splits("regression")
    with pytest.raises(KeyError, match="city"):
        trained("lightgbm", "regression").predict(test.drop("city"))


def test_a_payload_of_an_unknown_family_is_refused(tmp_path):
    (tmp_path / "family.json").write_text(json.dumps({"family": "xgboost", "format": 1}))
    with pytest.raises(ValueError, match="xgboost"):
        load_model(tmp_path)


def test_each_plot_writes_a_non_empty_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=500)
    probabilities = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)
    values = rng.normal(size=500)
    written = [
        plots.roc_curve(labels, probabilities, tmp_path / "roc.png"),
        plots.precision_recall_curve(labels, probabilities, tmp_path / "pr.png"),
        plots.calibration_curve(labels, probabilities, tmp_path / "calibration.png"),
        plots.residuals(values, values + rng.normal(size=500), tmp_path / "residuals.png"),
        plots.feature_importance({f"feature_{i}": float(i) for i in range(30)}, tmp_path / "importance.png"),
    ]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert path.stat().st_size > 1000
