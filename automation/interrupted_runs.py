"""The sensor that fails runs whose process was killed, while the daemon runs (`make ui`).

The check itself is assay/interrupted_runs.py; the `assay` CLI runs it too when a command starts. It is
not run when the code location loads: every run worker, code server and `dagster` CLI call loads it,
and opening the instance there cost 0.5 s of each load.
"""

import dagster as dg

from assay.interrupted_runs import fail_interrupted_runs
from assay.settings import environment


def build_interrupted_runs_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name="assay_interrupted_runs",
        description="Marks failed every STARTING or STARTED run whose process is gone (killed, e.g. with "
        "SIGKILL, or crashed), so it neither shows as running forever nor holds its concurrency slots.",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def interrupted_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        if environment() != "local":  # a run's pid names a process in another pod there
            return dg.SkipReason("runs execute in their own pods: the Helm chart's run monitoring judges them")
        failed = fail_interrupted_runs(context.instance)
        return dg.SkipReason(f"marked failed: {', '.join(failed)}" if failed else "no interrupted run")

    return interrupted_runs
