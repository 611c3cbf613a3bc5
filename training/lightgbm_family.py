"""Gradient-boosted trees (LightGBM): the strong, cheap baseline for tabular data.

Categorical columns go in as LightGBM categoricals coded by a vocabulary learned from the training
rows (code 0: null or unseen). Boosting stops early on the validation rows. Training is
deterministic: fixed seed, fixed thread count and LightGBM's `deterministic` mode, so the same data
gives a byte-identical `model.txt`.

Payload: `model.txt` (LightGBM's text format, trimmed to the best iteration),
`preprocessing.json` (feature set, vocabularies, hyperparameters) and the `family.json` manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from training.tabular import (
    FeatureSet,
    Vocabulary,
    categorical_codes,
    column_arrays,
    fit_vocabularies,
    importance_shares,
    numeric_matrix,
    read_json,
    target_vector,
    vocabularies_from_dict,
    vocabularies_to_dict,
    vocabulary_lookups,
    write_json,
    write_manifest,
)

FAMILY = "lightgbm"
MODEL_FILE = "model.txt"
PREPROCESSING_FILE = "preprocessing.json"

# One thread: results do not depend on the machine, and candidates trained side by side (or tests run
# with pytest -n 2) do not oversubscribe the cores, which makes OpenMP spin and slows training up to 10x.
NUM_THREADS = 1
MAX_ROUNDS = 1000
EARLY_STOPPING_ROUNDS = 50
# Modest trees and a moderate learning rate: under a second for ~20k rows.
HYPERPARAMETERS: dict[str, object] = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10.0,
    "min_data_per_group": 50,
    "max_bin": 255,
}
OBJECTIVES = {"binary_classification": ("binary", "binary_logloss"), "regression": ("regression", "l2")}
# Regression leaves fit a linear model instead of a constant: plain trees cannot predict outside the
# training range, which a shifted holdout period needs (next-hour temperature: RMSE 3.9 -> 1.8).
TASK_HYPERPARAMETERS: dict[str, dict[str, object]] = {"binary_classification": {}, "regression": {"linear_tree": True}}


class LightGBMModel:
    """A trained booster plus the vocabularies that turn a frame into its input matrix."""

    family = FAMILY

    def __init__(self, booster: lgb.Booster, features: FeatureSet, vocabularies: dict[str, Vocabulary], params: dict[str, object]):
        self.booster = booster
        self.features = features
        self.vocabularies = vocabularies
        self.params = params
        self._lookups = vocabulary_lookups(vocabularies)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return self._scores(_matrix(frame, self.features, self.vocabularies))

    def predict_columns(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """What `predict` returns for the same rows given as plain columns, without building a frame
        (the serving fast path): numeric columns as numbers (None or NaN: missing), categorical ones
        as strings (None: missing). Extra columns are ignored."""
        return self._scores(_column_matrix(columns, self.features, self._lookups))

    def _scores(self, matrix: np.ndarray) -> np.ndarray:
        scores = self.booster.predict(matrix, num_threads=NUM_THREADS)
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def feature_importance(self) -> dict[str, float]:
        """Total split gain per input column, as shares."""
        gains = self.booster.feature_importance(importance_type="gain")
        return importance_shares(dict(zip(self.features.inputs, gains.tolist(), strict=True)))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(self.booster.model_to_string(), encoding="utf-8")
        write_json(
            folder / PREPROCESSING_FILE,
            {"features": self.features.to_dict(), "vocabularies": vocabularies_to_dict(self.vocabularies), "params": self.params},
        )
        write_manifest(folder, FAMILY, self.features)


def train(train: pl.DataFrame, valid: pl.DataFrame, features: FeatureSet, seed: int) -> LightGBMModel:
    """Fit on `train`, stopping early on `valid`; returns the model as it will load from its payload."""
    if train.is_empty() or valid.is_empty():
        raise ValueError(f"needs training and validation rows, got {train.height} and {valid.height}")
    vocabularies = fit_vocabularies(train, features.categorical)
    objective, metric = OBJECTIVES[features.task]
    params = {
        **HYPERPARAMETERS,
        **TASK_HYPERPARAMETERS[features.task],
        "objective": objective,
        "metric": metric,
        "seed": seed,
        "num_threads": NUM_THREADS,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    categorical_indices = list(range(len(features.numeric), len(features.inputs)))

    def dataset(frame: pl.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            _matrix(frame, features, vocabularies),
            label=target_vector(frame, features),
            feature_name=features.inputs,
            categorical_feature=categorical_indices,
            reference=reference,
            free_raw_data=True,
        )

    train_set = dataset(train)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[dataset(valid, reference=train_set)],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
    )
    best_iteration = booster.best_iteration or booster.current_iteration()
    # Rebuild from the text we will save, so the returned model predicts exactly as the loaded one.
    trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_iteration))
    logged = {key: value for key, value in params.items() if key != "verbosity"}
    logged.update(max_rounds=MAX_ROUNDS, early_stopping_rounds=EARLY_STOPPING_ROUNDS, best_iteration=best_iteration)
    return LightGBMModel(trimmed, features, vocabularies, logged)


def load(folder: Path) -> LightGBMModel:
    folder = Path(folder)
    state = read_json(folder / PREPROCESSING_FILE)
    booster = lgb.Booster(model_str=(folder / MODEL_FILE).read_text(encoding="utf-8"))
    return LightGBMModel(booster, FeatureSet.from_dict(state["features"]), vocabularies_from_dict(state["vocabularies"]), state["params"])


def _matrix(frame: pl.DataFrame, features: FeatureSet, vocabularies: dict[str, Vocabulary]) -> np.ndarray:
    """Numeric columns (NaN = missing) then categorical codes, as one float64 matrix."""
    codes = categorical_codes(frame, features.categorical, vocabularies).astype(np.float64)
    return np.hstack([numeric_matrix(frame, features.numeric), codes])


def _column_matrix(columns: Mapping[str, Sequence], features: FeatureSet, lookups: dict[str, dict[str, int]]) -> np.ndarray:
    """`_matrix` of plain columns: numeric values then category codes, as one float64 matrix."""
    values, codes = column_arrays(columns, features, lookups)
    return np.hstack([values, codes.astype(np.float64)])
