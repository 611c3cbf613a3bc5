"""Recorded approvals: who allowed which model version into which environment, when, and why.

An append-only, hash-chained JSON-lines file in the state folder (the chain of assay/releases.py:
each entry carries `prev` and `hash`). Production deployment reads it: a missing approval is a
failed gate, never a crash and never a silent deploy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from assay.releases import append_chained


@dataclass(frozen=True)
class Approval:
    use_case: str
    environment: str
    version: str
    by: str
    reason: str
    at: str
    prev: str | None = None
    hash: str | None = None


def record_approval(path: Path, use_case: str, environment: str, version: str, by: str, reason: str) -> Approval:
    if not by.strip() or not reason.strip():
        raise ValueError("an approval needs a person (--by) and a reason (--reason)")
    approval = Approval(use_case, environment, str(version), by.strip(), reason.strip(),
                        datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return Approval(**append_chained(Path(path), asdict(approval)))


def approvals(path: Path) -> list[Approval]:
    path = Path(path)
    if not path.exists():
        return []
    return [Approval(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def find_approval(path: Path, use_case: str, environment: str, version: str) -> Approval | None:
    found = None
    for entry in approvals(path):
        if (entry.use_case, entry.environment, entry.version) == (use_case, environment, str(version)):
            found = entry
    return found
