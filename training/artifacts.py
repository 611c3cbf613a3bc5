"""The model payload's fingerprint: what proves the registered artifact is the one that was trained."""

from __future__ import annotations

import hashlib
from pathlib import Path

# How a model version records each gate's outcome in the registry: `assay.gate.<name>` = passed|failed.
GATE_TAG = "assay.gate."


def payload_sha256(folder: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order (independent of mtimes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
