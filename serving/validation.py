"""What a V2 inference request must be before a model sees it, checked against the model's input
signature and the use case's serving limits (assay/spec.py `Serving`), each problem named by its field.

A caller's mistake must be a 4xx that names the field, never a 500 from inside the model or the
inference log, so it never reaches the latency and error-rate gates as a server fault. Values are
checked, not only datatype names: a number feature takes numbers (null, or the string "NaN", for a
missing value when the spec allows missing values), an integer datatype takes whole numbers in its
range, BYTES takes strings. The parameters that say where a prediction is logged are parsed here too:
the event time strictly (ISO 8601, within the partitions, not ahead of the clock) and the entity ids
(one per row, bounded, a safe charset), so the log never takes a path or a day from a caller's text.

The checks work per input, not per value in Python (one set of the values' types, one min and max),
so a single-row request costs microseconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from mlserver.errors import MLServerError

# V2 datatypes each signature type accepts (integers are valid doubles; strings arrive as BYTES).
ACCEPTED = {
    "double": {"FP64", "FP32", "INT64", "INT32", "INT16", "INT8"},
    "float": {"FP64", "FP32", "INT64", "INT32", "INT16", "INT8"},
    "long": {"INT64", "INT32", "INT16", "INT8"},
    "integer": {"INT64", "INT32", "INT16", "INT8"},
    "string": {"BYTES"},
    "boolean": {"BOOL"},
}
INTEGER_RANGES = {
    "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1), "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1), "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1),
}
FLOATS = {"FP64", "FP32", "FP16"}
NONE = type(None)
NUMBERS, NUMBERS_OR_MISSING = frozenset({int, float}), frozenset({int, float, NONE})
TEXT, TEXT_OR_MISSING = frozenset({str, bytes}), frozenset({str, bytes, NONE})
# Entity and request ids: letters, digits and a few separators; no spaces, quotes, slashes or control characters.
SAFE_ID = re.compile(r"[A-Za-z0-9_.:@+=-]+")
# ISO 8601 as Assay's client writes it, nothing looser: a date, optionally a time, optionally an offset.
EVENT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?")
EVENT_TIME_PARAMETER, ENTITY_IDS_PARAMETER = "assay_event_time", "assay_entity_ids"


class RequestRejected(MLServerError):
    def __init__(self, message: str, status_code: int = 422):
        super().__init__(message, status_code=status_code)


@dataclass(frozen=True)
class Checked:
    """What a valid request says about its logging: its rows, when it happens, whom it scores."""

    rows: int
    event_time: datetime | None
    entity_ids: list[str] | None


def type_name(spec) -> str:
    return str(spec.type.name if hasattr(spec.type, "name") else spec.type).lower()


def datatype(request_input) -> str:
    given = request_input.datatype  # a str once pydantic has validated a request; an enum if built by hand
    return given if type(given) is str else str(given.value)


def flat(data) -> list:
    """A V2 input's data as a flat list (data may be nested row by row: every row a list, else the
    data is returned as it is, lists among its values, for the checks to refuse)."""
    values = data.root if hasattr(data, "root") else data
    if values and type(values[0]) is list and all(type(value) is list for value in values):
        out: list = []
        for value in values:
            out.extend(flat(value))
        return out
    return values


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class RequestRules:
    """The checks of one served model, prepared at load."""

    def __init__(self, schema, limits, partitions: tuple[date, date] | None = None,
                 outputs: set[str] | frozenset[str] = frozenset()):
        self.expected = {spec.name: type_name(spec) for spec in schema.inputs} if schema is not None else None
        self.allowed = {name: ACCEPTED.get(kind, set()) for name, kind in (self.expected or {}).items()}
        self.limits = limits
        self.partitions = partitions
        self.outputs = set(outputs)

    def check(self, payload) -> Checked:
        """The request's logging facts; raises RequestRejected (413 for size, 422 otherwise) naming
        every field at fault. Missing numbers sent as "NaN" are rewritten to null in place, so the
        model and the log see one spelling of a missing value."""
        problems: list[str] = []
        names = [i.name for i in payload.inputs]
        if len(set(names)) != len(names):
            problems.append(f"inputs: duplicate input names {sorted({n for n in names if names.count(n) > 1})}")
        if self.expected is not None:
            problems += [f"missing feature {name!r}" for name in self.expected if name not in names]
            problems += [f"unknown feature {name!r}" for name in dict.fromkeys(names) if name not in self.expected]
        rows = {count for count in (self._input(i, problems) for i in payload.inputs) if count is not None}
        if len(rows) > 1:
            problems.append(f"inputs disagree on the number of rows: {sorted(rows)}")
        for index, output in enumerate(payload.outputs or []):
            if self.outputs and output.name not in self.outputs:
                problems.append(f"outputs[{index}].name: unknown output {output.name!r}; "
                                f"this model answers {sorted(self.outputs)}")
        count = next(iter(rows)) if len(rows) == 1 else None
        event_time, entity_ids = self._parameters(payload, count, problems)
        if problems:
            raise RequestRejected("; ".join(problems))
        return Checked(count or 0, event_time, entity_ids)

    # --- inputs ----------------------------------------------------------------------------------

    def _input(self, request_input, problems: list[str]) -> int | None:
        """Appends this input's problems; returns its row count when its shape and data agree."""
        name, given = request_input.name, datatype(request_input)
        allowed = self.allowed.get(name)
        if allowed and given not in allowed:
            problems.append(f"feature {name!r} has datatype {given}, expected one of {sorted(allowed)}")
            return None
        raw = request_input.data.root
        if type(raw) is not list:
            problems.append(f"feature {name!r}: data must be a list of values, one per row, not {_shown(raw)}")
            return None
        shape = request_input.shape
        values = flat(raw)
        if not 0 < len(shape) <= 2 or (len(shape) == 2 and shape[1] != 1) or shape[0] < 1:
            problems.append(f"feature {name!r} has shape {shape}: expected [rows] or [rows, 1], at least one row")
            return None
        if shape[0] > self.limits.max_rows:  # before any value is looked at
            raise RequestRejected(f"feature {name!r}: {shape[0]} rows, over the limit of {self.limits.max_rows} rows "
                                  "per request (serving.max_rows)", status_code=413)
        if len(values) != shape[0]:
            problems.append(f"feature {name!r} has {len(values)} values for shape {shape}: "
                            "expected one value per row, shape [rows] or [rows, 1]")
            return None
        problem = self._values(given, values)
        if problem:
            problems.append(f"feature {name!r} {problem}")
        elif values is not raw:  # nested row by row: the flat list, where a "NaN" may have become null
            request_input.data.root = values
        return shape[0]

    def _values(self, given: str, values: list) -> str | None:
        kinds = set(map(type, values))
        if given in FLOATS or given in INTEGER_RANGES:
            return self._numbers(given, values, kinds)
        if given == "BYTES":
            wrong = kinds - (TEXT_OR_MISSING if self.limits.allow_missing_values else TEXT)
            if wrong:
                return f"has values that are not strings: {_kinds(wrong)}"
            longest = max(map(len, [v for v in values if v is not None] if NONE in kinds else values), default=0)
            if longest > self.limits.max_string_length:
                return (f"has a value of {longest} characters, over the limit of {self.limits.max_string_length} "
                        "(serving.max_string_length)")
            return None
        if given == "BOOL" and kinds - {bool}:
            return f"has values that are not booleans: {_kinds(kinds - {bool})}"
        return None

    def _numbers(self, given: str, values: list, kinds: set) -> str | None:
        missing = self.limits.allow_missing_values
        if not kinds <= NUMBERS:  # the common case, numbers only, skips all of this
            if str in kinds and missing and all(v == "NaN" for v in values if type(v) is str):
                values[:] = [None if type(v) is str else v for v in values]  # one spelling of missing: null
                kinds = (kinds - {str}) | {NONE}
            wrong = kinds - (NUMBERS_OR_MISSING if missing else NUMBERS)
            if wrong == {NONE}:
                return "has missing values (null), which this use case does not allow (serving.allow_missing_values)"
            if wrong:
                return f"has values that are not numbers: {_kinds(wrong)}"
            values = [v for v in values if v is not None]
        if float in kinds:
            if not missing and any(v != v for v in values):
                return "has NaN values, which this use case does not allow (serving.allow_missing_values)"
            if any(map(math.isinf, values)):
                return "has infinite values"
        if given in INTEGER_RANGES:
            if float in kinds and not all(v.is_integer() for v in values if type(v) is float):
                return f"has fractions, not whole numbers as {given} requires"
            low, high = INTEGER_RANGES[given]
            if values and (min(values) < low or max(values) > high):
                return f"has values outside {given}'s range [{low}, {high}]"
        return None

    # --- parameters ------------------------------------------------------------------------------

    def _parameters(self, payload, rows: int | None, problems: list[str]) -> tuple[datetime | None, list[str] | None]:
        request_id = payload.id
        if request_id is not None and (len(request_id) > self.limits.max_request_id_length
                                       or not SAFE_ID.fullmatch(request_id)):
            problems.append(f"id: at most {self.limits.max_request_id_length} characters "
                            "(serving.max_request_id_length) of letters, digits and _.:@+=-")
        extra = payload.parameters.model_extra if payload.parameters is not None else None
        if not extra:
            return None, None
        unknown = [k for k in extra if k.startswith("assay_") and k not in (EVENT_TIME_PARAMETER, ENTITY_IDS_PARAMETER)]
        if unknown:
            problems.append(f"parameters: unknown Assay parameters {unknown}; known: "
                            f"{[EVENT_TIME_PARAMETER, ENTITY_IDS_PARAMETER]}")
        event_time = entity_ids = None
        if extra.get(EVENT_TIME_PARAMETER) is not None:
            try:
                event_time = self.event_time(extra[EVENT_TIME_PARAMETER])
            except ValueError as error:
                problems.append(f"parameters.{EVENT_TIME_PARAMETER}: {error}")
        if extra.get(ENTITY_IDS_PARAMETER) is not None:
            try:
                entity_ids = self.entity_ids(extra[ENTITY_IDS_PARAMETER], rows)
            except ValueError as error:
                problems.append(f"parameters.{ENTITY_IDS_PARAMETER}: {error}")
        return event_time, entity_ids

    def event_time(self, value, now: datetime | None = None) -> datetime:
        """A caller's event time, parsed strictly and bounded: within the use case's partitions and
        at most `max_event_time_ahead` past the server's clock (a naive time is read as UTC here)."""
        if type(value) is not str or not EVENT_TIME.fullmatch(value):
            raise ValueError(f"{_shown(value)} is not an ISO 8601 time like 2013-01-01T05:00:00 "
                             "or 2013-01-01T05:00:00Z")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as error:
            raise ValueError(f"{_shown(value)} is not a valid time: {error}") from None
        if self.partitions is not None:
            start, end = self.partitions
            if not start <= parsed.date() < end:
                raise ValueError(f"{value} is outside the use case's partitions [{start}, {end})")
        latest = (now or datetime.now(timezone.utc)) + self.limits.max_event_time_ahead
        if (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)) > latest:
            raise ValueError(f"{value} is more than {_ahead(self.limits.max_event_time_ahead)} ahead of the "
                             "server's clock (serving.max_event_time_ahead)")
        return parsed

    def entity_ids(self, value, rows: int | None) -> list[str]:
        """The entity ids a caller scores, one per row: strings or integers, bounded, a safe charset."""
        if type(value) is not list:
            raise ValueError(f"must be a list of ids, one per row, not {_shown(value)}")
        if rows is not None and len(value) != rows:
            raise ValueError(f"{len(value)} ids for {rows} rows: one id per row")
        if set(map(type, value)) - {str, int}:
            raise ValueError("ids must be strings or integers")
        ids = list(map(str, value))
        limit = self.limits.max_entity_id_length
        if max(map(len, ids), default=0) > limit or not SAFE_ID.fullmatch("".join(ids)) or not all(ids):
            raise ValueError(f"each id must be 1 to {limit} characters (serving.max_entity_id_length) "
                             "of letters, digits and _.:@+=-")
        return ids


def _kinds(types: set) -> str:
    names = {NONE: "null", str: "string"}
    return ", ".join(sorted(names.get(t, t.__name__) for t in types))


def _ahead(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 24 else f"{hours:g} hours"
