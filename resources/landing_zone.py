"""The landing zone: where upstream systems drop files, and where bad files are set aside.

Layout: `<root>/<use case>/<table>/<YYYY-MM-DD>.csv` for daily tables and `<table>.csv` for
dimensions delivered once; rejected files (refused by their contract when loaded, or by the landing
sensor when their name is no day of the partitions) move to `<quarantine>/<use case>/<table>/` beside
a `.reason.json` that says why, so nothing a supplier sent is ever lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import polars as pl

from assay.contract import TIMESTAMP_FORMAT, ContractViolation


def _atomic_write(path: Path, write) -> None:
    """Write next to the target and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


class LandingZone(dg.ConfigurableResource):
    """Landing and quarantine folders of the embedded default (a bucket prefix at scale)."""

    root: str
    quarantine_root: str

    def path_for(self, use_case: str, table: str, partition: str | None) -> Path:
        name = f"{partition}.csv" if partition else f"{table}.csv"
        return Path(self.root) / use_case / table / name

    def landed_days(self, use_case: str, tables: list[str]) -> list[str]:
        """The days with a landing file of any of these daily tables, in order (a file name that is not
        a day is left for the landing sensor and the contract to quarantine)."""
        days = set()
        for table in tables:
            for path in (Path(self.root) / use_case / table).glob("*.csv"):
                with contextlib.suppress(ValueError):
                    days.add(date.fromisoformat(path.stem).isoformat())
        return sorted(days)

    def land(self, use_case: str, table: str, partition: str | None, frame: pl.DataFrame) -> Path:
        """Deliver a file the way the upstream system does: CSV, empty for null, UTC timestamps."""
        path = self.path_for(use_case, table, partition)
        _atomic_write(path, lambda p: frame.write_csv(p, null_value="", datetime_format=TIMESTAMP_FORMAT))
        return path

    def quarantine(self, use_case: str, table: str, path: Path, violation: ContractViolation) -> Path:
        """Move a rejected file aside with its reason; the landing slot is then empty again."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = Path(self.quarantine_root) / use_case / table / f"{path.stem}.{stamp}{path.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target)
        reason = {**violation.as_metadata(), "file": str(path), "quarantined_as": str(target),
                  "quarantined_at": stamp}
        target.with_name(target.name + ".reason.json").write_text(json.dumps(reason, indent=2))
        return target

    def quarantined(self, use_case: str, table: str, partition: str | None = None) -> list[dict]:
        folder = Path(self.quarantine_root) / use_case / table
        stem = partition or table
        return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{stem}.*.reason.json"))]


