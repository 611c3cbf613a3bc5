"""`assay status`: each use case, its assets' latest state, its gate results, and the days its daily
data gates held back (each day's latest evaluation, with the reason), from the instance.

Reads the Dagster instance the UI reads (no run is started, the warehouse is not opened), so it is
safe to call while runs are in flight.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import dagster as dg

from assay import asset_keys
from definitions import current_definitions


def _when(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds") if timestamp else None


def _asset_state(instance: dg.DagsterInstance, spec: dg.AssetSpec) -> dict:
    event = instance.get_latest_materialization_event(spec.key)
    state: dict = {"key": spec.key.to_user_string(), "stage": spec.tags.get("stage"), "materialized": event is not None}
    if spec.partitions_def is not None:
        state["partitions_materialized"] = len(instance.get_materialized_partitions(spec.key))
    if event is None:
        state["fresh"] = False
        return state
    materialization = event.asset_materialization
    metadata = materialization.metadata if materialization else {}
    state.update(
        last_materialized=_when(event.timestamp),
        last_partition=materialization.partition if materialization else None,
        run_id=event.run_id,
        data_version=materialization.tags.get("dagster/data_version") if materialization and materialization.tags else None,
        row_count=metadata["dagster/row_count"].value if "dagster/row_count" in metadata else None,
    )
    policy = spec.freshness_policy
    fail_window = getattr(policy, "fail_window", None)
    if fail_window is not None:
        # The freshness daemon shows the same in the UI; computing it here keeps the CLI daemon-free.
        age = time.time() - event.timestamp
        state["fresh"] = age <= fail_window.to_timedelta().total_seconds()
    return state


def _gate_state(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey) -> dict:
    record = instance.get_latest_asset_check_evaluation_record(check_key)
    gate = {"asset": check_key.asset_key.to_user_string(), "check": check_key.name}
    if record is None or record.event is None or record.event.dagster_event is None:
        return {**gate, "result": "not evaluated"}
    evaluation = record.event.dagster_event.event_specific_data
    if not isinstance(evaluation, dg.AssetCheckEvaluation):  # planned in a run that stopped before it
        return {**gate, "result": "not evaluated", "run_id": record.run_id, "status": record.status.value}
    return {
        **gate,
        "result": "passed" if evaluation.passed else "failed",
        "description": evaluation.description,
        "evaluated": _when(record.create_timestamp),
        "partition": record.partition,
        "run_id": record.run_id,
    }


def _held_back(instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey]) -> list[dict]:
    """Days whose latest evaluation of a daily data gate failed, with the gate's reason: the features
    do not follow those days (automation/conditions.py), so they are missing from what was built."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    held = []
    for key in check_keys:
        latest: dict[str, object] = {}
        # newest first: the first record of a partition is its latest evaluation
        for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=100_000):
            if record.partition is not None and record.partition not in latest:
                latest[record.partition] = record
        for partition, record in sorted(latest.items()):
            entry = {"partition": partition, "asset": key.asset_key.to_user_string(), "check": key.name,
                     "run_id": record.run_id}
            if record.status == AssetCheckExecutionRecordStatus.FAILED:
                evaluation = record.event.dagster_event.event_specific_data if record.event else None
                held.append({**entry, "description": getattr(evaluation, "description", None)})
            elif record.status == AssetCheckExecutionRecordStatus.PLANNED and _run_failed(instance, record.run_id):
                # the load stopped before its gates (no landing file, say): one line per day and table
                held.append({**entry, "check": "(not evaluated)",
                             "description": f"run {record.run_id[:8]} failed before the data gates ran"})
    judged = {(h["partition"], h["asset"]) for h in held if h["check"] != "(not evaluated)"}
    unique = {(h["partition"], h["asset"], h["check"]): h for h in held
              if h["check"] != "(not evaluated)" or (h["partition"], h["asset"]) not in judged}
    return [unique[k] for k in sorted(unique)]


def _run_failed(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status == dg.DagsterRunStatus.FAILURE


def _champion(instance: dg.DagsterInstance, use_case: str) -> dict | None:
    """The champion as last promoted by the champion asset (the registry alias it set)."""
    event = instance.get_latest_materialization_event(asset_keys.champion(use_case))
    if event is None:
        return None
    metadata = event.asset_materialization.metadata
    return {k: metadata[k].value for k in ("champion_version", "family", "model_uri", "previous_champion")
            if k in metadata} | {"promoted": _when(event.timestamp)}


def _serving() -> dict:
    """Each environment's local model server: its URL and the versions it serves."""
    from assay.settings import state
    from resources.environments import local_deployer

    report = {}
    for environment, server in local_deployer(state()).servers().items():
        pid = server.pid()
        try:
            served = [{"name": s.name, "version": s.version} for s in server.served()] if pid else []
        except OSError:
            served = []
        report[environment] = {"url": server.url if pid else None, "pid": pid, "served": served}
    return report


def _recent_releases(use_case: str, last: int = 10) -> list[dict]:
    """The latest promotions, rollout steps, deployments and rollbacks (`assay releases` has all)."""
    from dataclasses import asdict

    from assay.releases import history
    from assay.settings import state

    return [asdict(e) for e in history(state().root, use_case)[-last:]]


def collect_status(defs: dg.Definitions | None = None, instance: dg.DagsterInstance | None = None) -> dict:
    defs = defs or current_definitions()
    instance = instance or dg.DagsterInstance.get()
    specs = defs.resolve_all_asset_specs()
    check_keys = defs.resolve_asset_graph().asset_check_keys
    report: dict = {"use_cases": {}, "serving": _serving()}
    for use_case in sorted({s.key.path[0] for s in specs}):
        assets = [_asset_state(instance, s) for s in specs if s.key.path[0] == use_case]
        gates = [_gate_state(instance, k) for k in sorted(check_keys, key=str) if k.asset_key.path[0] == use_case]
        daily_raw = {s.key for s in specs if s.key.path[0] == use_case and s.tags.get("stage") == "raw"
                     and s.partitions_def is not None}
        held_back = _held_back(instance, sorted((k for k in check_keys if k.asset_key in daily_raw), key=str))
        report["use_cases"][use_case] = {
            "champion": _champion(instance, use_case),
            "releases": _recent_releases(use_case),
            "assets": assets,
            "gates": gates,
            "held_back": held_back,
            "summary": {
                "assets": len(assets),
                "materialized": sum(a["materialized"] for a in assets),
                "stale": sum(a["materialized"] and not a.get("fresh", True) for a in assets),
                "gates_passed": sum(g["result"] == "passed" for g in gates),
                "gates_failed": sum(g["result"] == "failed" for g in gates),
                "gates_not_evaluated": sum(g["result"] == "not evaluated" for g in gates),
                "days_held_back": len({h["partition"] for h in held_back}),
            },
        }
    return report


def render_status(report: dict) -> str:
    lines = []
    for use_case, body in report["use_cases"].items():
        s = body["summary"]
        champion = body["champion"]
        lines.append(f"{use_case}: champion " + (
            f"v{champion['champion_version']} ({champion.get('family')}), {champion.get('model_uri')}"
            if champion else "none yet"))
        lines.append(
            f"{use_case}: {s['materialized']}/{s['assets']} assets materialized, {s['stale']} stale; "
            f"gates {s['gates_passed']} passed, {s['gates_failed']} failed, {s['gates_not_evaluated']} not evaluated"
        )
        for asset in body["assets"]:
            rows = f", {asset['row_count']} rows" if asset.get("row_count") is not None else ""
            when = asset.get("last_materialized") or "never"
            lines.append(f"  {asset['key']:<40} {when}{rows}")
        for event in body.get("releases", [])[-3:]:
            where = f" in {event['environment']}" if event["environment"] else ""
            lines.append(f"  release: {event['at']} v{event['version']} {event['event']}{where} by {event['by']}")
        for gate in body["gates"]:
            if gate["result"] == "failed":
                lines.append(f"  FAILED {gate['asset']}:{gate['check']}: {gate.get('description')}")
        if body.get("held_back"):
            lines.append(f"{use_case}: {s['days_held_back']} days held back by their data gates "
                         "(their features are not built):")
        for held in body.get("held_back", []):
            lines.append(f"  held back {held['partition']}: {held['asset']}:{held['check']}: {held['description']}")
    return "\n".join(lines)
