"""The MLflow pyfunc wrapper that serves any family's payload folder, and the pins it is logged with.

Apart from `training.tabular` so that the families, the serving runtime's fast path and a bare GPU
machine can train and predict without importing MLflow (about 2 s, and a large install).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl

from training.tabular import FAMILIES, load_model


def pip_requirements(family: str) -> list[str]:
    """Pinned packages a served model of `family` needs, as installed here (for mlflow's pip_requirements).

    Local version labels are dropped (torch 2.13.0+cpu -> torch==2.13.0) so the pins resolve on PyPI.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {FAMILIES}")
    packages = ["mlflow", "numpy", "pandas", "polars", "pyarrow", family]
    return [f"{package}=={version(package).split('+')[0]}" for package in packages]


class AssayPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper for any family: `artifacts={"payload": <folder written by save()>}`.

    Log it with `code_paths=[<repo>/training]` so the served model imports this package. Inputs are
    pandas DataFrames with the feature columns (extra columns are ignored); the output is the same
    1-D array `TrainedModel.predict` returns.
    """

    def load_context(self, context) -> None:
        self._model = load_model(Path(context.artifacts["payload"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self._model.predict(pl.from_pandas(model_input))
