"""The release log: every promotion, rollout step, deployment, rollback and override, who or what
did it, why.

An append-only JSON-lines file in the state folder (`releases.jsonl`), beside the approvals. MLflow
holds the current aliases; this holds the history an auditor reads, in order, with the Dagster run
that made each change (or the person, for `assay rollback` and an override).

The log is hash-chained: every entry carries `prev` (the previous entry's hash) and `hash` (sha256
of the canonical JSON of the entry without `hash`), and a head file beside it (`<log>.head`) holds
the last hash and the entry count, so an edited, removed or truncated entry is found by
`verify_chain` (`assay audit verify-log`). The same chain guards the approvals (assay/approvals.py).

The head file lies beside the log and goes with it when both are deleted or cut short, so each write
also has a second witness outside the state folder: `record(..., witness=registry)` leaves the use
case's entry count and last hash on its registered model (resources/registry.py `witness_log`), and
`verify_witness` compares the log with it. A log deleted while the registry witnesses entries, cut
short after a witnessed entry, or with entries stripped of `prev`/`hash` (which would read as legacy)
is `changed`. Legacy (unchained) entries are accepted only before the first chained one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

EVENTS = ("promoted", "deployed", "shadow", "canary", "rolled_back", "withdrawn", "override")
GENESIS = "0" * 64


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
    prev: str | None = None  # the chain: the previous entry's hash (set by `record`)
    hash: str | None = None  # sha256 of the canonical JSON of this entry without `hash`


def log_path(root: Path) -> Path:
    return Path(root) / "releases.jsonl"


# --- the hash chain, shared with assay/approvals.py ------------------------------------------------

def canonical(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict) -> str:
    """sha256 of the canonical JSON of the entry without its `hash` (a legacy entry: of all of it)."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def head_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".head")


@contextmanager
def _locked(path: Path):
    lock = Path(path).with_name(Path(path).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _last_entry(path: Path) -> tuple[dict | None, int]:
    if not path.exists():
        return None, 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return (json.loads(lines[-1]) if lines else None), len(lines)


def append_chained(path: Path, entry: dict) -> dict:
    """Append `entry` with `prev` and `hash` set, under an exclusive lock; return what was written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        last, count = _last_entry(path)
        prev = (last.get("hash") or entry_hash(last)) if last else GENESIS
        chained = {**{k: v for k, v in entry.items() if k != "hash"}, "prev": prev}
        chained["hash"] = entry_hash(chained)
        with path.open("a") as log:
            log.write(json.dumps(chained, sort_keys=True) + "\n")
        head_path(path).write_text(json.dumps({"hash": chained["hash"], "entries": count + 1}) + "\n")
    return chained


@dataclass(frozen=True)
class ChainVerdict:
    path: str
    status: str  # verified | changed | missing
    entries: int
    legacy: int  # unchained entries written before the chain began (their edits are not detectable)
    first_break: int | None = None  # 1-based line number of the first removed or edited entry
    detail: str = ""


def verify_chain(path: Path) -> ChainVerdict:
    """Recompute the chain; report the first entry that was edited, or after which one was removed."""
    path = Path(path)
    if not path.exists():
        return ChainVerdict(str(path), "missing", 0, 0, None, "no log written yet")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    expected_prev, legacy = GENESIS, 0
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            return ChainVerdict(str(path), "changed", len(lines), legacy, number, f"entry {number} is not JSON: edited")
        if "hash" not in entry and "prev" not in entry and number == legacy + 1:
            legacy += 1
            expected_prev = entry_hash(entry)
            continue
        recomputed = entry_hash(entry)
        if entry.get("hash") != recomputed:
            return ChainVerdict(str(path), "changed", len(lines), legacy, number,
                                f"entry {number} was edited: its content hashes to {recomputed[:12]}…, "
                                f"not its recorded {str(entry.get('hash'))[:12]}…")
        if entry.get("prev") != expected_prev:
            where = f"does not follow entry {number - 1}" if number > 1 else "does not start the chain"
            return ChainVerdict(str(path), "changed", len(lines), legacy, number,
                                f"entry {number} {where}: an entry was removed (or reordered) before it")
        expected_prev = entry["hash"]
    head = head_path(path)
    if head.exists():
        recorded = json.loads(head.read_text())
        if recorded.get("entries") != len(lines) or recorded.get("hash") != (expected_prev if lines else None):
            if recorded.get("entries", 0) > len(lines):
                return ChainVerdict(str(path), "changed", len(lines), legacy, len(lines) + 1,
                                    f"the log ends after entry {len(lines)} but its head records "
                                    f"{recorded.get('entries')} entries: the last entries were removed")
            return ChainVerdict(str(path), "changed", len(lines), legacy, len(lines),
                                f"the log's last hash is not the one its head records "
                                f"({str(recorded.get('hash'))[:12]}…, {recorded.get('entries')} entries)")
    elif len(lines) > legacy:
        return ChainVerdict(str(path), "changed", len(lines), legacy, None, f"the head file {head.name} is missing")
    note = f"{len(lines)} entries, chain intact" + (f" ({legacy} legacy entries before the chain began)" if legacy else "")
    return ChainVerdict(str(path), "verified", len(lines), legacy, None, note)


# --- the second witness (the registry) ----------------------------------------------------------

def _entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def use_case_head(path: Path, use_case: str) -> dict:
    """How many chained entries of `use_case` the log holds, and the last one's hash."""
    mine = [e["hash"] for e in _entries(path) if e.get("use_case") == use_case and e.get("hash")]
    return {"entries": len(mine), "hash": mine[-1] if mine else None}


def append_witnessed(path: Path, entry: dict, witness=None) -> dict:
    """`append_chained`, then leave the use case's head with `witness` (`witness_log(name, log, head)`)."""
    written = append_chained(path, entry)
    if witness is not None:
        witness.witness_log(entry["use_case"], Path(path).stem, use_case_head(path, entry["use_case"]))
    return written


def verify_witness(path: Path, use_case: str, witnessed: dict | None,
                   promoted: list[str] = ()) -> ChainVerdict | None:
    """The log against what the registry witnesses of `use_case` (None: nothing to compare).

    `witnessed` is the head left by `append_witnessed`: that entry must be there, chained, with as many
    chained entries of the use case up to it (later ones may follow, written without a witness).
    `promoted` are versions the registry records as promoted: each needs its `promoted` entry."""
    path = Path(path)
    if not witnessed and not promoted:
        return None
    what = (f"{witnessed['entries']} chained entries of {use_case} (last {str(witnessed['hash'])[:12]}…)"
            if witnessed else f"promotions of {use_case} v{', v'.join(promoted)}")
    if not path.exists():
        return ChainVerdict(str(path), "changed", 0, 0, None,
                            f"the log is missing but the registry witnesses {what}: it was deleted")
    entries = _entries(path)
    mine = [e for e in entries if e.get("use_case") == use_case]
    if witnessed:
        chained = [e["hash"] for e in mine if e.get("hash")]
        position = chained.index(witnessed["hash"]) + 1 if witnessed["hash"] in chained else None
        if position != witnessed["entries"]:
            return ChainVerdict(str(path), "changed", len(entries), len(mine) - len(chained), None,
                                f"the registry witnesses {what}, the log holds {len(chained)} chained and "
                                f"{len(mine) - len(chained)} unchained entries of {use_case}: entries were "
                                "removed, or stripped of their chain fields")
    logged = {str(e.get("version")) for e in mine if e.get("event") == "promoted"}
    absent = [v for v in promoted if v not in logged]
    if absent:
        return ChainVerdict(str(path), "changed", len(entries), 0, None,
                            f"the registry records promotions of {use_case} v{', v'.join(absent)} that the log "
                            "does not hold: entries were removed")
    return None


# --- the release log -----------------------------------------------------------------------------

def record(root: Path, event: ReleaseEvent, witness=None) -> ReleaseEvent:
    """Append `event`; with `witness` (the registry), leave its use case's head there too."""
    if event.event not in EVENTS:
        raise ValueError(f"unknown release event {event.event!r}; one of {EVENTS}")
    written = append_witnessed(log_path(root), asdict(event), witness)
    return ReleaseEvent(**written)


def record_override(root: Path, use_case: str, version: str, by: str, reason: str,
                    environment: str | None = None, witness=None) -> ReleaseEvent:
    """A person overrode a rule for a version (a gate, a freeze): who and why, in the chained log."""
    if not by.strip() or not reason.strip():
        raise ValueError("an override needs a person (by) and a reason")
    return record(root, ReleaseEvent(use_case, "override", str(version), environment, by=by.strip(),
                                     reason=reason.strip()), witness)


def history(root: Path, use_case: str | None = None) -> list[ReleaseEvent]:
    path = log_path(root)
    if not path.exists():
        return []
    events = [ReleaseEvent(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if use_case is None or e.use_case == use_case]
