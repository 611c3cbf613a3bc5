"""MLServer runtime for Assay's MLflow models: MLServer's MLflow runtime, plus request validation,
plus a direct path that keeps single-row requests in the low milliseconds.

Stock MLServer answers a request with a missing feature or a wrongly typed one with a 500 from deep
inside the model. A caller's mistake should be a 4xx that names the field, and must not look like
a server fault to the latency and error-rate gates; so requests are checked against the model's
signature and the use case's serving limits before the model sees them (serving/validation.py; the
limits and partitions come in the model settings' `assay_serving` and `assay_partitions` parameters,
written by resources/deployment/model_server.py from the spec).

The stock path turns a request into a pandas frame, has MLflow enforce the signature on it, and the
model turns that into polars: about 15 ms for one row on 2 cores, nearly all of it per-call
overhead (the network itself takes 0.2 ms). A request that has passed the checks above needs none
of that: its columns go straight to the model under Assay's pyfunc wrapper (`predict_columns`, or
`predict` on a polars frame for a model logged before that method existed): about 0.6 ms in the
runtime, the rest of a request being MLServer's own. At load, the direct path must give the stock
path's predictions on the model's input example and on rows of nulls and unseen categories, or the
runtime serves through the stock path alone. The registered artifact is unchanged, a normal MLflow
pyfunc model, and its own code (logged with it) serves it either way.

Before anything is loaded the model folder is hashed and compared with the whole-model sha256 in the
model's settings (`parameters.extra.assay_model_sha256`, written by resources/deployment/model_server.py): MLflow's
load unpickles python_model.pkl and imports code/, so a changed or unrecorded folder is refused
before either happens, and the model is not served.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
from mlserver.codecs.utils import DefaultOutputPrefix
from mlserver.errors import MLServerError
from mlserver.logging import logger
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from mlserver_mlflow import MLflowRuntime
from mlserver_mlflow.codecs import TensorDictCodec

from assay.spec import Serving
from serving import inference_log
from serving.validation import RequestRejected, RequestRules
from serving.validation import datatype as _datatype
from serving.validation import flat as _flat
from serving.validation import type_name as _type_name

__all__ = ["AssayMLflowRuntime", "ModelRefused", "RequestRejected", "decode_columns"]

# Per-input content types the direct path decodes exactly as the stock codecs do; any other goes the stock way.
PLAIN_CONTENT_TYPES = {None, "np", "str"}
# The direct path must match the stock path this closely at load (the same model, the same rows).
SELF_CHECK_TOLERANCE = 1e-9


def request_rules(runtime: MLflowRuntime) -> RequestRules:
    """The checks of a loaded model: its signature, and the limits and partitions in its settings."""
    extra = (runtime.settings.parameters.model_extra if runtime.settings.parameters else None) or {}
    partitions = extra.get("assay_partitions")
    outputs = {o.name for o in runtime.outputs or []} | {f"{DefaultOutputPrefix}1"}
    return RequestRules(runtime._signature.inputs if runtime._signature is not None else None,
                        Serving.model_validate(extra.get("assay_serving") or {}),
                        tuple(date.fromisoformat(d) for d in partitions) if partitions else None, outputs)


EXPECTED_SHA256_PARAMETER = "assay_model_sha256"  # resources/deployment/model_server.py writes it; Seldon renders it


class ModelRefused(MLServerError):
    def __init__(self, message: str):
        super().__init__(message, status_code=500)


def _artifacts_module():
    """training/artifacts.py, loaded by file under a private name. Importing it as `training.artifacts`
    would import the repository's `training` package into this process, and the model's unpickling
    would then use that copy instead of the code logged with the model (its code/ folder)."""
    path = Path(__file__).resolve().parents[1] / "training" / "artifacts.py"
    spec = importlib.util.spec_from_file_location("_assay_model_artifacts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the direct path --------------------------------------------------------------------------------

Predict = Callable[[Mapping[str, Sequence]], np.ndarray]


def direct_predictor(pyfunc_model) -> Predict | None:
    """The model under Assay's pyfunc wrapper, called with plain columns; None for any other model
    (its signature must be doubles and strings, as Assay logs them)."""
    try:
        inner = pyfunc_model.unwrap_python_model()._model
    except Exception:  # not a python_function PythonModel, or not Assay's wrapper
        return None
    signature = pyfunc_model.metadata.signature
    if signature is None or any(_type_name(spec) not in ("double", "string") for spec in signature.inputs.inputs):
        return None
    if callable(getattr(inner, "predict_columns", None)):
        return inner.predict_columns
    if not callable(getattr(inner, "predict", None)):
        return None
    import polars as pl  # the wrapper's own dependency: its predict takes a polars frame

    schema = {spec.name: pl.Float64 if _type_name(spec) == "double" else pl.String for spec in signature.inputs.inputs}

    def predict_frame(columns: Mapping[str, Sequence]) -> np.ndarray:
        return inner.predict(pl.DataFrame({name: columns[name] for name in schema}, schema=schema, strict=False))

    return predict_frame


def check_rows(pyfunc_model):
    """Rows the direct path is checked on at load: the logged input example, a row of nulls, and a
    row of zeros with categories no model has seen."""
    import pandas as pd

    inputs = pyfunc_model.metadata.signature.inputs.inputs
    unseen = "(assay: a category no model has seen)"
    synthetic = pd.DataFrame({
        spec.name: [np.nan, 0.0] if _type_name(spec) == "double" else [None, unseen] for spec in inputs
    })
    example = pyfunc_model.input_example
    if isinstance(example, pd.DataFrame) and all(spec.name in example.columns for spec in inputs):
        return pd.concat([example[[spec.name for spec in inputs]], synthetic], ignore_index=True)
    return synthetic


def _plain_columns(frame) -> dict[str, list]:
    """A pandas frame's columns as a request carries them: numbers (None: missing) and strings."""
    columns = {}
    for name in frame.columns:
        values = frame[name].tolist()
        columns[name] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    return columns


def self_check(pyfunc_model, predict: Predict) -> float:
    """The largest difference between the direct path and the stock pyfunc path on check_rows."""
    rows = check_rows(pyfunc_model)
    stock = np.asarray(pyfunc_model.predict(rows), dtype=np.float64).reshape(-1)
    direct = np.asarray(predict(_plain_columns(rows)), dtype=np.float64).reshape(-1)
    if stock.shape != direct.shape:
        return math.inf
    return float(np.max(np.abs(stock - direct), initial=0.0))


def decode_columns(payload: InferenceRequest, types: dict[str, str]) -> dict[str, Sequence] | None:
    """A checked request's inputs as plain columns; None when an input uses a content type the direct
    path does not decode (the stock codecs then decode it)."""
    columns: dict[str, Sequence] = {}
    for request_input in payload.inputs:
        parameters = request_input.parameters
        if parameters is not None and parameters.content_type not in PLAIN_CONTENT_TYPES:
            return None
        values = _flat(request_input.data)
        if types[request_input.name] == "double":
            # FP32 values are rounded to float32 first, as the stock codec decodes them.
            dtype = np.float32 if _datatype(request_input) == "FP32" else np.float64
            try:
                columns[request_input.name] = np.asarray(values, dtype=dtype).astype(np.float64, copy=False)
            except (TypeError, ValueError):
                raise RequestRejected(f"feature {request_input.name!r} has values that are not numbers") from None
        else:
            columns[request_input.name] = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
    return columns


class AssayMLflowRuntime(MLflowRuntime):
    async def verify(self) -> None:
        """Refuse a model folder that does not hash to the expected sha256 in its settings."""
        artifacts = _artifacts_module()
        extra = self.settings.parameters.extra if self.settings.parameters else None
        expected = (extra or {}).get(EXPECTED_SHA256_PARAMETER)
        folder = Path(await get_model_uri(self._settings))
        try:
            artifacts.check_model_folder(folder, expected, f"{self.name} v{self.settings.parameters.version or '?'}")
        except artifacts.ArtifactMismatch as mismatch:
            logger.error("%s", mismatch)
            raise ModelRefused(str(mismatch)) from None

    async def load(self) -> bool:
        await self.verify()
        # Importing the logged code must not write bytecode into the verified folder: a restart
        # would then find it changed (and refuse it), or run a .pyc no hash covered.
        sys.dont_write_bytecode = True
        loaded = await super().load()
        self._rules = request_rules(self)
        self._direct: Predict | None = None
        self._types = {spec.name: _type_name(spec) for spec in self._signature.inputs.inputs} if self._signature else {}
        if "torch" in sys.modules:
            # One request at a time in this process (parallel_workers 0), so intra-op threads gain
            # nothing; on 2 cores with the other one busy (a client, a second server) a second thread
            # makes a 100-row batch 6x slower (3.4 ms instead of 0.56 ms). Idle, the two are equal.
            import torch

            torch.set_num_threads(1)
        predict = direct_predictor(self._model)
        if predict is not None:
            try:
                gap = self_check(self._model, predict)
            except Exception as error:  # noqa: BLE001 - any failure means: serve the stock way
                logger.warning("%s: direct path disabled, it failed its load check: %r", self.name, error)
            else:
                if gap <= SELF_CHECK_TOLERANCE:
                    self._direct = predict
                else:
                    logger.warning("%s: direct path disabled, it differs from the stock path by %.3g", self.name, gap)
        return loaded

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Check, answer, then log what was answered (serving/inference_log.py): monitoring and
        audits read every served prediction from there."""
        began = time.perf_counter()
        checked = self._rules.check(payload)
        response = await self._answer(payload)
        directory = inference_log.log_directory()
        if directory is not None:
            latency_ms = (time.perf_counter() - began) * 1000
            scores = [float(v) for v in _flat(response.outputs[0].data)]
            when = checked.event_time or datetime.now(timezone.utc)
            lines = inference_log.log_lines(payload, scores, self.settings.name, self.settings.parameters.version or "",
                                            latency_ms, when, checked.entity_ids)
            inference_log.append(directory, self.settings.name, when.date(), lines,
                                 self._rules.limits.log_retention_days)
        return response

    async def _answer(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            if getattr(self, "_direct", None) is not None:
                columns = decode_columns(payload, self._types)
                if columns is not None:
                    return self.encode_response(self._direct(columns), default_codec=TensorDictCodec)
            return await super().predict(payload)
        except (TypeError, ValueError, KeyError) as error:  # decoding a value the checks let through
            raise RequestRejected(f"the request could not be decoded: {error}") from None
