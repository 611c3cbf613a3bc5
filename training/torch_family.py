"""A tabular neural network (PyTorch): the family that can use a GPU.

Each categorical column gets an embedding (code 0: null, unseen or rare in training). Numeric
columns are standardized with the training mean and standard deviation; a null becomes the mean
plus a null-indicator input. An MLP sits on top. The loss is BCE-with-logits for classification and
MSE on the standardized target for regression; training stops when the validation loss has not
improved for `patience` epochs and keeps the best epoch's weights.

Training is seeded and uses deterministic algorithms, on CUDA when available. The returned model
always lives on the CPU, the same as one loaded from its payload, so the two predict identically.

Payload: `state.pt` (the network's state_dict), `preprocessing.json` (feature set, vocabularies,
numeric and target statistics, architecture, hyperparameters, permutation importance) and the
`family.json` manifest.
"""

from __future__ import annotations

import copy
import io
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

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

FAMILY = "torch"
STATE_FILE = "state.pt"
PREPROCESSING_FILE = "preprocessing.json"

HYPERPARAMETERS: dict[str, object] = {
    "hidden_sizes": [128, 64],
    "dropout": 0.1,
    "max_embedding_dim": 16,
    "min_category_count": 5,
    "learning_rate": 0.002,
    "weight_decay": 0.00001,
    "batch_size": 512,
    "max_epochs": 30,
    "patience": 5,
}
CLIP = 10.0  # standardized numeric values are clipped to [-CLIP, CLIP]: outliers cannot swamp the net
IMPORTANCE_ROWS = 2000
IMPORTANCE_REPEATS = 2
PREDICT_BATCH = 65536
# CPU training uses one thread: small batches gain little from more, results do not depend on the
# machine, and candidates trained side by side do not oversubscribe the cores (4x slower on 2 cores).
CPU_THREADS = 1


class TabularNet(nn.Module):
    """Embeddings for the categorical codes, concatenated with the numeric inputs, into an MLP."""

    def __init__(self, numeric_inputs: int, cardinalities: list[int], embedding_dims: list[int], hidden_sizes: list[int], dropout: float):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, d) for n, d in zip(cardinalities, embedding_dims, strict=True))
        layers: list[nn.Module] = []
        width = numeric_inputs + sum(embedding_dims)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        embedded = [embedding(codes[:, i]) for i, embedding in enumerate(self.embeddings)]
        return self.mlp(torch.cat([numeric, *embedded], dim=1)).squeeze(1)


@dataclass(frozen=True)
class Encoder:
    """Preprocessing state learned from the training rows: frame -> (numeric inputs, category codes)."""

    features: FeatureSet
    vocabularies: dict[str, Vocabulary]
    means: list[float]
    stds: list[float]
    target_mean: float  # regression target standardization; 0 and 1 for classification
    target_std: float

    @classmethod
    def fit(cls, train: pl.DataFrame, features: FeatureSet, min_category_count: int) -> Encoder:
        values = numeric_matrix(train, features.numeric)
        means, stds = [], []
        for column in values.T:
            present = column[~np.isnan(column)]
            mean = float(present.mean()) if present.size else 0.0
            std = float(present.std()) if present.size else 0.0
            means.append(mean)
            stds.append(std if std > 1e-12 else 1.0)
        target_mean, target_std = 0.0, 1.0
        if features.task == "regression":
            target = target_vector(train, features)
            target_mean, target_std = float(target.mean()), float(target.std()) or 1.0
        vocabularies = fit_vocabularies(train, features.categorical, min_category_count)
        return cls(features, vocabularies, means, stds, target_mean, target_std)

    def encode(self, frame: pl.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized numerics (nulls at 0, the mean) followed by one null indicator per numeric column."""
        return self.tensors(numeric_matrix(frame, self.features.numeric),
                            categorical_codes(frame, self.features.categorical, self.vocabularies))

    def tensors(self, values: np.ndarray, codes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's inputs from the numeric matrix (NaN = missing) and the category codes."""
        missing = np.isnan(values)
        scaled = (values - np.asarray(self.means)) / np.asarray(self.stds)
        scaled = np.clip(np.where(missing, 0.0, scaled), -CLIP, CLIP)
        numeric = np.hstack([scaled, missing.astype(np.float64)]).astype(np.float32)
        return torch.from_numpy(numeric), torch.from_numpy(codes)

    def scaled_target(self, frame: pl.DataFrame) -> torch.Tensor:
        target = (target_vector(frame, self.features) - self.target_mean) / self.target_std
        return torch.from_numpy(target.astype(np.float32))

    def to_dict(self) -> dict[str, object]:
        return {
            "features": self.features.to_dict(),
            "vocabularies": vocabularies_to_dict(self.vocabularies),
            "means": self.means,
            "stds": self.stds,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Encoder:
        return cls(
            features=FeatureSet.from_dict(data["features"]),
            vocabularies=vocabularies_from_dict(data["vocabularies"]),
            means=[float(v) for v in data["means"]],
            stds=[float(v) for v in data["stds"]],
            target_mean=float(data["target_mean"]),
            target_std=float(data["target_std"]),
        )


class TorchModel:
    """A trained TabularNet on the CPU, its encoder, and what the payload records beside it."""

    family = FAMILY

    def __init__(self, net: TabularNet, encoder: Encoder, architecture: dict, params: dict[str, object], importance: dict[str, float]):
        self.net = net.cpu().eval()
        self.encoder = encoder
        self.architecture = architecture
        self.params = params
        self._importance = importance
        self._lookups = vocabulary_lookups(encoder.vocabularies)

    @property
    def features(self) -> FeatureSet:
        return self.encoder.features

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return self._scores(*self.encoder.encode(frame))

    def predict_columns(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """What `predict` returns for the same rows given as plain columns, without building a frame
        (the serving fast path): numeric columns as numbers (None or NaN: missing), categorical ones
        as strings (None: missing). Extra columns are ignored."""
        return self._scores(*self.encoder.tensors(*column_arrays(columns, self.features, self._lookups)))

    def _scores(self, numeric: torch.Tensor, codes: torch.Tensor) -> np.ndarray:
        raw = _infer(self.net, numeric, codes).double().numpy()
        if self.features.task == "binary_classification":
            return 1.0 / (1.0 + np.exp(-raw))
        return raw * self.encoder.target_std + self.encoder.target_mean

    def feature_importance(self) -> dict[str, float]:
        """Permutation importance measured at training time (increase in validation loss), as shares."""
        return dict(self._importance)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # Through a buffer: torch names the archive's inner folder after the file, so this keeps bytes independent of it.
        buffer = io.BytesIO()
        torch.save(self.net.state_dict(), buffer)
        (folder / STATE_FILE).write_bytes(buffer.getvalue())
        write_json(
            folder / PREPROCESSING_FILE,
            {
                "encoder": self.encoder.to_dict(),
                "architecture": self.architecture,
                "params": _payload_params(self.params),
                "feature_importance": self._importance,
            },
        )
        write_manifest(folder, FAMILY, self.features)


def train(train: pl.DataFrame, valid: pl.DataFrame, features: FeatureSet, seed: int,
          device: str | None = None) -> TorchModel:
    """Fit on `train`, early-stopping on `valid` loss; returns the best epoch's model, on the CPU.

    `device` defaults to CUDA when present; the benchmark names it to time one against the other."""
    if train.is_empty() or valid.is_empty():
        raise ValueError(f"needs training and validation rows, got {train.height} and {valid.height}")
    hp = HYPERPARAMETERS
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with _reproducible(seed):
        encoder = Encoder.fit(train, features, int(hp["min_category_count"]))
        architecture = {
            "numeric_inputs": 2 * len(features.numeric),
            "cardinalities": [encoder.vocabularies[c].size for c in features.categorical],
            "embedding_dims": [min(int(hp["max_embedding_dim"]), (encoder.vocabularies[c].size + 1) // 2) for c in features.categorical],
            "hidden_sizes": list(hp["hidden_sizes"]),
            "dropout": float(hp["dropout"]),
        }
        net = TabularNet(**architecture).to(device)
        loss_fn = nn.BCEWithLogitsLoss() if features.task == "binary_classification" else nn.MSELoss()
        optimizer = torch.optim.AdamW(net.parameters(), lr=float(hp["learning_rate"]), weight_decay=float(hp["weight_decay"]))
        train_x = [t.to(device) for t in (*encoder.encode(train), encoder.scaled_target(train))]
        valid_x = [t.to(device) for t in (*encoder.encode(valid), encoder.scaled_target(valid))]
        shuffle = torch.Generator().manual_seed(seed)
        batch_size = int(hp["batch_size"])

        best_loss, best_epoch, best_state, epochs_run = float("inf"), 0, None, 0
        started = time.perf_counter()
        for epoch in range(1, int(hp["max_epochs"]) + 1):
            net.train()
            order = torch.randperm(train.height, generator=shuffle).to(device)
            for start in range(0, train.height, batch_size):
                rows = order[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(train_x[0][rows], train_x[1][rows]), train_x[2][rows])
                loss.backward()
                optimizer.step()
            epochs_run = epoch
            valid_loss = float(loss_fn(_forward(net, valid_x[0], valid_x[1]), valid_x[2]))
            if valid_loss < best_loss - 1e-6:
                best_loss, best_epoch = valid_loss, epoch
                best_state = {name: value.detach().to("cpu", copy=True) for name, value in net.state_dict().items()}
            elif epoch - best_epoch >= int(hp["patience"]):
                break
        seconds = time.perf_counter() - started
        if best_state is None:
            raise RuntimeError(f"validation loss was never finite in {epochs_run} epochs; check the inputs for extreme values")

        final = TabularNet(**architecture)
        final.load_state_dict(best_state)
        final.eval()
        importance = _permutation_importance(final, encoder, valid if valid.height >= 200 else train, loss_fn, seed)
    params = {
        **copy.deepcopy(hp),
        "seed": seed,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "best_valid_loss": best_loss,
        "seconds_per_epoch": round(seconds / max(epochs_run, 1), 4),
        "device": str(device),
    }
    return TorchModel(final, encoder, architecture, params, importance)


def load(folder: Path) -> TorchModel:
    folder = Path(folder)
    state = read_json(folder / PREPROCESSING_FILE)
    net = TabularNet(**state["architecture"])
    net.load_state_dict(torch.load(io.BytesIO((folder / STATE_FILE).read_bytes()), map_location="cpu", weights_only=True))
    return TorchModel(net, Encoder.from_dict(state["encoder"]), state["architecture"], state["params"], state["feature_importance"])


def _payload_params(params: dict[str, object]) -> dict[str, object]:
    """Params without the run-specific ones (timing, device), so retraining on the same data and
    hardware reproduces the payload byte for byte."""
    return {key: value for key, value in params.items() if key not in ("seconds_per_epoch", "device")}


def _forward(net: nn.Module, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Raw outputs (logits, or the standardized value) for all rows, in batches, without gradients."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        outputs = [net(numeric[i : i + PREDICT_BATCH], codes[i : i + PREDICT_BATCH]) for i in range(0, numeric.shape[0], PREDICT_BATCH)]
    net.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, device=numeric.device)


def _infer(net: nn.Module, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """`_forward` for a network that stays in eval mode (a TorchModel's): the same outputs, without
    switching modes on every call, which costs more than the network itself on a single row."""
    with torch.inference_mode():
        if numeric.shape[0] <= PREDICT_BATCH:
            return net(numeric, codes)
        return torch.cat([net(numeric[i : i + PREDICT_BATCH], codes[i : i + PREDICT_BATCH])
                          for i in range(0, numeric.shape[0], PREDICT_BATCH)])


def _permutation_importance(net: TabularNet, encoder: Encoder, frame: pl.DataFrame, loss_fn: nn.Module, seed: int) -> dict[str, float]:
    """Mean loss increase when one input column is shuffled, on at most IMPORTANCE_ROWS rows.

    A numeric column is shuffled together with its null indicator, so that the column's whole
    signal is removed. Cheap (a forward pass per column and repeat) and seeded.
    """
    rng = np.random.default_rng(seed)
    if frame.height > IMPORTANCE_ROWS:
        frame = frame[np.sort(rng.choice(frame.height, IMPORTANCE_ROWS, replace=False)).tolist()]
    numeric, codes = encoder.encode(frame)
    target = encoder.scaled_target(frame)
    base = float(loss_fn(_forward(net, numeric, codes), target))
    n_numeric = len(encoder.features.numeric)
    increases: dict[str, float] = {}
    for j, name in enumerate(encoder.features.inputs):
        total = 0.0
        for _ in range(IMPORTANCE_REPEATS):
            order = torch.from_numpy(rng.permutation(frame.height))
            shuffled_numeric, shuffled_codes = numeric.clone(), codes.clone()
            if j < n_numeric:
                shuffled_numeric[:, [j, n_numeric + j]] = numeric[order][:, [j, n_numeric + j]]
            else:
                shuffled_codes[:, j - n_numeric] = codes[order, j - n_numeric]
            total += float(loss_fn(_forward(net, shuffled_numeric, shuffled_codes), target)) - base
        increases[name] = total / IMPORTANCE_REPEATS
    return importance_shares(increases)


@contextmanager
def _reproducible(seed: int):
    """Seed torch and numpy, turn on deterministic algorithms and fix the CPU thread count,
    restoring torch's global settings after."""
    # cuBLAS needs this before its first call to be deterministic; harmless on the CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous_deterministic, previous_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)
