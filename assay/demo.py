"""`make demo`: replay a default window of real days for every use case, build the whole graph,
and say what was built, which gates passed, and where to look."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import timedelta

import dagster as dg

from assay.replay import replay
from assay.runs import load_definitions, materialize_window
from assay.settings import state, usecases_dir
from assay.spec import load_specs
from assay.status import collect_status
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


def run_demo(days: int) -> int:
    layout = state()
    landing = LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))
    defs = load_definitions()
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    failures = 0
    for spec in load_specs(usecases_dir()):
        start = spec.partitions.start
        landed = replay(spec, landing, start, days)
        print(f"{spec.name}: landed {len(landed)} files for {start}..{start + timedelta(days=days - 1)}")
        window = [(start + timedelta(days=i)).isoformat() for i in range(days)]
        with output_to(layout.root / "demo.log"):
            runs = materialize_window(defs, instance, spec, window)
        failures += sum(not run.success for run in runs)
        print(f"  raw days loaded: {sum(r.what == 'raw' and r.success for r in runs)}/{days}")
        for run in runs:
            if run.what != "raw" or not run.success:
                where = f" {run.partition}" if run.partition else ""
                print(f"  {'ok    ' if run.success else 'FAILED'} {run.what}{where} (run {run.run_id[:8]})")
    report = collect_status(defs, instance)
    print(f"\nBuilt in {time.perf_counter() - started:.0f}s.")
    for use_case, body in report["use_cases"].items():
        s, champion = body["summary"], body["champion"]
        print(f"{use_case}: {s['materialized']}/{s['assets']} assets materialized; "
              f"gates {s['gates_passed']} passed, {s['gates_failed']} failed; champion "
              + (f"v{champion['champion_version']} ({champion['family']})" if champion else "none"))
        for gate in body["gates"]:
            if gate["result"] == "failed":
                print(f"  FAILED {gate['asset']}:{gate['check']}: {gate.get('description')}")
    for environment, server in report["serving"].items():
        for served in server["served"]:
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
        f"  {layout.root / 'demo.log'}  the runs' console output (dbt's included)"
    )
    return 1 if failures else 0
