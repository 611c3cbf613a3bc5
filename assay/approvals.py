"""Recorded approvals: who allowed which model version into which environment, when, and why.

An append-only JSON-lines file in the state folder. Production deployment reads it: a missing
approval is a failed gate, never a crash and never a silent deploy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Approval:
    use_case: str
    environment: str
    version: str
    by: str
    reason: str
    at: str


def record_approval(path: Path, use_case: str, environment: str, version: str, by: str, reason: str) -> Approval:
    if not by.strip() or not reason.strip():
        raise ValueError("an approval needs a person (--by) and a reason (--reason)")
    approval = Approval(use_case, environment, str(version), by.strip(), reason.strip(),
                        datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(json.dumps(asdict(approval), sort_keys=True) + "\n")
    return approval


def find_approval(path: Path, use_case: str, environment: str, version: str) -> Approval | None:
    if not path.exists():
        return None
    found = None
    for line in path.read_text().splitlines():
        entry = Approval(**json.loads(line))
        if (entry.use_case, entry.environment, entry.version) == (use_case, environment, str(version)):
            found = entry
    return found
