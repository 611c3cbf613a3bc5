"""Sensor and automation ticks, run in this process against a real instance.

The daemon does this on a clock; the replay simulation and the tests do it here, tick by tick, so a
half year of days runs through the same sensors and automation conditions deterministically and
without sleeping. Requested runs execute in-process with `dg.materialize` on the same instance,
tagged as the daemon would tag them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from harness.runs import run_step


@dataclass
class TickRun:
    """One run a tick asked for, after it ran."""

    trigger: str
    assets: list[str]
    partition: str | None
    success: bool
    run_id: str
    tags: dict


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, selection: list[dg.AssetKey],
            partition: str | None, tags: dict, trigger: str) -> TickRun:
    run = run_step(defs, instance, trigger, selection, partition, tags)
    return TickRun(trigger, [k.to_user_string() for k in selection], partition, run.success, run.run_id, dict(tags))


def tick_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, name: str,
                cursor: str | None) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """(run requests, new cursor, skip reason) of one evaluation of sensor `name`."""
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources,
                                 definitions=defs, sensor_name=name) as context:
        result = sensor.evaluate_tick(context)
    return list(result.run_requests or []), result.cursor, result.skip_message


def run_sensor_requests(defs: dg.Definitions, instance: dg.DagsterInstance, name: str,
                        requests: list[dg.RunRequest]) -> list[TickRun]:
    """Execute a sensor's requests, skipping a run key already used (the daemon's deduplication)."""
    runs = []
    for request in requests:
        tags = {**(request.tags or {}), "dagster/sensor_name": name}
        if request.run_key:
            existing = instance.get_run_records(
                dg.RunsFilter(tags={"dagster/sensor_name": name, "dagster/run_key": request.run_key}), limit=1)
            if existing:
                continue
            tags["dagster/run_key"] = request.run_key
        runs.append(execute(defs, instance, list(request.asset_selection or []), request.partition_key, tags,
                            trigger=name))
    return runs


def tick_automation(defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None,
                    evaluation_time: datetime | None = None):
    """Evaluate every automation condition once and run what it requests, one run per partition.

    Returns (the evaluation result, the runs, the cursor for the next tick)."""
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                               evaluation_time=evaluation_time)
    by_partition: dict[str | None, list[dg.AssetKey]] = defaultdict(list)
    for evaluation in result.results:
        key = evaluation.key
        if not isinstance(key, dg.AssetKey):
            continue
        for partition in result.get_requested_partitions(key):
            by_partition[partition].append(key)
    runs = [execute(defs, instance, sorted(keys), partition, {"dagster/from_automation_condition": "true"},
                    trigger="automation")
            for partition, keys in sorted(by_partition.items(), key=lambda item: item[0] or "")]
    return result, runs, result.cursor
