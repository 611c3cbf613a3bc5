"""Automation: the landing sensor turns files into runs; features follow loaded days whose data gates
passed; deployment follows a champion only once its blocking checks passed, across runs."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from harness.replay import replay
from harness.ticks import run_sensor_requests, tick_automation, tick_sensor
from conftest import landing_zone, state_folder, weather_platform, why_failed

SENSOR = "weather_landing"
RAW = dg.AssetKey(["weather", "raw_weather"])
FEATURES = dg.AssetKey(["weather", "temperature_features"])
CHAMPION = dg.AssetKey(["weather", "champion"])
STAGING = dg.AssetKey(["weather", "deployment_staging"])
START = date(2013, 3, 1)


def _day(i: int) -> str:
    return (START + timedelta(days=i)).isoformat()


# Every test here starts from a state folder of its own and lands what it needs, so none reads what
# another left behind: run one alone or in any order. These three override conftest's module-wide
# fixtures of the same names.
@pytest.fixture
def assay_home(tmp_path):
    with state_folder(tmp_path / "assay-home") as layout:
        yield layout


@pytest.fixture
def instance(assay_home):
    with dg.DagsterInstance.from_config(str(assay_home.dagster_home)) as instance:
        yield instance


@pytest.fixture
def landing(assay_home):
    return landing_zone(assay_home)


class Daemon:
    """The automation sensor as the daemon runs it: each tick resumes from the cursor the last left."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance, self.cursor = defs, instance, None

    def tick(self):
        result, runs, self.cursor = tick_automation(self.defs, self.instance, self.cursor)
        return result, runs


@pytest.fixture
def automation(instance, tmp_path) -> Daemon:
    def edit(spec):
        spec["release"]["latency_p99_ms"] = 2000  # this module tests what runs, not how fast on a busy CI box

    with weather_platform(tmp_path, edit) as (defs, _):
        daemon = Daemon(defs, instance)
        daemon.tick()  # the daemon was running before any file landed
        yield daemon


@pytest.fixture
def defs(automation) -> dg.Definitions:
    return automation.defs


def _land_and_load(defs, instance, landing, spec, first: date, days: int, cursor: str | None) -> str:
    """Land `days` days from `first` and run what the landing sensor asks for; returns its new cursor."""
    replay(spec, landing, first, days)
    requests, cursor, _ = tick_sensor(defs, instance, SENSOR, cursor)
    assert all(r.success for r in run_sensor_requests(defs, instance, SENSOR, requests))
    return cursor


@pytest.fixture
def resumed_cursor(defs, instance, landing, weather_spec) -> str:
    """The landing sensor's cursor after the first two days landed and loaded, which a test resumes
    from as the daemon would after a restart (the first test checks how that cursor comes about)."""
    return _land_and_load(defs, instance, landing, weather_spec, START, 2, None)


@pytest.fixture
def days_2_and_3_loaded(defs, instance, landing, weather_spec, resumed_cursor):
    """Days 2 and 3 landed and loaded after `resumed_cursor` was taken, as a restarted daemon loads them."""
    _land_and_load(defs, instance, landing, weather_spec, START + timedelta(days=2), 2, resumed_cursor)


def _file(landing, day: str) -> Path:
    return landing.path_for("weather", "weather", day)


def test_new_files_become_one_run_per_day_and_a_second_tick_asks_for_nothing(defs, instance, landing, weather_spec):
    replay(weather_spec, landing, START, 2)
    requests, cursor, _ = tick_sensor(defs, instance, SENSOR, None)
    assert [(r.partition_key, r.asset_selection) for r in requests] == [(_day(0), [RAW]), (_day(1), [RAW])]
    assert len({r.run_key for r in requests}) == 2
    runs = run_sensor_requests(defs, instance, SENSOR, requests)
    assert [r.success for r in runs] == [True, True]

    again, cursor_after, skipped = tick_sensor(defs, instance, SENSOR, cursor)
    assert again == [] and skipped == "no new or changed files" and json.loads(cursor_after) == json.loads(cursor)


def test_a_resumed_cursor_sees_only_later_and_late_files(defs, instance, landing, weather_spec, resumed_cursor):
    replay(weather_spec, landing, START + timedelta(days=3), 1)  # day 3 arrives before day 2: late
    replay(weather_spec, landing, START + timedelta(days=2), 1)
    requests, _, _ = tick_sensor(defs, instance, SENSOR, resumed_cursor)
    assert sorted(r.partition_key for r in requests) == [_day(2), _day(3)]
    assert all(r.success for r in run_sensor_requests(defs, instance, SENSOR, requests))


@pytest.mark.usefixtures("resumed_cursor")  # day 1 landed and loaded
def test_a_redelivered_file_runs_again_only_when_its_content_changed(defs, instance, landing, weather_spec):
    _, cursor, _ = tick_sensor(defs, instance, SENSOR, None)  # a fresh cursor: every file is "new"
    requests, cursor, _ = tick_sensor(defs, instance, SENSOR, cursor)
    assert requests == []

    path = _file(landing, _day(1))
    original = path.read_bytes()
    path.write_bytes(original)  # delivered again, same bytes, newer timestamp
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    same, cursor, _ = tick_sensor(defs, instance, SENSOR, cursor)
    assert same == []

    header, *rows = original.decode().splitlines()
    path.write_text("\n".join([header, *rows[:-1]]) + "\n")  # a corrected delivery: one reading withdrawn
    changed, _, _ = tick_sensor(defs, instance, SENSOR, cursor)
    assert [r.partition_key for r in changed] == [_day(1)]
    runs = run_sensor_requests(defs, instance, SENSOR, changed)
    assert runs[0].success
    assert run_sensor_requests(defs, instance, SENSOR, changed) == []  # the same run key never runs twice
    metadata = instance.get_latest_materialization_event(RAW).asset_materialization.metadata
    assert metadata["dagster/row_count"].value == len(rows) - 1


@pytest.mark.usefixtures("days_2_and_3_loaded")
def test_features_follow_loaded_days_but_not_a_day_that_failed_its_data_gates(
        defs, instance, landing, weather_spec, automation, resumed_cursor):
    replay(weather_spec, landing, START + timedelta(days=4), 1)
    path = _file(landing, _day(4))
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, *rows[:5], rows[5].rsplit(",", 3)[0]]) + "\n")  # truncated mid-row
    requests, _, _ = tick_sensor(defs, instance, SENSOR, resumed_cursor)
    runs = run_sensor_requests(defs, instance, SENSOR, [r for r in requests if r.partition_key == _day(4)])
    assert [r.success for r in runs] == [False]  # the contract gate failed; the file is quarantined

    result, feature_runs = automation.tick()
    requested = result.get_requested_partitions(FEATURES)
    assert requested == {_day(0), _day(1), _day(2), _day(3)}
    assert all(r.success for r in feature_runs)
    assert STAGING not in {k for r in feature_runs for k in r.assets}  # no champion yet: nothing to deploy


def _train(defs, instance):
    selection = [dg.AssetKey(["weather", "training_set"]), dg.AssetKey(["weather", "model_lightgbm"]), CHAMPION]
    return dg.materialize(list(defs.assets), resources=defs.resources, instance=instance, selection=selection,
                          raise_on_error=False)


@pytest.mark.usefixtures("days_2_and_3_loaded")
def test_deployment_is_not_requested_after_the_champion_failed_a_blocking_check_in_an_earlier_run(
        defs, instance, landing, weather_spec, automation, resumed_cursor):
    replay(weather_spec, landing, START + timedelta(days=5), 9)
    requests, _, _ = tick_sensor(defs, instance, SENSOR, resumed_cursor)
    loaded = run_sensor_requests(defs, instance, SENSOR, requests)
    _, featured = automation.tick()
    failed = [(r.assets, r.partition, r.run_id) for r in loaded + featured if not r.success]
    assert failed == []
    registry = defs.resources["registry"]
    trained = _train(defs, instance)
    assert trained.success, why_failed(trained)
    version = registry.alias("weather").version

    # Someone swaps the champion's weights in the artifact store; the next champion run re-hashes it.
    source = registry.client().get_model_version("weather", version).source
    payload = next(p for p in Path(registry.artifact_root).rglob("payload") if source.rsplit("/", 1)[-1] in str(p))
    weights = next(p for p in payload.iterdir() if p.name != "family.json")
    weights.write_bytes(weights.read_bytes() + b"\n")
    champion_run = dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
                                  selection=[CHAMPION], raise_on_error=False)
    check = next(e for e in champion_run.get_asset_check_evaluations() if e.check_name == "passed_every_gate")
    assert not check.passed and "not what was trained" in check.description

    result, runs = automation.tick()
    assert result.get_num_requested(STAGING) == 0
    assert STAGING not in {k for r in runs for k in r.assets}

    # The swapped version stays marked; a retrained champion passes its check and deployment follows.
    retrained = _train(defs, instance)
    assert retrained.success, why_failed(retrained)
    assert registry.alias("weather").version != version
    result, runs = automation.tick()
    assert result.get_num_requested(STAGING) == 1
    assert [r.success for r in runs if "weather/deployment_staging" in r.assets] == [True]


def test_every_asset_has_a_freshness_policy_so_staleness_shows_in_the_ui_and_status(defs):
    missing = [s.key.to_user_string() for s in defs.resolve_all_asset_specs() if s.freshness_policy is None]
    assert missing == []
