"""A use case is a spec and dbt models: the weather regression builds with no Python naming it."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from harness.replay import replay
from definitions import current_definitions
from harness.runs import materialize_window
from assay.settings import REPO_ROOT
from conftest import only_use_case


def test_no_python_in_the_repository_mentions_the_weather_use_case():
    python = [p for p in REPO_ROOT.glob("*/**/*.py") if ".venv" not in p.parts and "tests" not in p.parts]
    python += list(REPO_ROOT.glob("*.py"))
    assert python
    assert not [p for p in python if "temperature_features" in p.read_text() or "weather.yaml" in p.read_text()]


@pytest.fixture(scope="module")
def weather_only(assay_home, tmp_path_factory):
    folder = only_use_case(tmp_path_factory.mktemp("specs"), "weather")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(folder))
        yield current_definitions()


def test_the_weather_graph_comes_from_its_spec_alone(weather_only):
    keys = {s.key.to_user_string() for s in weather_only.resolve_all_asset_specs()}
    assert {"weather/raw_weather", "weather/temperature_features", "weather/training_set"} <= keys
    assert all(k.startswith("weather/") for k in keys)


def test_the_weather_regression_builds_to_a_training_set(weather_only, instance, landing, weather_spec):
    days = [(date(2013, 1, 1) + timedelta(days=i)).isoformat() for i in range(4)]
    replay(weather_spec, landing, date(2013, 1, 1), len(days))
    runs = materialize_window(weather_only, instance, weather_spec, days, through="training_set")
    assert all(r.success for r in runs), [(r.what, r.partition) for r in runs if not r.success]
    snapshot = instance.get_latest_materialization_event(dg.AssetKey(["weather", "training_set"])).asset_materialization
    frame = pl.read_parquet(Path(snapshot.metadata["snapshot"].value))
    assert frame["temp_next_hour"].dtype.is_float() and frame.height > 200
    assert snapshot.metadata["target_std"].value > 1

