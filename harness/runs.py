"""Materializing a use case's graph for a window of days, as the demo, `assay build` and the benchmarks do it.

The order is the one a backfill in the UI takes: dimensions once, each day's raw partitions as
their own run (a bad file on one day must not hold back the others), the features of the whole
window in one dbt invocation (single-run backfill), then the training set. Runs go through the
same Dagster instance the UI reads, so everything here shows up there.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from assay.spec import UseCase


@dataclass
class StepRun:
    what: str
    partition: str | None
    success: bool
    run_id: str


def _keys(defs: dg.Definitions, spec: UseCase, stage: str, partitioned: bool | None = None) -> list[dg.AssetKey]:
    keys = []
    for asset_spec in defs.resolve_all_asset_specs():
        if asset_spec.key.path[0] != spec.name or asset_spec.tags.get("stage") != stage:
            continue
        if partitioned is not None and (asset_spec.partitions_def is not None) != partitioned:
            continue
        keys.append(asset_spec.key)
    return keys


def _run(defs, instance, what, selection, partition=None, tags=None, label=None) -> StepRun:
    result = dg.materialize(
        assets=list(defs.assets),
        resources=defs.resources,
        selection=selection,
        partition_key=partition,
        instance=instance,
        tags={"dagster/from": "assay", **(tags or {})},
        raise_on_error=False,
    )
    return StepRun(what, label or partition, result.success, result.run_id)


STAGES = ("features", "training_set", "champion", "deployment")


def materialize_window(
    defs: dg.Definitions, instance: dg.DagsterInstance, spec: UseCase, days: list[str], through: str = "deployment"
) -> list[StepRun]:
    """Build the window's graph up to and including `through` (one of STAGES)."""
    if through not in STAGES:
        raise ValueError(f"through must be one of {STAGES}, not {through!r}")
    runs: list[StepRun] = []
    dimensions = _keys(defs, spec, "raw", partitioned=False)
    if dimensions:
        runs.append(_run(defs, instance, "raw dimensions", dimensions))
        dimension_views = _keys(defs, spec, "staging", partitioned=False)
        if dimension_views and runs[-1].success:
            runs.append(_run(defs, instance, "dimension views", dimension_views))
    daily = _keys(defs, spec, "raw", partitioned=True)
    for day in days:
        runs.append(_run(defs, instance, "raw", daily, partition=day))
    features = _keys(defs, spec, "features") + _keys(defs, spec, "staging", partitioned=True)
    for first, last in loaded_segments([(r.partition, r.success) for r in runs if r.what == "raw"]):
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        runs.append(_run(defs, instance, "features", features, tags=tags, label=f"{first}...{last}"))
    built = [r for r in runs if r.what == "features"]
    if through != "features" and built and all(r.success for r in built):
        runs.append(_run(defs, instance, "training set", _keys(defs, spec, "training_set")))
        if through in ("champion", "deployment") and runs[-1].success:
            models = _keys(defs, spec, "model") + _keys(defs, spec, "champion")
            runs.append(_run(defs, instance, "models and champion", models))
            if through == "deployment" and runs[-1].success:
                # Environments that need a person's approval are left for `assay approve` + a run.
                automatic = [k for k in _keys(defs, spec, "deployment")
                             if k.path[-1].removeprefix("deployment_") not in spec.release.approval_required]
                runs.append(_run(defs, instance, "deployments", automatic))
    return runs


def loaded_segments(days: list[tuple[str, bool]]) -> list[tuple[str, str]]:
    """Runs of consecutive days whose raw data loaded: a day that failed its gates splits the
    window, so no feature run reads across a hole."""
    segments: list[tuple[str, str]] = []
    start = previous = None
    for day, ok in days:
        if ok and start is None:
            start = day
        if not ok and start is not None:
            segments.append((start, previous))
            start = None
        previous = day
    if start is not None:
        segments.append((start, previous))
    return segments
