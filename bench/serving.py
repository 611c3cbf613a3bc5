"""Serving benchmark: one registered model version, three ways, side by side.

    make demo && .venv/bin/python bench/serving.py [--use-case flights] [--home DIR] [--json PATH] [--version N]

For the use case's champion, or --version N (from the Assay state folder: --home, else ASSAY_HOME,
else `.assay`):

- assay:      MLServer with Assay's runtime (serving.runtime.AssayMLflowRuntime), started through
              resources/deployment/model_server.py's LocalModelServer exactly as a deployment starts it;
- mlserver:   bare MLServer serving the same MLflow model folder with the stock
              `mlserver_mlflow.MLflowRuntime` (its own settings, same server settings otherwise);
- in-process: `mlflow.pyfunc.load_model(uri).predict` on the same rows, no HTTP.

Each is measured with single-row requests and 100-row batches, at concurrency 1, 8 and 32 (closed loop:
each worker thread sends its next request when the last one is answered, over one keep-alive
connection; request bodies are built before the clock starts). Requests are V2 bodies built by
serving.requests.v2_request from real rows of the version's training-set snapshot. Every target is
warmed up first, and its predictions on a 100-row batch are compared with the offline ones.

The goal line holds when Assay's single-row cell at some concurrency is both under 10 ms p99 and
over 250 req/s. In a closed loop of 8 workers a request's latency is about 8 / throughput, so p99
under 10 ms at concurrency 8 would need well over 800 req/s from one server process.

The servers run on free loopback ports from 9300 up and are stopped at the end. The client shares
the machine with the servers: on 2 cores its threads take CPU the server would otherwise have.
In-process, the model runs on this checkout's `training` code (imported first); the servers run
each version on the code logged with it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
sys.path.insert(0, str(REPO))

GOAL_P99_MS = 10.0
GOAL_REQ_PER_S = 250.0
BATCH = 100
CONCURRENCIES = (1, 8, 32)
SAMPLE_ROWS = 1000  # the snapshot's last rows: requests cycle through them


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--use-case", default="flights")
    parser.add_argument("--home", type=Path, help="Assay state folder (default: $ASSAY_HOME, else .assay)")
    parser.add_argument("--json", type=Path, help="also write the results here, as JSON")
    parser.add_argument("--version", help="a registered version to measure instead of the champion")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell (default 5)")
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="discarded seconds before each cell")
    parser.add_argument("--targets", default="assay,mlserver,in-process",
                        help="comma-separated subset of assay, mlserver, in-process")
    parser.add_argument("--first-port", type=int, default=9300)
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCIES)),
                        help="comma-separated closed-loop worker counts (default %(default)s)")
    return parser.parse_args()


# --- ports and processes ---------------------------------------------------------------------------

def free_ports(first: int, count: int = 3, taken: set[int] | None = None) -> int:
    """The first of `count` consecutive free loopback ports at or above `first`."""
    taken = taken or set()
    for base in range(first, 65000 - count):
        if any(p in taken for p in range(base, base + count)):
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit(f"no {count} consecutive free ports from {first}")


class BareMLServer:
    """Stock MLServer + mlserver_mlflow.MLflowRuntime over an MLflow model folder, in its own temp dir."""

    def __init__(self, root: Path, name: str, version: str, model_dir: Path, port: int):
        self.root, self.name, self.port = root, name, port
        self.url = f"http://127.0.0.1:{port}"
        (root / "models" / name).mkdir(parents=True)
        # The same server settings Assay writes (resources/deployment/model_server.py), so the runtime is the difference.
        (root / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": port, "grpc_port": port + 1, "metrics_port": port + 2,
            "parallel_workers": 0, "load_models_at_startup": True,
        }, indent=2))
        (root / "models" / name / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "mlserver_mlflow.MLflowRuntime",
            "parameters": {"uri": str(model_dir), "version": str(version)},
        }, indent=2))
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        log = open(self.root / "mlserver.log", "ab")
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "mlserver"), "start", str(self.root)],
                                        cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bare MLServer exited with {self.process.returncode}: see {self.root / 'mlserver.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/models/{self.name}/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"bare MLServer not ready after {timeout:.0f}s: see {self.root / 'mlserver.log'}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# --- targets ---------------------------------------------------------------------------------------

class HttpTarget:
    """V2 inference over HTTP: one persistent connection per worker, bodies pre-encoded."""

    def __init__(self, label: str, url: str, name: str):
        self.label = label
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.path = host, int(port), f"/v2/models/{name}/infer"

    def worker(self):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"content-type": "application/json"}

        def call(body: bytes) -> bool:
            nonlocal connection
            try:
                connection.request("POST", self.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                return response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                return False

        return call

    def predict(self, body: bytes) -> list[float]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        connection.request("POST", self.path, body=body, headers={"content-type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
        if response.status != 200:
            raise SystemExit(f"{self.label} answered {response.status}: {answer}")
        from serving.requests import predictions

        return predictions(answer)


class InProcessTarget:
    """The registered model's pyfunc predict on pre-built model_input frames."""

    label = "in-process"

    def __init__(self, model):
        self.model = model

    def worker(self):
        def call(frame) -> bool:
            self.model.predict(frame)
            return True

        return call

    def predict(self, frame) -> list[float]:
        return [float(v) for v in self.model.predict(frame)]


@dataclass
class Cell:
    target: str
    rows_per_request: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float


def run_cell(target, payloads: list, rows: int, concurrency: int, seconds: float, warmup: float) -> Cell:
    import numpy as np

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    barrier = threading.Barrier(concurrency + 1)
    window = {}

    def loop(w: int) -> None:
        call = target.worker()
        i = w * 7919 % len(payloads)
        barrier.wait()
        while time.perf_counter() < window["warm_until"]:
            call(payloads[i % len(payloads)])
            i += 1
        mine, end = latencies[w], window["end"]
        while True:
            began = time.perf_counter()
            if began >= end:
                break
            ok = call(payloads[i % len(payloads)])
            mine.append((time.perf_counter() - began) * 1000)
            errors[w] += not ok
            i += 1

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(concurrency)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["warm_until"], window["end"] = now + warmup, now + warmup + seconds
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - window["warm_until"]  # until the last in-flight request returned
    all_ms = np.concatenate([np.asarray(x) for x in latencies])
    n = int(all_ms.size)
    return Cell(target.label, rows, concurrency, n, sum(errors), round(elapsed, 3), round(n / elapsed, 1),
                round(n * rows / elapsed, 1), round(float(np.percentile(all_ms, 50)), 2),
                round(float(np.percentile(all_ms, 99)), 2))


# --- the run ---------------------------------------------------------------------------------------

def main() -> None:
    args = parse_args()
    if args.home:
        os.environ["ASSAY_HOME"] = str(args.home.resolve())
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - {"assay", "mlserver", "in-process"}
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}")

    import numpy as np
    import polars as pl

    from assay.settings import mlflow_tracking_uri, state, usecases_dir
    from assay.spec import load_spec
    from resources.registry import ModelRegistry
    from resources.deployment.model_server import LocalModelServer
    from serving.requests import v2_request
    from training.tags import FAMILY_TAG, TRAINING_SET_SHA256_TAG
    from training.train import model_input

    layout = state()
    spec_path = usecases_dir() / f"{args.use_case}.yaml"
    if not spec_path.exists():
        raise SystemExit(f"no use case {args.use_case!r} ({spec_path} does not exist)")
    spec = load_spec(spec_path)
    demo = "run `make demo` first (or point --home / ASSAY_HOME at a state folder that has one)"
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (layout.mlflow / "mlflow.db").exists():
        raise SystemExit(f"{layout.root} has no model registry, so no champion for {spec.name}: {demo}")
    registry = ModelRegistry(tracking_uri=mlflow_tracking_uri(layout), artifact_root=str(layout.mlflow / "artifacts"))
    if args.version:
        from mlflow.exceptions import MlflowException

        try:
            measured = registry.version(spec.name, args.version)
        except MlflowException:
            raise SystemExit(f"{layout.root} has no version {args.version} of {spec.name}") from None
    else:
        measured = registry.alias(spec.name)
        if measured is None:
            raise SystemExit(f"{layout.root} has no champion for {spec.name}: {demo}")
    snapshot_path = layout.training_snapshot(spec.name, measured.tags[TRAINING_SET_SHA256_TAG])
    if not snapshot_path.exists():
        raise SystemExit(f"the training-set snapshot of {spec.name} v{measured.version} is missing: {snapshot_path}")

    f = spec.features
    features = f.feature_set()
    sample = pl.read_parquet(snapshot_path).tail(SAMPLE_ROWS)
    family = measured.tags.get(FAMILY_TAG, "?")
    print(f"{spec.name} v{measured.version} ({family}), {sample.height} rows of snapshot {snapshot_path.name[:12]}…; "
          f"state {layout.root}", flush=True)

    def body(frame: pl.DataFrame) -> bytes:
        return json.dumps(v2_request(frame, f.columns.numeric, f.columns.categorical)).encode()

    single_bodies = [body(sample[i : i + 1]) for i in range(sample.height)]
    batch_starts = list(range(0, sample.height - BATCH + 1, BATCH // 2))
    batch_bodies = [body(sample[s : s + BATCH]) for s in batch_starts]
    single_frames = [model_input(sample[i : i + 1], features) for i in range(sample.height)]
    batch_frames = [model_input(sample[s : s + BATCH], features) for s in batch_starts]

    import mlflow.pyfunc

    registry.client()  # sets the tracking URI for models:/ URIs
    model = mlflow.pyfunc.load_model(measured.uri)
    check_frame = model_input(sample.tail(BATCH), features)
    offline = np.asarray(model.predict(check_frame), dtype=float)

    load_before = os.getloadavg()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    scratch = Path(tempfile.mkdtemp(prefix="assay-bench-serving-"))
    cells: list[Cell] = []
    agreement: dict[str, float] = {}
    assay_server, bare = None, None
    try:
        plan = []
        taken: set[int] = set()
        if "assay" in targets:
            port = free_ports(args.first_port, 3, taken)
            taken |= {port, port + 1, port + 2}
            assay_server = LocalModelServer(root=str(scratch / "assay"), http_port=port, grpc_port=port + 1,
                                            metrics_port=port + 2, ready_timeout_seconds=180)
            print(f"starting Assay's server on :{port} …", flush=True)
            assay_server.serve(registry, [(spec.name, measured.version)])
            plan.append(HttpTarget("assay", assay_server.url, spec.name))
        if "mlserver" in targets:
            model_dir = registry.download(spec.name, measured.version, scratch / "bare-model")
            port = free_ports(args.first_port, 3, taken)
            bare = BareMLServer(scratch / "bare", spec.name, measured.version, model_dir, port)
            print(f"starting bare MLServer (stock MLflowRuntime) on :{port} …", flush=True)
            bare.start()
            plan.append(HttpTarget("mlserver", bare.url, spec.name))
        if "in-process" in targets:
            plan.append(InProcessTarget(model))

        for target in plan:
            is_http = isinstance(target, HttpTarget)
            served = np.asarray(target.predict(body(sample.tail(BATCH)) if is_http else check_frame), dtype=float)
            agreement[target.label] = float(np.max(np.abs(served - offline)))
            for rows, payloads in ((1, single_bodies if is_http else single_frames),
                                   (BATCH, batch_bodies if is_http else batch_frames)):
                for concurrency in [int(c) for c in args.concurrency.split(",")]:
                    cell = run_cell(target, payloads, rows, concurrency, args.seconds, args.warmup_seconds)
                    cells.append(cell)
                    print(f"  {cell.target:<10} rows {rows:>3}  concurrency {concurrency}: {cell.requests_per_s:>8.1f} req/s  "
                          f"p50 {cell.p50_ms:6.2f} ms  p99 {cell.p99_ms:6.2f} ms  errors {cell.errors}", flush=True)
    finally:
        if assay_server is not None:
            assay_server.stop()
        if bare is not None:
            bare.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    goal = goal_verdict(cells)
    table = markdown(cells, agreement)
    machine = {
        "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "packages": package_versions(),
    }
    print()
    print(f"{spec.name} v{measured.version} ({family}); {started_at}; {machine['cores']} cores, load average "
          f"{machine['load_average_before'][0]} before, {machine['load_average_after'][0]} after; "
          f"{args.seconds:g} s per cell after {args.warmup_seconds:g} s warm-up, closed loop")
    print()
    print(table)
    print()
    print(goal["line"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "use_case": spec.name, "version": measured.version, "family": family, "measured_at": started_at,
            "seconds_per_cell": args.seconds, "warmup_seconds": args.warmup_seconds, "machine": machine,
            "max_abs_difference_from_offline": agreement, "cells": [asdict(c) for c in cells],
            "goal": goal, "table": table,
        }, indent=2) + "\n")
        print(f"wrote {args.json}")


def goal_verdict(cells: list[Cell]) -> dict:
    """The goal holds when Assay's single-row cell at some concurrency is both fast and busy enough."""
    single = [c for c in cells if c.target == "assay" and c.rows_per_request == 1]
    parts, met = [], False
    for c in single:
        ok = c.p99_ms < GOAL_P99_MS and c.requests_per_s > GOAL_REQ_PER_S and c.errors == 0
        met |= ok
        parts.append(f"concurrency {c.concurrency}: p99 {c.p99_ms:.2f} ms at {c.requests_per_s:.0f} req/s "
                     f"({'met' if ok else 'not met'})")
    verdict = "met" if met else "not met" if single else "not measured (assay target not run)"
    line = f"goal: single-row p99 < {GOAL_P99_MS:g} ms and > {GOAL_REQ_PER_S:g} req/s: {verdict}"
    if parts:
        line += " — Assay " + "; ".join(parts)
    return {"met": met, "p99_ms_below": GOAL_P99_MS, "requests_per_s_above": GOAL_REQ_PER_S, "line": line}


def markdown(cells: list[Cell], agreement: dict[str, float]) -> str:
    lines = ["| target | rows/request | concurrency | req/s | rows/s | p50 ms | p99 ms | errors | requests | max abs diff vs offline |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in cells:
        lines.append(f"| {c.target} | {c.rows_per_request} | {c.concurrency} | {c.requests_per_s:,.1f} | "
                     f"{c.rows_per_s:,.0f} | {c.p50_ms:.2f} | {c.p99_ms:.2f} | {c.errors} | {c.requests:,} | "
                     f"{agreement.get(c.target, float('nan')):.1e} |")
    return "\n".join(lines)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("mlserver", "mlserver-mlflow", "mlflow", "torch", "lightgbm", "pandas", "polars", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()
