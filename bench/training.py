"""Training benchmark: time and holdout metrics per model family on the demo's training set.

    make demo && .venv/bin/python bench/training.py [--reps 3] [--snapshot PATH]
    .venv/bin/python bench/training.py --families torch --devices cpu,cuda --snapshot PATH   # a GPU machine

The families (and, for torch, the devices) alternate within each repetition, on the same split the
training entrypoint uses (holdout: the spec's last days). Times are the fit alone; the Pipes step
around it (process start, MLflow logging and registration) is reported by `assay status` / the UI as
the step's duration. Replaces its section of bench/RESULTS.md (one per use case, and one for devices).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import importlib  # noqa: E402

import polars as pl  # noqa: E402
import torch  # noqa: E402

from assay.settings import state  # noqa: E402
from assay.spec import load_spec  # noqa: E402
from training.evaluation import metrics  # noqa: E402
from training.tabular import FAMILIES  # noqa: E402
from training.torch_family import CPU_THREADS  # noqa: E402
from training.train import split_by_time  # noqa: E402
from results import write_section  # noqa: E402  (bench/results.py, beside this script)


def contenders(families: list[str], devices: list[str]) -> dict[str, object]:
    """Label -> fit function. Only torch takes a device; a family is imported only when asked for,
    so a GPU machine without LightGBM can time torch alone."""
    chosen = {}
    for name in families:
        module = importlib.import_module(f"training.{name}_family")
        if name == "torch":
            for device in devices:
                chosen[f"torch ({device})"] = lambda *a, m=module, d=device: m.train(*a, device=d)
        else:
            chosen[name] = module.train
    return chosen


def latest_snapshot(use_case: str) -> Path:
    folder = state().snapshots / use_case / "training_set"
    snapshots = sorted(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime)
    if not snapshots:
        raise SystemExit(f"no training-set snapshot in {folder}: run `make demo` first")
    return snapshots[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--use-case", default="flights")
    parser.add_argument("--snapshot", type=Path)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--devices", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch's devices, comma-separated (cpu,cuda times one against the other)")
    args = parser.parse_args()
    devices = args.devices.split(",")
    fits = contenders(args.families.split(","), devices)

    spec = load_spec(REPO / "usecases" / f"{args.use_case}.yaml")
    f = spec.features
    features = f.feature_set()
    snapshot = args.snapshot or latest_snapshot(spec.name)
    train, valid, holdout = split_by_time(pl.read_parquet(snapshot), f.timestamp, spec.training.holdout_days)
    y = holdout[f.target].to_numpy().astype(float)

    seconds: dict[str, list[float]] = {name: [] for name in fits}
    scores: dict[str, dict[str, float]] = {}
    for _ in range(args.reps):
        for name, fit in fits.items():
            began = time.perf_counter()
            model = fit(train, valid, features, 13)
            seconds[name].append(time.perf_counter() - began)
            scores[name] = metrics(y, model.predict(holdout), f.task) | {
                k: v for k, v in model.params.items() if k in ("epochs_run", "seconds_per_epoch", "best_iteration", "device")}

    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    span = (holdout[f.timestamp].max() - train[f.timestamp].min()).days + 1
    heading = (f"## Training, {spec.name} " if len(devices) == 1
               else f"## Training on {' and '.join(devices)}, {spec.name}, a {span}-day training set ")
    lines = [
        f"{heading}({f.task}), {args.reps} repetitions, min / median / max\n",
        f"machine: {os.cpu_count()} cores{gpu}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads outside training ({CPU_THREADS} in it); snapshot {snapshot.name[:12]}; "
        f"{train.height + valid.height} training rows, {holdout.height} holdout rows (last {spec.training.holdout_days} days)\n",
        "| family | fit seconds | holdout |\n| --- | --- | --- |",
    ]
    for name, values in seconds.items():
        shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores[name].items())
        lines.append(f"| {name} | {min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} | {shown} |")
    report = "\n".join(lines) + "\n"
    write_section(heading, report)
    print(report)


if __name__ == "__main__":
    main()
