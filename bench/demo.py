"""Start-up benchmark: `make demo`'s wall time from a clean state (the install already done).

    .venv/bin/python bench/demo.py

Runs `assay demo` as `make demo` does, in a fresh state folder with its own serving ports so a
running demo is left alone, then stops the model servers it started. Reports the wall time and the
command's own summary line.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from results import write_section  # noqa: E402  (bench/results.py, beside this script)

SECTION = "## make demo from a clean state"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="assay-demo-bench-"))
    env = {key: value for key, value in os.environ.items()
           if key not in ("DAGSTER_HOME", "ASSAY_WAREHOUSE_PATH", "MLFLOW_TRACKING_URI")}
    env |= {"ASSAY_HOME": str(state), "ASSAY_SERVING_PORTS": f"staging={_free_port()},production={_free_port()}"}
    assay = str(Path(sys.executable).parent / "assay")
    began = time.perf_counter()
    try:
        demo = subprocess.run([assay, "demo"], cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - began
    finally:
        subprocess.run([assay, "serve", "stop"], cwd=REPO, env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
    if demo.returncode != 0:
        raise SystemExit(f"assay demo failed ({demo.returncode}):\n{demo.stdout[-3000:]}\n{demo.stderr[-3000:]}")
    built = next((line for line in demo.stdout.splitlines() if line.startswith("Built in")), "")
    building = float(built.split()[2].rstrip("s.")) if built else float("nan")
    champions = [line for line in demo.stdout.splitlines() if "assets materialized" in line]
    report = "\n".join([
        f"{SECTION} (`bench/demo.py`), {date.today().isoformat()}\n",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; `assay demo` in a fresh state folder "
        "(replay 21 days of both use cases, build every asset, train both families, gate, serve in staging)\n",
        "| measure | result |\n| --- | --- |",
        f"| wall, from a clean state to both champions serving | {wall:.0f} s |",
        f"| of it building the graph (the demo's own `{built}`) | {building:.0f} s |",
        f"| of it before building: process start, imports, loading the definitions | {wall - building:.0f} s |",
        *(f"| {line.strip()} | |" for line in champions),
    ]) + "\n"
    write_section(SECTION, report)
    print(report)


if __name__ == "__main__":
    main()
