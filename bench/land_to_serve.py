"""Land-to-serve benchmark: a day's files landing -> a retrained model serving, orchestrated by Assay,
against the same compute steps run alone, as a hand-written script would run them.

    .venv/bin/python bench/land_to_serve.py [--max-days 35]

Orchestrated: a fresh state replays flights day by day through `assay simulate`'s loop (the landing
sensor, automation ticks and the retrain sensor, every step a real Dagster run on a real instance, as
the daemon launches them) until the retrain sensor's first model serves in staging. Land-to-serve is
that day's wall time, from its files landing to the post-deploy gates passing.

Alone: the same day's steps again on the same state, as one hand-written script would run them: a
fresh process, no Dagster in the steps, the compute libraries imported once (timed), then store and
gate the raw partitions, `dbt build` the day, freeze the training set, train + gate + register +
verify each family, promote, serve in staging and run the post-deploy gates.
Overhead = (land-to-serve - sum alone) / land-to-serve; also shown without the imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHILD = "--alone" in sys.argv  # the steps alone run in a fresh process on the parent's state
if not CHILD:
    os.environ["ASSAY_HOME"] = tempfile.mkdtemp(prefix="assay-land-to-serve-")
    for inherited in ("DAGSTER_HOME", "ASSAY_WAREHOUSE_PATH", "MLFLOW_TRACKING_URI"):
        os.environ.pop(inherited, None)
STATE = Path(os.environ["ASSAY_HOME"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if not CHILD:
    os.environ["ASSAY_SERVING_PORTS"] = f"staging={_free_port()},production={_free_port()}"

import dagster as dg  # noqa: E402

from assay.contract import read_landing_file, sha256_file  # noqa: E402
from definitions import current_definitions  # noqa: E402
from assay.settings import DBT_PROJECT_DIR, prepare_environment, state  # noqa: E402
from assay.spec import load_spec  # noqa: E402
from harness.simulation import Simulation  # noqa: E402
from resources.landing_zone import LandingZone  # noqa: E402
from results import write_section  # noqa: E402  (bench/results.py, beside this script)

SECTION = "## Land-to-serve"


def orchestrated(defs, instance, spec, landing, max_days: int):
    """Days through the simulation loop until a retrain serves; that day and its runs' step times."""
    simulation = Simulation(defs, instance, spec)
    for offset in range(max_days):
        today = simulation.run_day(spec.partitions.start + timedelta(days=offset), landing)
        print(*today.lines(), sep="\n", file=sys.stderr)
        if today.land_to_serve_seconds is not None:
            steps = []
            for run in today.runs:
                for stat in instance.get_run_step_stats(run.run_id):
                    if stat.start_time and stat.end_time:
                        steps.append((stat.step_key, stat.end_time - stat.start_time))
            return today, steps
    raise SystemExit(f"no retrained model served within {max_days} days")


COMPUTE_LIBRARIES = ("torch", "lightgbm", "mlflow", "sklearn", "matplotlib")


def import_compute_libraries() -> float:
    """Seconds a fresh script spends importing what the steps compute with, once."""
    already = [name for name in COMPUTE_LIBRARIES if name in sys.modules]
    if already:
        raise RuntimeError(f"{already} imported before the clock started: the import figure would be short")
    began = time.perf_counter()
    import lightgbm, mlflow.pyfunc, sklearn.metrics, torch  # noqa: E401,F401
    import training.plots, training.pyfunc  # noqa: E401,F401  (matplotlib; MLflow's model wrapper)
    return time.perf_counter() - began


def alone(resources, spec, landing, day: str) -> list[tuple[str, float]]:
    """The day's compute, called directly; (step, seconds) in order."""
    from assay.contract import data_gates
    from resources.dbt import dbt_vars, dimension_models
    from resources.deployment.release import post_deploy_checks
    from resources.raw_tables import store_partition
    from resources.snapshots import read_training_window, write_snapshot
    from resources.training.trainer import training_job
    from training.evaluation import PRIMARY
    from training.tags import STARTED_BY_TAG
    from training.train import run

    warehouse, registry, deployer = resources["warehouse"], resources["registry"], resources["deployer"]
    timed: list[tuple[str, float]] = []

    def step(name, work):
        began = time.perf_counter()
        value = work()
        timed.append((name, time.perf_counter() - began))
        return value

    def ingest():
        for name, table in spec.tables.items():
            if not table.partitioned:
                continue
            path = landing.path_for(spec.name, name, day)
            frame = read_landing_file(path, table, date.fromisoformat(day))
            trailing = store_partition(warehouse, spec.name, name, table, frame, date.fromisoformat(day),
                                       str(path), sha256_file(path))
            gates = data_gates(frame, table, trailing)
            assert all(g.passed for g in gates), gates

    def dbt_build():
        window = dg.DailyPartitionsDefinition(start_date=day).time_window_for_partition_key(day)
        exclude = dimension_models(DBT_PROJECT_DIR / "target" / "manifest.json", spec)
        subprocess.run([resources["dbt"].dbt_executable, "build", "--select", f"path:models/{spec.name}",
                        "--exclude", *exclude, "--vars", json.dumps(dbt_vars(window)),
                        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
                       check=True, capture_output=True, env={**os.environ, "ASSAY_WAREHOUSE_PATH": warehouse.path})

    def training_set():
        frame = read_training_window(warehouse, spec)
        path, digest = write_snapshot(frame, state().snapshots / spec.name / "training_set")
        t = frame[spec.features.timestamp]
        return {"snapshot": str(path), "sha256": digest, "window_start": str(t.min()), "window_end": str(t.max())}

    step("ingest: raw partitions, contract and data gates", ingest)
    step("dbt build of the day (staging, features, tests)", dbt_build)
    snapshot = step("training set snapshot", training_set)
    os.environ["MLFLOW_TRACKING_URI"] = registry.tracking_uri
    champion = registry.alias(spec.name)
    scored = []
    for family in spec.models:
        job = training_job(spec, family, snapshot, champion, {STARTED_BY_TAG: "bench"})

        def candidate(job=job):
            metadata, _ = run(job, log=lambda *_: None)
            version = str(metadata["model_version"]["raw_value"])
            registry.verify_artifact(spec.name, version, metadata["artifact_sha256"])  # the integrity gate
            return metadata, version

        metadata, version = step(f"train, gate, register and verify {family}", candidate)
        scored.append((metadata[PRIMARY[spec.features.task][0]], version, metadata["artifact_sha256"]))
    _, best, trained = max(scored) if PRIMARY[spec.features.task][1] else min(scored)
    step("promote and re-hash the champion", lambda: (registry.promote(spec.name, best, "bench"),
                                                       registry.verify_artifact(spec.name, best, trained)))
    server = step("serve in staging (MLServer start, model load, ready)",
                  lambda: deployer.deploy(registry, spec.name, "staging", best))
    checks = step("post-deploy gates (smoke, p99, malformed)",
                  lambda: post_deploy_checks(spec, server, registry, registry.version(spec.name, best)))
    assert all(c.passed for c in checks), [c.name for c in checks if not c.passed]
    return timed


def run_alone(spec, landing, day: str) -> None:
    """In the child: Assay's helpers imported untimed (they bring Dagster, which a script would not
    need), the compute libraries timed once, then the steps; JSON on stdout."""
    from resources.environments import build_resources

    resources = build_resources(state())
    imports = import_compute_libraries()
    timed = alone(resources, spec, landing, day)
    print(json.dumps({"imports": imports, "steps": timed}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-days", type=int, default=35)
    parser.add_argument("--use-case", default="flights")
    parser.add_argument("--alone", metavar="DAY", help=argparse.SUPPRESS)
    args = parser.parse_args()

    layout = prepare_environment()
    spec = load_spec(REPO / "usecases" / f"{args.use_case}.yaml")
    landing = LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))
    if args.alone:
        return run_alone(spec, landing, args.alone)

    real_stdout = os.dup(1)
    os.dup2(2, 1)  # dbt and Dagster write to fd 1; keep the report clean
    defs = current_definitions()
    instance = dg.DagsterInstance.get()
    try:
        today, steps = orchestrated(defs, instance, spec, landing, args.max_days)
        # The child starts staging's server afresh: one this process started and the child stopped
        # would linger as this process's zombie until the stop timed out.
        for server in defs.resources["deployer"].servers().values():
            server.stop()
        child = subprocess.run([sys.executable, __file__, "--use-case", spec.name, "--alone", today.day],
                               stdout=subprocess.PIPE, text=True, check=True)
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        imports, timed = measured["imports"], measured["steps"]
    finally:
        for server in defs.resources["deployer"].servers().values():
            server.stop()
    steps_alone = sum(seconds for _, seconds in timed)
    total_alone = steps_alone + imports
    wall, in_steps = today.land_to_serve_seconds, today.land_to_serve_seconds - today.orchestration_seconds
    overhead, strict = (wall - total_alone) / wall, (wall - steps_alone) / wall
    dominant = sorted(steps, key=lambda s: -s[1])[:6]
    report = "\n".join([
        f"{SECTION}, {spec.name} on {today.day}, the first retrain (`bench/land_to_serve.py`), {date.today().isoformat()}\n",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, dagster {dg.__version__}. "
        f"{len(today.runs)} Dagster runs that day: {today.retrain}\n",
        "| measure | seconds |\n| --- | --- |",
        f"| **land-to-serve**, orchestrated (landing sensor, automation, retrain sensor, deployment) | **{wall:.1f}** |",
        f"| of it inside Dagster's steps | {in_steps:.1f} |",
        f"| of it outside any step (ticks, run start and end, event storage) | {today.orchestration_seconds:.1f} |",
        f"| alone: importing torch, lightgbm, mlflow, sklearn and matplotlib, once | {imports:.1f} |",
        *(f"| alone: {name} | {seconds:.1f} |" for name, seconds in timed),
        f"| **sum of the steps alone**, one fresh process | **{total_alone:.1f}** |",
        f"| **orchestration overhead** (land-to-serve - sum alone) / land-to-serve | **{overhead:.0%}** (goal: < 50%) |",
        f"| the same without the imports (a process that had them already) | {strict:.0%} |",
        "",
        "Dominant steps of the orchestrated day (Dagster step time): "
        + "; ".join(f"{key} {seconds:.1f} s" for key, seconds in dominant) + ".",
    ]) + "\n"
    write_section(SECTION, report)
    os.write(real_stdout, report.encode())
    shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
