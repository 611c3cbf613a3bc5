"""A run whose process is killed with -9 is marked failed when Assay next starts, not left STARTED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date

import dagster as dg
import pytest

from assay.interrupted_runs import fail_interrupted_runs, run_process
from harness.replay import replay

MATERIALIZE = """
import dagster as dg
from definitions import current_definitions
defs = current_definitions()
with dg.DagsterInstance.get() as instance:
    dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
                   selection=[dg.AssetKey(["flights", "raw_flights"])], partition_key="2013-01-01")
"""


def _wait_for_run_executing(instance: dg.DagsterInstance, timeout: float = 120) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        if runs and run_process(instance, runs[0].run_id):
            return runs[0]
        time.sleep(0.5)
    raise AssertionError("the run never started executing")


def _next_start_by_the_cli() -> None:
    started = subprocess.run([sys.executable, "-m", "cli.main", "status"], env=dict(os.environ),
                             capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr[-2000:]


def _next_tick_of_the_daemon_s_sensor(instance: dg.DagsterInstance) -> None:
    from automation.interrupted_runs import build_interrupted_runs_sensor

    result = build_interrupted_runs_sensor()(dg.build_sensor_context(instance=instance))
    assert "marked failed" in result.skip_message


@pytest.mark.parametrize("next_start", ["cli", "sensor"])
def test_a_run_killed_with_sigkill_is_marked_failed_when_assay_next_starts(
        next_start, assay_home, instance, landing, warehouse, flights_spec):
    replay(flights_spec, landing, date(2013, 1, 1), 1)
    with warehouse.writer():  # the run waits for the warehouse inside its step: killed mid-run
        worker = subprocess.Popen([sys.executable, "-c", MATERIALIZE], env=dict(os.environ),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run = _wait_for_run_executing(instance)
        assert fail_interrupted_runs(instance) == []  # alive: left running
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

    if next_start == "cli":
        _next_start_by_the_cli()
    else:
        _next_tick_of_the_daemon_s_sensor(instance)

    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    failure = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records[0]
    assert f"pid {worker.pid}" in failure.event_log_entry.dagster_event.message
    assert "SIGKILL" in failure.event_log_entry.dagster_event.message

