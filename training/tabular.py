"""What every model family shares: the feature set, the trained-model interface, input encoding
and the payload folder's manifest (MLflow's wrapper around a payload is in `training.pyfunc`).

A payload folder is what a family's `save()` writes: its weights, its preprocessing state and a
manifest (`family.json`) naming the family, so `load_model` needs nothing but the folder. Files are
written byte-deterministically because the platform hashes them to prove that the registered
artifact is the model that was trained and evaluated.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

TASKS = ("binary_classification", "regression")
FAMILIES = ("lightgbm", "torch")
MANIFEST_FILE = "family.json"
PAYLOAD_FORMAT = 1


@dataclass(frozen=True)
class FeatureSet:
    """The model's inputs and target, as declared in the use-case spec."""

    numeric: list[str]
    categorical: list[str]
    target: str
    task: str  # "binary_classification" | "regression"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.inputs:
            raise ValueError("a feature set needs at least one numeric or categorical column")
        duplicated = sorted({c for c in self.inputs if self.inputs.count(c) > 1})
        if duplicated:
            raise ValueError(f"columns listed twice: {duplicated}")
        if self.target in self.inputs:
            raise ValueError(f"the target {self.target!r} is also listed as an input")

    @property
    def inputs(self) -> list[str]:
        """Every input column, numeric first: the order of feature_importance and of the model matrix."""
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, object]:
        return {"numeric": list(self.numeric), "categorical": list(self.categorical), "target": self.target, "task": self.task}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSet:
        return cls(numeric=list(data["numeric"]), categorical=list(data["categorical"]), target=data["target"], task=data["task"])


class TrainedModel(Protocol):
    """A trained model of any family, as the training entrypoint, evaluation and serving see it."""

    family: str
    params: dict[str, object]

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """P(target = 1) for classification, the predicted value for regression: 1-D float64, one per row."""

    def feature_importance(self) -> dict[str, float]:
        """Share of importance per input column: non-negative, summing to 1 (or all 0)."""

    def save(self, folder: Path) -> None:
        """Write the payload files (weights, preprocessing state, manifest), byte-deterministically."""


def load_model(folder: Path) -> TrainedModel:
    """Load a payload folder written by some family's `save()`."""
    folder = Path(folder)
    manifest = read_json(folder / MANIFEST_FILE)
    family = manifest.get("family")
    if family not in FAMILIES:
        raise ValueError(f"{folder / MANIFEST_FILE}: unknown model family {family!r}; known: {FAMILIES}")
    if manifest.get("format") != PAYLOAD_FORMAT:
        raise ValueError(f"{folder / MANIFEST_FILE}: payload format {manifest.get('format')!r}, this code reads {PAYLOAD_FORMAT}")
    # Imported on demand so that serving a LightGBM model never imports torch, and vice versa.
    module = importlib.import_module(f"training.{family}_family")
    return module.load(folder)


def write_manifest(folder: Path, family: str, features: FeatureSet) -> None:
    write_json(Path(folder) / MANIFEST_FILE, {"family": family, "format": PAYLOAD_FORMAT, "features": features.to_dict()})


def write_json(path: Path, data: object) -> None:
    """JSON with sorted keys and a fixed layout, so equal content gives equal bytes."""
    text = json.dumps(data, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=True)
    Path(path).write_text(text + "\n", encoding="utf-8")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Vocabulary:
    """Integer codes for one categorical column.

    Code 0 is reserved for null, for values never seen in training and for values seen fewer than
    `min_count` times (so the model learns what to do with rare values, which is what unseen values
    look like at serving time). Known values get 1..n in sorted order, independent of row order.
    """

    values: tuple[str, ...]

    @classmethod
    def fit(cls, column: pl.Series, min_count: int = 1) -> Vocabulary:
        counts = column.cast(pl.String).drop_nulls().alias("value").value_counts(name="n")
        kept = counts.filter(pl.col("n") >= min_count).get_column("value")
        return cls(values=tuple(sorted(kept.to_list())))

    @property
    def size(self) -> int:
        """Number of codes, including the reserved 0."""
        return len(self.values) + 1

    def encode(self, column: pl.Series) -> np.ndarray:
        mapping = {value: code for code, value in enumerate(self.values, start=1)}
        codes = column.cast(pl.String).replace_strict(mapping, default=0, return_dtype=pl.Int64)
        return codes.to_numpy()


def fit_vocabularies(frame: pl.DataFrame, columns: list[str], min_count: int = 1) -> dict[str, Vocabulary]:
    return {column: Vocabulary.fit(frame.get_column(column), min_count) for column in columns}


def vocabularies_to_dict(vocabularies: dict[str, Vocabulary]) -> dict[str, list[str]]:
    return {column: list(vocabulary.values) for column, vocabulary in vocabularies.items()}


def vocabularies_from_dict(data: dict[str, list[str]]) -> dict[str, Vocabulary]:
    return {column: Vocabulary(values=tuple(values)) for column, values in data.items()}


def require_columns(frame: pl.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"input is missing columns {missing}; it has {frame.columns}")


def numeric_matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """The numeric columns as float64, with NaN wherever a value is null or NaN."""
    require_columns(frame, columns)
    if not columns:
        return np.empty((frame.height, 0), dtype=np.float64)
    values = frame.select(pl.col(c).cast(pl.Float64, strict=True).fill_nan(None) for c in columns)
    return values.to_numpy().astype(np.float64, copy=False).reshape(frame.height, len(columns))


def categorical_codes(frame: pl.DataFrame, columns: list[str], vocabularies: dict[str, Vocabulary]) -> np.ndarray:
    """The categorical `columns`, in that order, as int64 codes (see Vocabulary)."""
    require_columns(frame, columns)
    if not columns:
        return np.empty((frame.height, 0), dtype=np.int64)
    codes = [vocabularies[column].encode(frame.get_column(column)) for column in columns]
    return np.stack(codes, axis=1).astype(np.int64, copy=False)


def target_vector(frame: pl.DataFrame, features: FeatureSet) -> np.ndarray:
    """The target as float64; refuses nulls, and anything but 0/1 for classification."""
    require_columns(frame, [features.target])
    target = frame.get_column(features.target)
    if target.null_count():
        raise ValueError(f"target {features.target!r} has {target.null_count()} null values")
    values = target.cast(pl.Float64).to_numpy().astype(np.float64, copy=False)
    if features.task == "binary_classification" and not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"target {features.target!r} must be 0 or 1 for binary classification")
    if not np.isfinite(values).all():
        raise ValueError(f"target {features.target!r} has non-finite values")
    return values


def importance_shares(raw: dict[str, float]) -> dict[str, float]:
    """Scale non-negative importances to sum to 1, so families measured differently compare on one plot."""
    clipped = {name: max(float(value), 0.0) for name, value in raw.items()}
    total = sum(clipped.values())
    return {name: (value / total if total > 0 else 0.0) for name, value in clipped.items()}


def vocabulary_lookups(vocabularies: dict[str, Vocabulary]) -> dict[str, dict[str, int]]:
    """Value -> code per categorical column, as Vocabulary.encode assigns them (0 for anything else)."""
    return {column: {value: code for code, value in enumerate(v.values, start=1)} for column, v in vocabularies.items()}


def column_arrays(columns: Mapping[str, Sequence], features: FeatureSet,
                  lookups: dict[str, dict[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Plain columns (a served request's) as numeric_matrix and categorical_codes make them of a
    frame: float64 values (NaN = missing) and int64 codes (a non-string value is looked up as its
    string form, as the frame path casts it). The serving fast path: no frame is built."""
    missing = [name for name in features.inputs if name not in columns]
    if missing:
        raise KeyError(f"input is missing columns {missing}; it has {list(columns)}")
    rows = len(columns[features.inputs[0]])
    values = np.empty((rows, len(features.numeric)), dtype=np.float64)
    codes = np.empty((rows, len(features.categorical)), dtype=np.int64)
    for j, name in enumerate(features.numeric):
        column = np.asarray(columns[name], dtype=np.float64).reshape(-1)
        if column.shape[0] != rows:
            raise ValueError(f"column {name!r} has {column.shape[0]} values, {features.inputs[0]!r} has {rows}")
        values[:, j] = column
    for j, name in enumerate(features.categorical):
        lookup, column = lookups[name], columns[name]
        if len(column) != rows:
            raise ValueError(f"column {name!r} has {len(column)} values, {features.inputs[0]!r} has {rows}")
        codes[:, j] = [lookup.get(v if v is None or isinstance(v, str) else str(v), 0) for v in column]
    return values, codes
