"""The inference log, written by the model server: one JSON line per served prediction.

Every prediction is kept with what monitoring and audits need: the request id (or the entity ids
the caller sent), the model version, the features as sent, the prediction, the latency and the
time. Lines go to `<log dir>/<model>/<YYYY-MM-DD>.jsonl`, one file per day of the event time, which
the daily `inference_log` asset loads into the warehouse.

A caller replaying history says when its requests happen (`parameters.assay_event_time`, ISO 8601)
and which entities they score (`parameters.assay_entity_ids`, one per row); otherwise the server's
clock and the request id are used. Writing is append-only and per request, under a lock, so lines
from concurrent requests never interleave.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

LOG_DIR_ENV = "ASSAY_INFERENCE_LOG"
_lock = threading.Lock()


def _values(tensor) -> list:
    data = getattr(tensor, "data", tensor)
    data = getattr(data, "root", data)
    return [v.decode() if isinstance(v, bytes) else v for v in list(data)]


def _parameters(payload) -> dict:
    parameters = getattr(payload, "parameters", None)
    if parameters is None:
        return {}
    return parameters.model_dump() if hasattr(parameters, "model_dump") else dict(parameters)


def log_lines(payload, predictions: list, model: str, version: str, latency_ms: float,
              now: datetime | None = None) -> list[dict]:
    """The log lines of one served request, one per row."""
    parameters = _parameters(payload)
    event_time = parameters.get("assay_event_time") or (now or datetime.now(timezone.utc)).isoformat()
    request_id = getattr(payload, "id", None) or uuid.uuid4().hex
    columns = {i.name: _values(i) for i in payload.inputs}
    rows = len(predictions)
    entities = parameters.get("assay_entity_ids") or [f"{request_id}:{i}" for i in range(rows)]
    return [{
        "request_id": request_id,
        "entity_id": str(entities[i]),
        "model": model,
        "model_version": str(version),
        "features": {name: values[i] if i < len(values) else None for name, values in columns.items()},
        "prediction": float(predictions[i]),
        "latency_ms": round(latency_ms, 3),
        "event_time": event_time,
    } for i in range(rows)]


_open: dict[Path, object] = {}  # one append handle per day file, kept open: an open() per request cost more than the model


def append(directory: Path, lines: list[dict]) -> Path | None:
    if not lines:
        return None
    day = lines[0]["event_time"][:10]
    path = Path(directory) / lines[0]["model"] / f"{day}.jsonl"
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    with _lock:
        handle = _open.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if len(_open) > 32:  # days already past are closed
                for old in _open.values():
                    old.close()
                _open.clear()
            handle = _open[path] = path.open("a")
        handle.write(text)
        handle.flush()  # each request is on disk before its answer leaves: a crash loses nothing served
    return path


def log_directory() -> Path | None:
    value = os.environ.get(LOG_DIR_ENV)
    return Path(value) if value else None


def read_day(directory: Path, model: str, day: str) -> list[dict]:
    path = Path(directory) / model / f"{day}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
