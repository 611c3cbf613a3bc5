"""Recorded approvals: who allowed which model artifact into which environment, when, and why.

An append-only, hash-chained JSON-lines file in the state folder (the chain of assay/releases.py:
each entry carries `prev` and `hash`, and the registry witnesses each use case's last entry).
An approval binds to the version's whole-model sha256 (`assay.model_sha256`), not only its number:
a version number reused by a rebuilt registry, or an artifact replaced since, is not approved.
Approving a version the registry does not hold is refused. Production deployment reads it: a
missing approval is a failed gate, never a crash and never a silent deploy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from assay.releases import append_witnessed
from training.tags import MODEL_SHA256_TAG


class ApprovalRefused(ValueError):
    pass


@dataclass(frozen=True)
class Approval:
    use_case: str
    environment: str
    version: str
    by: str
    reason: str
    at: str
    sha256: str | None = None  # the approved artifact's assay.model_sha256 (None: an entry from before)
    prev: str | None = None
    hash: str | None = None


def record_approval(path: Path, use_case: str, environment: str, version: str, by: str, reason: str, *,
                    sha256: str, witness=None) -> Approval:
    if not by.strip() or not reason.strip():
        raise ValueError("an approval needs a person (--by) and a reason (--reason)")
    if not sha256:
        raise ApprovalRefused(f"{use_case} v{version}: an approval binds to the artifact's sha256, and none was given")
    approval = Approval(use_case, environment, str(version), by.strip(), reason.strip(),
                        datetime.now(timezone.utc).isoformat(timespec="seconds"), sha256)
    return Approval(**append_witnessed(Path(path), asdict(approval), witness))


def approve(path: Path, registry, use_case: str, environment: str, version: str, by: str, reason: str) -> Approval:
    """Approve a registered version for `environment`, bound to its recorded whole-model sha256."""
    from mlflow.exceptions import MlflowException

    try:
        found = registry.version(use_case, str(version))
    except MlflowException:
        raise ApprovalRefused(f"{use_case} has no registered version {version!r}: nothing to approve") from None
    sha256 = found.tags.get(MODEL_SHA256_TAG)
    if not sha256:
        raise ApprovalRefused(f"{use_case} v{version} has no {MODEL_SHA256_TAG} (registered before whole-model "
                              "hashes): an approval must name the artifact; retrain it first")
    return record_approval(path, use_case, environment, version, by, reason, sha256=sha256, witness=registry)


def approvals(path: Path) -> list[Approval]:
    path = Path(path)
    if not path.exists():
        return []
    return [Approval(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def find_approval(path: Path, use_case: str, environment: str, version: str, sha256: str | None) -> Approval | None:
    """The latest approval of exactly this artifact (version and whole-model sha256) for `environment`."""
    found = None
    for entry in approvals(path):
        if (entry.use_case, entry.environment, entry.version) == (use_case, environment, str(version)) \
                and sha256 and entry.sha256 == sha256:
            found = entry
    return found
