"""The release log: every promotion, rollout step, deployment and rollback, who or what did it, why.

An append-only JSON-lines file in the state folder (`releases.jsonl`), beside the approvals. MLflow
holds the current aliases; this holds the history an auditor reads, in order, with the Dagster run
that made each change (or the person, for `assay rollback`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

EVENTS = ("promoted", "deployed", "shadow", "canary", "rolled_back")


@dataclass(frozen=True)
class ReleaseEvent:
    use_case: str
    event: str
    version: str
    environment: str | None = None
    from_version: str | None = None
    by: str = "unknown"
    reason: str = ""
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    passed: bool | None = None  # for rollout steps: did the step's gate pass


def log_path(root: Path) -> Path:
    return Path(root) / "releases.jsonl"


def record(root: Path, event: ReleaseEvent) -> ReleaseEvent:
    if event.event not in EVENTS:
        raise ValueError(f"unknown release event {event.event!r}; one of {EVENTS}")
    path = log_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(json.dumps(asdict(event), sort_keys=True) + "\n")
    return event


def history(root: Path, use_case: str | None = None) -> list[ReleaseEvent]:
    path = log_path(root)
    if not path.exists():
        return []
    events = [ReleaseEvent(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if use_case is None or e.use_case == use_case]
