"""Training benchmark: time and holdout metrics per model family on the demo's training set.

    make demo && .venv/bin/python bench/training.py [--reps 3] [--snapshot PATH]

The families alternate within each repetition, on the same split the training entrypoint uses
(holdout: the spec's last days). Times are the fit alone; the Pipes step around it (process start,
MLflow logging and registration) is reported by `assay status` / the UI as the step's duration.
Replaces its use case's section of bench/RESULTS.md.
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

import polars as pl  # noqa: E402
import torch  # noqa: E402

from assay.settings import state  # noqa: E402
from assay.spec import load_spec  # noqa: E402
from training import lightgbm_family, torch_family  # noqa: E402
from training.evaluation import metrics  # noqa: E402
from training.tabular import FeatureSet  # noqa: E402
from training.train import split_by_time  # noqa: E402
from results import write_section  # noqa: E402  (bench/results.py, beside this script)

FAMILIES = {"lightgbm": lightgbm_family, "torch": torch_family}


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
    args = parser.parse_args()

    spec = load_spec(REPO / "usecases" / f"{args.use_case}.yaml")
    f = spec.features
    features = FeatureSet(f.columns.numeric, f.columns.categorical, f.target, f.task)
    snapshot = args.snapshot or latest_snapshot(spec.name)
    train, valid, holdout = split_by_time(pl.read_parquet(snapshot), f.timestamp, spec.training.holdout_days)
    y = holdout[f.target].to_numpy().astype(float)

    seconds: dict[str, list[float]] = {name: [] for name in FAMILIES}
    scores: dict[str, dict[str, float]] = {}
    for _ in range(args.reps):
        for name, family in FAMILIES.items():
            began = time.perf_counter()
            model = family.train(train, valid, features, 13)
            seconds[name].append(time.perf_counter() - began)
            scores[name] = metrics(y, model.predict(holdout), f.task) | {
                k: v for k, v in model.params.items() if k in ("epochs_run", "best_iteration", "device")}

    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [
        f"## Training, {spec.name} ({f.task}), {args.reps} repetitions, min / median / max\n",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__} on {device}; "
        f"{train.height + valid.height} training rows, {holdout.height} holdout rows (last {spec.training.holdout_days} days)\n",
        "| family | fit seconds | holdout |\n| --- | --- | --- |",
    ]
    for name, values in seconds.items():
        shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores[name].items())
        lines.append(f"| {name} | {min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} | {shown} |")
    report = "\n".join(lines) + "\n"
    write_section(f"## Training, {spec.name} ", report)
    print(report)


if __name__ == "__main__":
    main()
