"""DuckDB allows one writer process per file; Assay serializes every writer with a lock file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date

import duckdb
import pytest

from harness.replay import replay

MATERIALIZE = """
import sys, dagster as dg
from definitions import current_definitions
defs = current_definitions()
with dg.DagsterInstance.get() as instance:
    result = dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
        selection=[dg.AssetKey(["flights", sys.argv[1]])], partition_key=sys.argv[2], raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def _start(assay_home, table: str, day: str) -> subprocess.Popen:
    env = {**os.environ, "ASSAY_HOME": str(assay_home.root), "DAGSTER_HOME": str(assay_home.dagster_home)}
    return subprocess.Popen([sys.executable, "-c", MATERIALIZE, table, day], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def landed(assay_home, landing, flights_spec):
    replay(flights_spec, landing, date(2013, 1, 1), 2)


def test_a_raw_load_waits_for_a_writer_in_another_process_instead_of_failing(assay_home, warehouse, landed):
    with warehouse.writer() as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS probe")
        load = _start(assay_home, "raw_flights", "2013-01-01")
        time.sleep(8)  # long enough for the run to reach its write; DuckDB alone would fail it now
        assert load.poll() is None, load.communicate()[0][-3000:]
    output, _ = load.communicate(timeout=120)
    assert load.returncode == 0, output[-3000:]


def test_two_materializations_at_once_both_land(assay_home, warehouse, landed):
    loads = [_start(assay_home, "raw_flights", "2013-01-02"), _start(assay_home, "raw_weather", "2013-01-02")]
    outputs = [load.communicate(timeout=180)[0] for load in loads]
    assert [load.returncode for load in loads] == [0, 0], [o[-2000:] for o in outputs]
    with warehouse.reader() as connection:
        assert connection.execute("SELECT count(*) FROM flights.raw_flights WHERE _partition = '2013-01-02'").fetchone()[0] == 943
        assert connection.execute("SELECT count(*) FROM flights.raw_weather WHERE _partition = '2013-01-02'").fetchone()[0] == 72


def test_without_the_lock_duckdb_refuses_a_second_writer_process(assay_home, warehouse, landed):
    """The failure the lock exists to prevent, shown on the real engine."""
    probe = f"import duckdb; duckdb.connect({str(assay_home.warehouse)!r})"
    with warehouse.writer():
        held = duckdb.connect(str(assay_home.warehouse))
        try:
            second = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        finally:
            held.close()
    assert second.returncode != 0 and "lock" in second.stderr.lower()


def test_a_writer_that_cannot_get_the_lock_says_who_holds_it(assay_home, warehouse, landed):
    with warehouse.writer():
        holder = subprocess.run(
            [sys.executable, "-c",
             f"from resources.warehouse import Warehouse\n"
             f"w = Warehouse(path={warehouse.path!r}, lock_timeout_seconds=0.2)\n"
             f"with w.writer(): pass"],
            capture_output=True, text=True,
        )
    assert holder.returncode != 0
    assert "still locked" in holder.stderr and f"pid {os.getpid()}" in holder.stderr
