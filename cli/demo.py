"""`make demo` and `assay build`: materialize a window of days of a use case's graph, and say what was
built, which gates passed, which days were held back and why, and where to look.

The demo replays a default window of real days for every use case with a replay source (a use case
whose files arrive from upstream is skipped, with a line saying so); `assay build` materializes what
already landed for one use case. Both build through harness/runs.py and print the same summary.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from definitions import current_definitions
from harness.replay import replay
from harness.runs import StepRun, materialize_window
from assay.settings import state, usecases_dir
from assay.spec import UseCase, load_specs
from cli.status import collect_status
from resources.landing_zone import LandingZone


@contextlib.contextmanager
def output_to(path):
    """Send the runs' console output (dbt's included) to a log file; the summary stays readable."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def build_window(defs: dg.Definitions, instance: dg.DagsterInstance, spec: UseCase, window: list[str],
                 log: Path) -> list[StepRun]:
    """Materialize the window's graph (runs' output to `log`) and print one line per step."""
    with output_to(log):
        runs = materialize_window(defs, instance, spec, window)
    print(f"  raw days loaded: {sum(r.what == 'raw' and r.success for r in runs)}/{len(window)}")
    for run in runs:
        if run.what != "raw" or not run.success:
            where = f" {run.partition}" if run.partition else ""
            print(f"  {'ok    ' if run.success else 'FAILED'} {run.what}{where} (run {run.run_id[:8]})")
    return runs


def print_summary(defs: dg.Definitions, instance: dg.DagsterInstance, started: float, log: Path,
                  use_cases: set[str] | None = None) -> None:
    """What was built, gates, days held back, where the champions answer, and where to look."""
    layout = state()
    report = collect_status(defs, instance)
    print(f"\nBuilt in {time.perf_counter() - started:.0f}s.")
    for use_case, body in report["use_cases"].items():
        if use_cases is not None and use_case not in use_cases:
            continue
        s, champion = body["summary"], body["champion"]
        print(f"{use_case}: {s['materialized']}/{s['assets']} assets materialized; "
              f"gates {s['gates_passed']} passed, {s['gates_failed']} failed; champion "
              + (f"v{champion['champion_version']} ({champion['family']})" if champion else "none"))
        for gate in body["gates"]:
            if gate["result"] == "failed":
                print(f"  FAILED {gate['asset']}:{gate['check']}: {gate.get('description')}")
        for held in body["held_back"]:
            print(f"  held back {held['partition']}: {held['asset']}:{held['check']}: {held['description']}")
    for environment, server in report["serving"].items():
        for served in server["served"]:
            if use_cases is None or served["name"] in use_cases:
                print(f"serving {served['name']} v{served['version']} in {environment}: "
                      f"{server['url']}/v2/models/{served['name']}/infer")
    print(
        f"\nWhere to look:\n"
        f"  make ui                   Dagster UI on http://127.0.0.1:3000 over this state\n"
        f"  .venv/bin/assay status    assets, partitions and gate results (--json for machines)\n"
        f"  make mlflow-ui            MLflow on http://127.0.0.1:5000: runs, metrics, plots, model versions\n"
        f"  assay approve <use case> --version N --by <you> --reason <why>, then materialize its\n"
        f"  deployment_production in the UI: production deploys only what a person approved\n"
        f"  {layout.root}  all state: warehouse.duckdb, landing/, quarantine/, snapshots/, mlflow/, dagster/\n"
        f"  {log}  the runs' console output (dbt's included)"
    )


def run_demo(days: int) -> int:
    layout = state()
    landing = LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))
    defs = current_definitions()
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    log = layout.root / "demo.log"
    failures = 0
    for spec in load_specs(usecases_dir()):
        if spec.source is None:
            print(f"{spec.name}: skipped: no replay source in its spec (its files arrive from upstream); "
                  f"build what landed with `assay build {spec.name}`")
            continue
        start = spec.partitions.start
        try:
            landed = replay(spec, landing, start, days)
        except (ValueError, RuntimeError) as refused:  # one use case's replay must not stop the others
            print(f"{spec.name}: not built: {refused}")
            failures += 1
            continue
        print(f"{spec.name}: landed {len(landed)} files for {start}..{start + timedelta(days=days - 1)}")
        window = [(start + timedelta(days=i)).isoformat() for i in range(days)]
        runs = build_window(defs, instance, spec, window, log)
        failures += sum(not run.success for run in runs)
    print_summary(defs, instance, started, log)
    return 1 if failures else 0


def run_build(spec: UseCase, start: date | None, end: date | None) -> int:
    """`assay build`: the graph over `start..end` (inclusive; by default the landed days' span)."""
    layout = state()
    landing = LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))
    if start is None or end is None:
        landed = landing.landed_days(spec.name, spec.partitioned_tables)
        if not landed:
            raise ValueError(f"{spec.name}: no landing files in {layout.landing / spec.name}/<table>/<day>.csv "
                             "to build from: land them first, or give --start and --end")
        start = start or date.fromisoformat(landed[0])
        end = end or date.fromisoformat(landed[-1])
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    if start < spec.partitions.start or end >= spec.partitions.end:
        raise ValueError(f"{spec.name}: days {start}..{end} fall outside the use case's partitions "
                         f"{spec.partitions.start}..{spec.partitions.end} (end exclusive)")
    defs = current_definitions()
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    log = layout.root / "build.log"
    window = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    print(f"{spec.name}: building {start}..{end} ({len(window)} days) from {layout.landing / spec.name}")
    runs = build_window(defs, instance, spec, window, log)
    print_summary(defs, instance, started, log, use_cases={spec.name})
    return 1 if any(not run.success for run in runs) else 0
