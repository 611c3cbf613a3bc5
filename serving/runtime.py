"""MLServer runtime for Assay's MLflow models: MLServer's MLflow runtime, plus request validation.

Stock MLServer answers a request with a missing feature or a wrongly typed one with a 500 from deep
inside the model. A caller's mistake should be a 4xx that names the field, and must not look like
a server fault to the latency and error-rate gates; so requests are checked against the model's
signature before the model sees them.
"""

from __future__ import annotations

from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver_mlflow import MLflowRuntime

# V2 datatypes each signature type accepts (integers are valid doubles; strings arrive as BYTES).
ACCEPTED = {
    "double": {"FP64", "FP32", "INT64", "INT32", "INT16", "INT8"},
    "float": {"FP64", "FP32", "INT64", "INT32", "INT16", "INT8"},
    "long": {"INT64", "INT32", "INT16", "INT8"},
    "integer": {"INT64", "INT32", "INT16", "INT8"},
    "string": {"BYTES"},
    "boolean": {"BOOL"},
}


class RequestRejected(MLServerError):
    def __init__(self, message: str):
        super().__init__(message, status_code=422)


def request_problems(payload: InferenceRequest, schema) -> list[str]:
    """Everything wrong with a request against the model's input schema, by field."""
    expected = {spec.name: spec for spec in schema.inputs}
    given = {i.name: i for i in payload.inputs}
    problems = [f"missing feature {name!r}" for name in expected if name not in given]
    problems += [f"unknown feature {name!r}" for name in given if name not in expected]
    rows = {i.shape[0] for i in payload.inputs if i.shape}
    if len(rows) > 1:
        problems.append(f"inputs disagree on the number of rows: {sorted(rows)}")
    for name, spec in expected.items():
        if name in given:
            datatype = str(getattr(given[name].datatype, "value", given[name].datatype))
            allowed = ACCEPTED.get(str(spec.type.name if hasattr(spec.type, "name") else spec.type).lower(), set())
            if allowed and datatype not in allowed:
                problems.append(f"feature {name!r} has datatype {datatype}, expected one of {sorted(allowed)}")
    return problems


class AssayMLflowRuntime(MLflowRuntime):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if self._signature is not None:
            problems = request_problems(payload, self._signature.inputs)
            if problems:
                raise RequestRejected("; ".join(problems))
        try:
            return await super().predict(payload)
        except (TypeError, ValueError, KeyError) as error:  # decoding a value the schema let through
            raise RequestRejected(f"the request could not be decoded: {error}") from None
