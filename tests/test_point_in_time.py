"""The custom dbt point-in-time test catches a feature that peeks at the day it predicts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import date, timedelta

import pytest

from assay.contract import read_landing_file
from harness.replay import replay
from assay.settings import DBT_PROJECT_DIR
from resources.raw_tables import store_partition
from conftest import venv_bin

LEAK_FROM = "and interval 1 day preceding"
LEAK_TO = "and current row"  # the classic off-by-one: today's outcomes feed today's prediction


@pytest.fixture(scope="module")
def raw_days(assay_home, landing, warehouse, flights_spec):
    """Four real days of raw tables, loaded the way the raw assets load them."""
    start = date(2013, 1, 1)
    replay(flights_spec, landing, start, 4)
    for name, table in flights_spec.tables.items():
        days = [start + timedelta(days=i) for i in range(4)] if table.partitioned else [None]
        for day in days:
            path = landing.path_for("flights", name, day.isoformat() if day else None)
            frame = read_landing_file(path, table, day)
            store_partition(warehouse, "flights", name, table, frame, day, str(path), "-")
    return assay_home


def _dbt_build(project_dir, target_dir, warehouse) -> dict[str, str]:
    env = {**os.environ, "ASSAY_WAREHOUSE_PATH": warehouse.path}
    subprocess.run(
        [venv_bin("dbt"), "build", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
         "--target-path", str(target_dir), "--select", "path:models/flights",
         "--vars", json.dumps({"start_date": "2013-01-01", "end_date": "2013-01-05"})],
        env=env, capture_output=True, text=True,
    )
    results = json.loads((target_dir / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[-1] if r["unique_id"].startswith("model") else r["unique_id"].split(".")[2]: r["status"]
            for r in results}


def test_the_real_features_pass_the_point_in_time_test(raw_days, warehouse, tmp_path):
    statuses = _dbt_build(DBT_PROJECT_DIR, tmp_path / "target", warehouse)
    assert statuses["flight_features_point_in_time"] == "pass"


def test_a_feature_that_uses_same_day_outcomes_fails_the_point_in_time_test(raw_days, warehouse, tmp_path):
    leaky = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, leaky, ignore=shutil.ignore_patterns("target", "logs"))
    macro = leaky / "macros" / "trailing_late_rate.sql"
    assert LEAK_FROM in macro.read_text()
    macro.write_text(macro.read_text().replace(LEAK_FROM, LEAK_TO))

    statuses = _dbt_build(leaky, tmp_path / "target", warehouse)

    assert statuses["flight_features"] == "success"
    assert statuses["flight_features_point_in_time"] == "fail"
