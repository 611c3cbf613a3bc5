"""Declarative automation: which assets follow their upstream by themselves, and under what gate.

Dagster's `eager()` alone acts only on the latest time window and ignores checks that failed in an
earlier run; both matter here. Replayed days are not the partition set's latest window (it spans
the whole of 2013), so feature partitions follow any raw partition that updates. And nothing
follows an upstream whose blocking checks failed, in this run or any earlier one.
"""

import dagster as dg


def follows_gated_upstream() -> dg.AutomationCondition:
    """Materialize when an upstream updates, once every upstream blocking check has passed."""
    return (dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()).with_label(
        "eager, upstream gates passed"
    )


def follows_gated_partitions() -> dg.AutomationCondition:
    """As `follows_gated_upstream`, for every partition, not only the latest day."""
    eager_any_day = dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())
    return (eager_any_day & dg.AutomationCondition.all_deps_blocking_checks_passed()).with_label(
        "eager on any day, upstream gates passed"
    )


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Evaluates every asset's automation condition; on by default, since automation is the point."""
    return dg.AutomationConditionSensorDefinition(
        "assay_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
