"""Runs whose process died without a word (SIGKILL, OOM killer, power loss) are marked failed.

A run here executes in one process: the `assay` CLI, the plain `dagster` CLI, or a run worker the
webserver or daemon launched (`in_process_executor`). Killed with -9, nothing reports its end, and
Dagster's run monitoring does not help: the DefaultRunLauncher cannot check a run worker's health, so
the run would stay STARTED forever and keep its concurrency slots. Each run records the pid that
executes it (the engine event "Executing steps in process (pid: N)"); when Assay next starts, a
STARTING or STARTED run whose process is gone, or whose pid now belongs to a process started after that
event, is reported failed with a message saying so. It runs when an `assay` command that reads or
starts runs begins (cli/main.py) and, while the daemon runs, every minute as the
`assay_interrupted_runs` sensor (automation/interrupted_runs.py).

Local only: on Kubernetes the run's process lives in another pod and the Helm chart's run monitoring
owns this.
"""

from __future__ import annotations

import dagster as dg

from assay.processes import started_before

_UNFINISHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def run_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid that last said it executes the run, and when it said so; None where none did."""
    found = None
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    for record in records:
        pid = record.event_log_entry.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None:
            found = (int(pid.value), record.event_log_entry.timestamp)
    return found


def fail_interrupted_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report every unfinished run whose process is gone as failed; returns their run ids."""
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=_UNFINISHED)):
        run = record.dagster_run
        process = run_process(instance, run.run_id)
        if process is None:  # not started executing yet (a queued or launching run): nothing to judge
            continue
        pid, since = process
        if started_before(pid, since):
            continue
        instance.report_run_failed(
            run, message=f"The process that executed this run (pid {pid}) ended without reporting an outcome "
                         "(killed, e.g. with SIGKILL, or crashed); marked failed when Assay next started.")
        failed.append(run.run_id)
    return failed


def fail_interrupted_runs_at_start() -> list[str]:
    """Called when an `assay` command starts: the instance is the state folder's (DAGSTER_HOME)."""
    from assay.settings import environment

    if environment() != "local":
        return []
    with dg.DagsterInstance.get() as instance:
        return fail_interrupted_runs(instance)
