"""The inference log, written by the model server: one JSON line per served prediction.

Every prediction is kept with what monitoring and audits need: the request id (or the entity ids
the caller sent), the model version, the features as sent, the prediction, the latency and the
time. Lines go to `<log dir>/<model>/<YYYY-MM-DD>.jsonl`, one file per day of the event time, which
the daily `inference_log` asset loads into the warehouse.

A caller replaying history says when its requests happen (`parameters.assay_event_time`, ISO 8601)
and which entities they score (`parameters.assay_entity_ids`, one per row); otherwise the server's
clock and the request id are used. Both are parsed and bounded before the model answers
(serving/validation.py), and the file name is built from the parsed date and the server's own model
name, never from a caller's text. Writing is append-only and per request, under a lock, so lines
from concurrent requests never interleave. When a model's log starts a new day, its day files more
than the retention (the spec's `serving.log_retention_days`) before that day are deleted.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

LOG_DIR_ENV = "ASSAY_INFERENCE_LOG"
_lock = threading.Lock()


def _values(tensor) -> list:
    data = getattr(tensor, "data", tensor)
    data = getattr(data, "root", data)
    return [v.decode() if isinstance(v, bytes) else v for v in list(data)]


def log_lines(payload, predictions: list, model: str, version: str, latency_ms: float, event_time: datetime,
              entity_ids: list[str] | None = None) -> list[dict]:
    """The log lines of one served request, one per row; `event_time` and `entity_ids` as validated
    (serving/validation.py), the request id's rows when no entity ids were sent."""
    request_id = getattr(payload, "id", None) or uuid.uuid4().hex
    columns = {i.name: _values(i) for i in payload.inputs}
    rows = len(predictions)
    entities = entity_ids or [f"{request_id}:{i}" for i in range(rows)]
    return [{
        "request_id": request_id,
        "entity_id": entities[i],
        "model": model,
        "model_version": str(version),
        "features": {name: values[i] if i < len(values) else None for name, values in columns.items()},
        "prediction": float(predictions[i]),
        "latency_ms": round(latency_ms, 3),
        "event_time": event_time.isoformat(),
    } for i in range(rows)]


_open: dict[Path, object] = {}  # one append handle per day file, kept open: an open() per request cost more than the model


def day_file(directory: Path, model: str, day: date) -> Path:
    return Path(directory) / model / f"{day.isoformat()}.jsonl"


def append(directory: Path, model: str, day: date, lines: list[dict], retention_days: int | None = None) -> Path | None:
    """Append a request's lines to the model's file of `day`; opening a day's file first prunes the
    model's files older than `retention_days` before it."""
    if not lines:
        return None
    path = day_file(directory, model, day)
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    with _lock:
        handle = _open.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if len(_open) > 32:  # days already past are closed
                for old in _open.values():
                    old.close()
                _open.clear()
            if retention_days is not None:
                prune(path.parent, day, retention_days)
            handle = _open[path] = path.open("a")
        handle.write(text)
        handle.flush()  # each request is on disk before its answer leaves: a crash loses nothing served
    return path


def prune(folder: Path, newest: date, retention_days: int) -> list[Path]:
    """Delete a model's day files more than `retention_days` before `newest` (kept: that many days
    up to and including `newest`, and any later); returns what was deleted."""
    oldest_kept = newest - timedelta(days=retention_days - 1)
    deleted = []
    for path in Path(folder).glob("*.jsonl"):
        try:
            day = date.fromisoformat(path.stem)
        except ValueError:  # not a day file of this log
            continue
        if day < oldest_kept:
            handle = _open.pop(path, None)
            if handle is not None:
                handle.close()
            path.unlink(missing_ok=True)
            deleted.append(path)
    return sorted(deleted)


def log_directory() -> Path | None:
    value = os.environ.get(LOG_DIR_ENV)
    return Path(value) if value else None


def read_day(directory: Path, model: str, day: str) -> list[dict]:
    path = day_file(directory, model, date.fromisoformat(day))
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
