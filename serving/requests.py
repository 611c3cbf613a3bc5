"""Open Inference Protocol (V2) request bodies for a frame of feature rows."""

from __future__ import annotations

import math

import polars as pl


def v2_request(frame: pl.DataFrame, numeric: list[str], categorical: list[str]) -> dict:
    """Numeric features as FP64 (null for a missing value), categoricals as strings."""
    inputs = []
    rows = frame.height
    for name in numeric:
        values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
                  for v in frame[name].to_list()]
        inputs.append({"name": name, "datatype": "FP64", "shape": [rows, 1], "data": values})
    for name in categorical:
        inputs.append({"name": name, "datatype": "BYTES", "shape": [rows, 1], "data": frame[name].to_list(),
                       "parameters": {"content_type": "str"}})
    return {"inputs": inputs, "parameters": {"content_type": "pd"}}


def predictions(response: dict) -> list[float]:
    return [float(v) for v in response["outputs"][0]["data"]]
