"""The landing sensor: each new or re-delivered file in the landing zone becomes a run of its raw asset.

The cursor remembers every file by its content hash, so a tick only requests what changed:
- a new day's files: one run for that day's partition, selecting the tables that landed;
- a late file (a day earlier than days already loaded): the same, for its own partition;
- a re-delivered file with new content: a new run that replaces the stored partition;
- the same content delivered again: nothing (the cursor, and the run key if the cursor was lost);
- a file whose name is no day of the partitions (or, for a dimension, not `<table>.csv`): quarantined
  with the reason, so it cannot make every tick fail; the other files are still requested.
Size and modification time are checked first so a tick over a year of files hashes only new ones.
"""

import hashlib
import json
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from assay import asset_keys
from assay.contract import ContractViolation, sha256_file
from assay.spec import UseCase
from resources.landing_zone import LandingZone


def misnamed(path: Path, spec: UseCase, table: str) -> ContractViolation | None:
    """Why a landing file's name is no partition of its table, or None when it is one."""
    if not spec.tables[table].partitioned:
        if path.name == f"{table}.csv":
            return None
        return ContractViolation(path, f"the file name {path.name!r} is not this dimension's ({table}.csv)")
    first, last = spec.partitions.start, spec.partitions.end - timedelta(days=1)
    try:
        day = date.fromisoformat(path.stem)
    except ValueError:
        day = None
    if day is not None and day.isoformat() == path.stem and first <= day <= last:
        return None
    return ContractViolation(
        path, f"the file name {path.name!r} is not a day of the partitions (YYYY-MM-DD.csv, {first} to {last})")


def scan(landing_root: Path, spec: UseCase, seen: dict[str, list]) -> tuple[
        dict[str, list], list[tuple[str, str | None, str]], list[tuple[str, ContractViolation]]]:
    """(new cursor entries, [(table, partition or None, sha256)] of files new or changed since `seen`,
    [(table, why)] of files whose name is no partition of their table)."""
    current: dict[str, list] = {}
    changed = []
    refused = []
    for table_name, table in spec.tables.items():
        folder = landing_root / spec.name / table_name
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            violation = misnamed(path, spec, table_name)
            if violation is not None:
                refused.append((table_name, violation))
                continue
            relative = f"{table_name}/{path.name}"
            stat = path.stat()
            before = seen.get(relative)
            if before and before[:2] == [stat.st_size, stat.st_mtime_ns]:
                current[relative] = before
                continue
            sha = sha256_file(path)
            current[relative] = [stat.st_size, stat.st_mtime_ns, sha]
            if before is None or before[2] != sha:
                changed.append((table_name, path.stem if table.partitioned else None, sha))
    return current, changed, refused


def run_requests(spec: UseCase, changed: list[tuple[str, str | None, str]]) -> list[dg.RunRequest]:
    """One run per partition (and one for dimensions), keyed by the content it loads."""
    by_partition: dict[str | None, list[tuple[str, str]]] = defaultdict(list)
    for table, partition, sha in changed:
        by_partition[partition].append((table, sha))
    requests = []
    for partition, files in sorted(by_partition.items(), key=lambda item: item[0] or ""):
        files.sort()
        content = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]
        requests.append(dg.RunRequest(
            run_key=f"{spec.name}:{partition or 'dimensions'}:{content}",
            partition_key=partition,
            asset_selection=[asset_keys.raw(spec, table) for table, _ in files],
            tags={"assay/trigger": "landing", "assay/use_case": spec.name,
                  "assay/files": ",".join(f"{table}:{sha[:12]}" for table, sha in files)},
        ))
    return requests


def build_landing_sensor(spec: UseCase) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_landing",
        description=f"Turns each new or re-delivered file in `{spec.name}`'s landing zone into a run of its "
        "raw asset for that day (deduplicated by content).",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[asset_keys.raw(spec, table) for table in spec.tables],
    )
    def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult:
        seen = json.loads(context.cursor) if context.cursor else {}
        current, changed, refused = scan(Path(landing.root), spec, seen)
        for table, violation in refused:
            moved_to = landing.quarantine(spec.name, table, violation.path, violation)
            context.log.warning(f"{violation}; quarantined to {moved_to}")
        # Quarantined files leave the landing zone; their entries stay so the same bad file
        # delivered again is not retried, while a corrected one (new content) is.
        cursor = {**seen, **current}
        if not changed:
            skip = "no new or changed files"
            if refused:
                skip += f"; quarantined {len(refused)} misnamed: " + "; ".join(v.reason for _, v in refused)
            return dg.SensorResult(skip_reason=skip, cursor=json.dumps(cursor, sort_keys=True))
        return dg.SensorResult(run_requests=run_requests(spec, changed), cursor=json.dumps(cursor, sort_keys=True))

    return landing_sensor
