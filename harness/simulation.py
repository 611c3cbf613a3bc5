"""Replay history through the platform, day by day, with the daemon's ticks run in this process.

For each day: its files land; the landing sensor's runs load them; an automation tick builds the
day's features (and follows any new champion to staging); the day's flights are sent to the served
model hour by hour at their scheduled time (features only, never the outcome); the day's inference
log, drift and live performance are measured; the retrain sensor decides; the runs it asks for
train, gate and promote; a last automation tick rolls the new champion out. Every step is a real
Dagster run on the same instance as `make ui`, and the timeline says what happened and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import dagster as dg
import polars as pl

from assay import asset_keys, sql
from assay.releases import history
from harness.replay import replay
from assay.settings import state
from assay.spec import UseCase
from harness.ticks import TickRun, execute, run_sensor_requests, tick_automation, tick_sensor
from serving.requests import v2_request


@dataclass
class Day:
    day: str
    landed: int = 0
    runs: list[TickRun] = field(default_factory=list)
    requests: int = 0
    scored: int = 0
    drift: str = ""
    live: str = ""
    retrain: str = ""
    releases: list[str] = field(default_factory=list)
    seconds: float = 0.0
    land_to_serve_seconds: float | None = None
    orchestration_seconds: float = 0.0

    def lines(self) -> list[str]:
        failed = [r for r in self.runs if not r.success]
        out = [f"{self.day}  landed {self.landed} files, {len(self.runs)} runs"
               + (f" ({len(failed)} failed: {', '.join(sorted({a for r in failed for a in r.assets}))})" if failed else "")
               + (f", scored {self.scored} rows in {self.requests} requests" if self.requests else "")
               + f"  [{self.seconds:.0f} s]"]
        out += [f"            {text}" for text in (self.drift, self.live, self.retrain, *self.releases) if text]
        if self.land_to_serve_seconds is not None:
            out.append(f"            land-to-serve {self.land_to_serve_seconds:.0f} s "
                       f"(orchestration {self.orchestration_seconds:.0f} s of it)")
        return out


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    """Time inside the run's steps: what is not in them is orchestration."""
    return sum((s.end_time or 0) - (s.start_time or 0) for s in instance.get_run_step_stats(run_id)
               if s.start_time and s.end_time)


def send_day(spec: UseCase, endpoint, warehouse, day: str) -> tuple[int, int]:
    """The day's feature rows (no outcome) to the served model, one request per scheduled hour."""
    f = spec.features
    columns = sql.identifiers([f.entity, f.timestamp, *f.columns.numeric, *f.columns.categorical])
    timestamp, entity = sql.identifier(f.timestamp), sql.identifier(f.entity)
    with warehouse.reader() as connection:
        rows = connection.execute(
            f"SELECT {columns} FROM {sql.table(spec.name, f.training_model)} WHERE CAST({timestamp} AS DATE) = ? "
            f"ORDER BY {timestamp}, {entity}", [day]).pl()
    requests = 0
    for (hour,), batch in rows.group_by(pl.col(f.timestamp).dt.truncate("1h"), maintain_order=True):
        body = v2_request(batch, f.columns.numeric, f.columns.categorical)
        body["id"] = f"{spec.name}-{hour.isoformat()}"
        body["parameters"].update(assay_event_time=hour.isoformat(),
                                  assay_entity_ids=[str(v) for v in batch[f.entity].to_list()])
        status, answer = endpoint.infer(spec.name, body)
        if status != 200:
            raise RuntimeError(f"the served model answered {status} for {day} {hour}: {answer}")
        requests += 1
    return requests, rows.height


class Simulation:
    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, spec: UseCase, environment: str = "staging"):
        self.defs, self.instance, self.spec, self.environment = defs, instance, spec, environment
        self.cursors: dict[str, str | None] = {}
        self.automation_cursor = None
        self.timeline: list[Day] = []
        # The daemon runs before the first file lands: the first tick only sets the baseline.
        _, _, self.automation_cursor = tick_automation(defs, instance, None)

    def _sensor(self, name: str) -> list[TickRun]:
        requests, self.cursors[name], skipped = tick_sensor(self.defs, self.instance, name, self.cursors.get(name))
        self.last_skip = skipped
        return run_sensor_requests(self.defs, self.instance, name, requests)

    def _automation(self, ticks: int = 3) -> list[TickRun]:
        """Tick until nothing more is asked for, as the daemon's ticks would within minutes."""
        runs: list[TickRun] = []
        for _ in range(ticks):
            _, new, self.automation_cursor = tick_automation(self.defs, self.instance, self.automation_cursor)
            runs += new
            if not new:
                break
        return runs

    def _metadata(self, key: dg.AssetKey, day: str) -> dict:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1).records
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()} if records else {}

    def run_day(self, day: date, landing) -> Day:
        spec, resources = self.spec, self.defs.resources
        began = time.perf_counter()
        scoring_seconds = 0.0
        today = Day(day.isoformat())
        releases_before = len(history(state().root, spec.name))
        today.landed = len(replay(spec, landing, day, 1))
        today.runs += self._sensor(f"{spec.name}_landing")
        today.runs += self._automation()

        deployer = resources["deployer"]
        if deployer.incumbent(spec.name, self.environment) is not None:
            endpoint = deployer.server(self.environment)
            sending = time.perf_counter()
            today.requests, today.scored = send_day(spec, endpoint, resources["warehouse"], today.day)
            scoring_seconds = time.perf_counter() - sending
            monitoring = [asset_keys.inference_log(spec), asset_keys.drift(spec), asset_keys.live_performance(spec)]
            today.runs.append(execute(self.defs, self.instance, monitoring, today.day,
                                      {"assay/trigger": "daily_monitoring"}, trigger="daily monitoring"))
            drift = self._metadata(asset_keys.drift(spec), today.day)
            if drift and len(drift["report"]["insufficient_data"]) == len(drift["report"]["features"]):
                today.drift = (f"drift: not judged ({drift['rows']} rows, needs "
                               f"{drift['report']['thresholds']['min_rows']})")
            elif drift:
                drifted = drift["drifted_features"] + (["prediction"] if drift["prediction_drifted"] else [])
                today.drift = (f"drift: {', '.join(drifted)} (worst {drift['worst_feature']} PSI "
                               f"{drift['worst_psi']:.2f})" if drifted else
                               f"drift: none (worst {drift['worst_feature']} PSI {drift['worst_psi']:.2f})")
            live = self._metadata(monitoring[2], today.day)
            if live:
                figures = {k: live[k] for k in ("roc_auc", "pr_auc", "rmse", "mae") if k in live}
                today.live = f"live v{live['serving_version']}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in figures.items()) + f" on {live['rows']} rows"

        retrain_runs = self._sensor(f"{spec.name}_retrain")
        if retrain_runs:
            run = retrain_runs[0]
            why = {k.removeprefix("assay/retrain_"): v for k, v in run.tags.items() if k.startswith("assay/retrain_")}
            champion = resources["registry"].alias(spec.name)
            today.retrain = (f"retrain ({why.get('reason')}"
                             + (f": {why.get('feature', '')} {why.get('metric')} {why.get('value')} vs "
                                f"{why.get('threshold')}" if "metric" in why else "")
                             + f") -> {'champion v' + champion.version if champion and run.success else 'no new champion'}")
        else:
            today.retrain = f"no retrain: {self.last_skip}" if self.last_skip and "already evaluated" not in self.last_skip else ""
        today.runs += retrain_runs
        deploy_runs = self._automation()
        today.runs += deploy_runs
        today.releases = [f"release: {e.event}{'' if e.passed is None else (' passed' if e.passed else ' FAILED')} "
                          f"v{e.version}" + (f" in {e.environment}" if e.environment else "")
                          for e in history(state().root, spec.name)[releases_before:]]
        today.seconds = time.perf_counter() - began
        if retrain_runs and any("deployment" in a for r in deploy_runs for a in r.assets if r.success):
            # Compute: time inside steps, and the model answering the day's traffic. The rest is
            # orchestration: sensor and automation ticks, run setup and teardown, event storage.
            compute = sum(step_seconds(self.instance, r.run_id) for r in today.runs) + (
                scoring_seconds if today.requests else 0.0)
            today.land_to_serve_seconds = today.seconds
            today.orchestration_seconds = today.seconds - compute
        self.timeline.append(today)
        return today


def simulate(defs: dg.Definitions, instance: dg.DagsterInstance, spec: UseCase, landing, start: date, days: int,
             echo=print) -> list[Day]:
    if spec.source is None:  # the replay is what lands each day's files; upstream's own files are built by `assay build`
        raise ValueError(f"{spec.name} has no replay source (`source:` in its spec): nothing to simulate")
    simulation = Simulation(defs, instance, spec)
    for offset in range(days):
        for line in simulation.run_day(start + timedelta(days=offset), landing).lines():
            echo(line)
    return simulation.timeline
