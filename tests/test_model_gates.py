"""Model gates as pure functions: each has a case that must fail it."""

from __future__ import annotations

import numpy as np
import polars as pl

from training.evaluation import (
    calibration_gate,
    expected_calibration_error,
    floor_gate,
    leakage_gate,
    metrics,
    no_regression_gate,
    slice_parity_gate,
    slice_table,
)

RNG = np.random.default_rng(7)
GATES = {"min_roc_auc": 0.6, "min_pr_auc": 0.25, "max_rmse": 4.0, "max_mae": 3.0}


def _classification(n=4000, signal=2.0):
    x = RNG.normal(size=n)
    y = (RNG.random(n) < 1 / (1 + np.exp(-signal * x))).astype(float)
    p = 1 / (1 + np.exp(-signal * x))
    return y, p


def test_a_useful_classifier_passes_the_floor_and_chance_fails_it():
    y, p = _classification()
    assert floor_gate(metrics(y, p, "binary_classification"), "binary_classification", GATES).passed
    chance = floor_gate(metrics(y, RNG.random(len(y)), "binary_classification"), "binary_classification", GATES)
    assert not chance.passed and "below the floor" in chance.description


def test_a_regressor_above_the_error_floor_fails():
    y = RNG.normal(50, 10, size=500)
    assert floor_gate(metrics(y, y + RNG.normal(0, 1, 500), "regression"), "regression", GATES).passed
    assert not floor_gate(metrics(y, y + RNG.normal(0, 8, 500), "regression"), "regression", GATES).passed


def test_the_first_model_passes_no_regression_and_says_why():
    gate = no_regression_gate(0.7, None, "binary_classification", 0.01, None)
    assert gate.passed and "no champion yet" in gate.description


def test_a_weaker_challenger_fails_no_regression_beyond_the_tolerance():
    assert not no_regression_gate(0.68, 0.70, "binary_classification", 0.01, "3").passed
    assert no_regression_gate(0.695, 0.70, "binary_classification", 0.01, "3").passed
    assert not no_regression_gate(3.5, 3.0, "regression", 0.05, "2").passed  # RMSE: lower is better


def test_a_model_bad_on_one_origin_fails_slice_parity_but_small_slices_are_ignored():
    y, p = _classification(n=6000)
    origin = np.array(["EWR", "JFK", "LGA"])[RNG.integers(0, 3, size=len(y))]
    broken = p.copy()
    broken[origin == "EWR"] = RNG.random((origin == "EWR").sum())
    holdout = pl.DataFrame({"origin": origin})
    failing = slice_parity_gate(slice_table(holdout, y, broken, ["origin"], "binary_classification"),
                                "binary_classification", 0.15, 200)
    assert not failing.passed and "EWR" in failing.description
    assert not slice_parity_gate(slice_table(holdout, y, broken, ["origin"], "binary_classification"),
                                 "binary_classification", 0.15, 100_000).metadata["gaps"]


def test_a_regressor_bad_on_one_origin_names_it_the_worst_slice_not_the_best():
    y = RNG.normal(50, 10, size=3000)
    origin = np.array(["EWR", "JFK", "LGA"])[RNG.integers(0, 3, size=len(y))]
    p = y + RNG.normal(0, 1, size=len(y))
    p[origin == "EWR"] += RNG.normal(0, 6, size=(origin == "EWR").sum())  # RMSE: higher is worse
    table = slice_table(pl.DataFrame({"origin": origin}), y, p, ["origin"], "regression")
    gate = slice_parity_gate(table, "regression", 1.5, 50)
    assert not gate.passed
    assert gate.metadata["gaps"]["origin"]["worst"] == "EWR" and gate.metadata["gaps"]["origin"]["best"] != "EWR"
    assert gate.metadata["gaps"]["origin"]["gap"] > 1.5
    assert "worst EWR" in gate.description


def test_a_slice_column_with_fewer_than_two_large_slices_is_reported_as_not_judged():
    y, p = _classification(n=2000)
    holdout = pl.DataFrame({"origin": np.where(np.arange(len(y)) < 1950, "EWR", "JFK"),
                            "carrier": np.array(["UA", "DL"])[RNG.integers(0, 2, size=len(y))]})
    gate = slice_parity_gate(slice_table(holdout, y, p, ["origin", "carrier"], "binary_classification"),
                             "binary_classification", 0.5, 100)
    assert gate.passed
    assert "origin: not judged (1 slice(s) of >= 100 rows" in gate.description
    assert "origin" in gate.metadata["not_judged"] and "carrier" in gate.metadata["gaps"]
    assert "carrier" not in gate.metadata["not_judged"]


def test_overconfident_probabilities_fail_calibration():
    y, p = _classification()
    assert expected_calibration_error(y, p) < 0.03
    sharpened = np.where(p > 0.5, 0.99, 0.01)
    gate = calibration_gate(metrics(y, sharpened, "binary_classification"), "binary_classification", 0.08)
    assert not gate.passed


def test_a_feature_carrying_the_outcome_fails_leakage_with_the_reason():
    y, _ = _classification()
    scores = metrics(y, y * 0.98 + 0.01, "binary_classification")
    gate = leakage_gate(["a", "b"], "is_late", [], scores, "binary_classification", 0.97)
    assert not gate.passed and "implausibly high" in gate.description
    named = leakage_gate(["a", "dep_delay"], "is_late", ["dep_delay"], {"roc_auc": 0.7}, "binary_classification", 0.97)
    assert not named.passed and "dep_delay" in named.description
    assert not leakage_gate(["is_late"], "is_late", [], {"roc_auc": 0.7}, "binary_classification", 0.97).passed
