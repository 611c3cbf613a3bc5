"""The retrain sensor: asks for a new model when the served one drifts or decays, and only when safe.

Each evaluation looks at the latest day monitored (the `drift` and `live_performance` partitions)
and asks monitoring/triggers.py: did drift or live performance cross its threshold, did the latest
data gates pass, and has the spec's minimum interval passed since the last request? Time here is
the data's time (the day monitored), so a replay of history decides as live operation would have.

The first model of a use case has nothing to monitor: it is requested once the features hold a full
training window.
"""

import json
from datetime import date, datetime, time, timedelta, timezone

import dagster as dg

from assay import asset_keys
from assay.contract import DATA_GATES
from assay.spec import UseCase


def monitoring_min_rows(spec: UseCase, instance: dg.DagsterInstance) -> int:
    """The spec's `monitoring.min_rows`, else derived from the latest training set's daily volume."""
    event = instance.get_latest_materialization_event(asset_keys.training_set(spec))
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    rows = metadata["dagster/row_count"].value if "dagster/row_count" in metadata else None
    return spec.monitoring_min_rows(rows)


def training_selection(spec: UseCase) -> list[dg.AssetKey]:
    return [asset_keys.training_set(spec), *(asset_keys.model(spec, family) for family in spec.models),
            asset_keys.champion(spec)]


def data_gates_passed(instance: dg.DagsterInstance, spec: UseCase) -> tuple[bool, list[str]]:
    """Whether the latest evaluation of every daily raw table's data gates passed; the failures."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    keys = [dg.AssetCheckKey(asset_keys.raw(spec, table), gate)
            for table in spec.partitioned_tables for gate in DATA_GATES]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    failed = [f"{k.asset_key.to_user_string()}:{k.name}" for k, record in latest.items()
              if record.status != AssetCheckExecutionRecordStatus.SUCCEEDED]
    return not failed, failed


def _metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> dict | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()} if records else None


def data_time(day: str) -> datetime:
    """The end of a monitored day: when, in the data's time, its verdict is known."""
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1), time(), tzinfo=timezone.utc)


def build_retrain_sensor(spec: UseCase) -> dg.SensorDefinition:
    drift_key, live_key = asset_keys.drift(spec), asset_keys.live_performance(spec)
    features_key = asset_keys.dbt_model(spec, spec.features.training_model)
    champion_key = asset_keys.champion(spec)

    @dg.sensor(
        name=f"{spec.name}_retrain",
        description=f"Requests a retraining of `{spec.name}` when drift or live performance crosses the spec's "
        "thresholds, the latest data gates passed and the minimum interval has elapsed; tags say why.",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=training_selection(spec),
    )
    def retrain(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        # scipy comes with these: imported when the sensor runs, not when the code location loads
        from monitoring.drift import DriftReport
        from monitoring.live_performance import LivePerformance
        from monitoring.triggers import retrain_decision

        state = json.loads(context.cursor) if context.cursor else {}
        instance = context.instance

        def result(requests=(), skip=None) -> dg.SensorResult:
            return dg.SensorResult(run_requests=list(requests), skip_reason=skip, cursor=json.dumps(state))

        if instance.get_latest_materialization_event(champion_key) is None:
            days = sorted(instance.get_materialized_partitions(features_key))
            if len(days) < spec.training.window_days or state.get("bootstrap_requested"):
                return result(skip=f"no champion yet; {len(days)} of {spec.training.window_days} feature days "
                                   "before a first model")
            state["bootstrap_requested"] = days[-1]
            state["last_requested_at"] = data_time(days[-1]).isoformat()
            return result([dg.RunRequest(
                run_key=f"{spec.name}:first-model:{days[-1]}", asset_selection=training_selection(spec),
                tags={"assay/trigger": "retrain", "assay/retrain_reason": "first_model", "assay/data_day": days[-1]},
            )])

        latest = instance.get_latest_materialization_event(drift_key)
        if latest is None:
            return result(skip="nothing monitored yet")
        day = latest.asset_materialization.partition
        if day == state.get("evaluated_day"):
            return result(skip=f"{day} already evaluated")
        drift = DriftReport.from_metadata(_metadata(instance, drift_key, day)["report"])
        live_metadata = _metadata(instance, live_key, day)
        live = LivePerformance.from_metadata(live_metadata["serving"]) if live_metadata else None
        gates_ok, failed_gates = data_gates_passed(instance, spec)
        last = state.get("last_requested_at")
        decision = retrain_decision(
            use_case=spec.name, drift=drift, live=live, floors=spec.live_floors, data_gates_passed=gates_ok,
            last_requested_at=datetime.fromisoformat(last) if last else None, now=data_time(day),
            min_interval=spec.monitoring.retrain_min_interval, min_live_rows=monitoring_min_rows(spec, instance),
        )
        state["evaluated_day"] = day
        state["last_decision"] = decision.reason if gates_ok else f"{decision.reason}: {failed_gates}"
        if not decision.requested:
            return result(skip=state["last_decision"])
        state["last_requested_at"] = data_time(day).isoformat()
        return result([dg.RunRequest(
            run_key=f"{spec.name}:retrain:{day}", asset_selection=training_selection(spec),
            tags={**decision.tags, "assay/trigger": "retrain", "assay/data_day": day},
        )])

    return retrain
