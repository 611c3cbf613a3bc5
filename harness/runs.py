"""Materializing a use case's graph for a window of days, as the demo, `assay build` and the benchmarks do it.

The order is the one a backfill in the UI takes: dimensions once, each day's raw partitions as
their own run (a bad file on one day must not hold back the others), the features of the whole
window in one dbt invocation (single-run backfill), then the training set. Runs go through the
same Dagster instance the UI reads, so everything here shows up there.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import dagster as dg

from assay.spec import UseCase


@dataclass
class StepRun:
    what: str
    partition: str | None
    success: bool
    run_id: str


def stage(spec: UseCase, *stages: str) -> dg.AssetSelection:
    """A use case's assets in any of `stages`, by the `use_case` and `stage` tags every asset carries."""
    in_stages = functools.reduce(operator.or_, (dg.AssetSelection.tag("stage", name) for name in stages))
    return dg.AssetSelection.tag("use_case", spec.name) & in_stages


def selected_keys(defs: dg.Definitions, selection: dg.AssetSelection,
                  partitioned: bool | None = None) -> list[dg.AssetKey]:
    """The keys `selection` picks in `defs`; `partitioned` keeps only the daily (True) or only the
    unpartitioned (False) ones, which no tag or kind tells apart."""
    graph = defs.resolve_asset_graph()
    return sorted(key for key in selection.resolve(graph)
                  if partitioned is None or graph.get(key).is_partitioned == partitioned)


def feature_keys(defs: dg.Definitions, spec: UseCase) -> list[dg.AssetKey]:
    """What a features run builds: the features and the daily staging models under them (the dimension
    views follow their own tables, not the days)."""
    return selected_keys(defs, stage(spec, "features")) + selected_keys(defs, stage(spec, "staging"), partitioned=True)


def run_step(defs: dg.Definitions, instance: dg.DagsterInstance, what: str, selection, partition: str | None = None,
             tags: dict | None = None, label: str | None = None) -> StepRun:
    """One run of `selection` in this process, recorded on `instance`; a failed run is returned, not raised.
    `label` names it in a summary (default: its partition)."""
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
    dimensions = selected_keys(defs, stage(spec, "raw"), partitioned=False)
    if dimensions:
        runs.append(run_step(defs, instance, "raw dimensions", dimensions))
        dimension_views = selected_keys(defs, stage(spec, "staging"), partitioned=False)
        if dimension_views and runs[-1].success:
            runs.append(run_step(defs, instance, "dimension views", dimension_views))
    daily = selected_keys(defs, stage(spec, "raw"), partitioned=True)
    for day in days:
        runs.append(run_step(defs, instance, "raw", daily, partition=day))
    features = feature_keys(defs, spec)
    for first, last in loaded_segments([(r.partition, r.success) for r in runs if r.what == "raw"]):
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        runs.append(run_step(defs, instance, "features", features, tags=tags, label=f"{first}...{last}"))
    built = [r for r in runs if r.what == "features"]
    if through != "features" and built and all(r.success for r in built):
        runs.append(run_step(defs, instance, "training set", selected_keys(defs, stage(spec, "training_set"))))
        if through in ("champion", "deployment") and runs[-1].success:
            models = selected_keys(defs, stage(spec, "model", "champion"))
            runs.append(run_step(defs, instance, "models and champion", models))
            if through == "deployment" and runs[-1].success:
                # Environments that need a person's approval are left for `assay approve` + a run.
                gated = (dg.AssetSelection.tag("environment", name) for name in spec.release.approval_required)
                automatic = functools.reduce(operator.sub, gated, stage(spec, "deployment"))
                runs.append(run_step(defs, instance, "deployments", selected_keys(defs, automatic)))
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
