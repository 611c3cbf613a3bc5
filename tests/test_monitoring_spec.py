"""The spec's `monitoring:` section: defaults, what the repository declares, and bad values named."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from assay.settings import REPO_ROOT
from assay.spec import SpecError, load_spec


def _write(tmp_path, name: str, mutate):
    spec = yaml.safe_load((REPO_ROOT / "usecases" / f"{name}.yaml").read_text())
    mutate(spec)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_repository_specs_declare_monitoring(flights_spec, weather_spec):
    assert flights_spec.monitoring.min_rows == 500
    assert flights_spec.monitoring.retrain_min_interval == timedelta(days=7)
    assert flights_spec.monitoring.drift_window_days == 7 and weather_spec.monitoring.drift_window_days == 1
    numeric, categorical = flights_spec.watched_features
    assert "day_of_week" not in numeric and "temp" in numeric
    assert categorical == ["origin", "dest", "carrier", "plane_engine"]
    assert flights_spec.live_floors == {"roc_auc": 0.60, "pr_auc": 0.30}  # the gates' floors
    assert weather_spec.watched_features == (["temp", "dewp", "humid", "wind_speed", "pressure", "visib", "precip"],
                                             ["origin"])
    assert weather_spec.live_floors == {"rmse": 4.0, "mae": 3.0}


def test_a_spec_without_monitoring_gets_the_defaults(tmp_path):
    spec = load_spec(_write(tmp_path, "flights", lambda s: s.pop("monitoring")))

    assert (spec.monitoring.psi_threshold, spec.monitoring.p_value, spec.monitoring.min_rows) == (0.2, 0.01, None)
    # min_rows then comes from a day's volume: half the training set's rows per day of its window
    assert spec.monitoring_min_rows(training_rows=28 * 900) == 450
    assert spec.monitoring.drift_window_days == 1
    assert spec.monitoring.retrain_min_interval == timedelta(days=7)
    assert spec.watched_features == (spec.features.columns.numeric, spec.features.columns.categorical)
    assert spec.live_floors == {"roc_auc": 0.60, "pr_auc": 0.30}


def test_a_live_floor_set_under_monitoring_replaces_only_that_gate_floor(tmp_path):
    spec = load_spec(_write(tmp_path, "flights", lambda s: s["monitoring"].update(floors={"min_roc_auc": 0.55})))

    assert spec.live_floors == {"roc_auc": 0.55, "pr_auc": 0.30}


@pytest.mark.parametrize(
    ("name", "mutate", "field", "message"),
    [
        ("flights", lambda s: s["monitoring"].update(psi_threshold=-0.1), "monitoring.psi_threshold", "greater than 0"),
        ("flights", lambda s: s["monitoring"].update(p_value=1.5), "monitoring.p_value", "less than 1"),
        ("flights", lambda s: s["monitoring"].update(min_rows=5), "monitoring.min_rows", "greater than or equal to 10"),
        ("flights", lambda s: s["monitoring"].update(retrain_min_interval="weekly"), "monitoring.retrain_min_interval",
         "not a duration"),
        ("flights", lambda s: s["monitoring"].update(retrain_min_interval="30m"), "monitoring.retrain_min_interval",
         "at least 1h"),
        ("flights", lambda s: s["monitoring"].update(psi_treshold=0.3), "monitoring.psi_treshold",
         "Extra inputs are not permitted"),
        ("flights", lambda s: s["monitoring"].update(features=["tailnum"]), "monitoring.features",
         "not feature columns"),
        ("flights", lambda s: s["monitoring"].update(features=[]), "monitoring.features", "at least 1 item"),
        ("flights", lambda s: s["monitoring"].update(drift_window_days=0), "monitoring.drift_window_days",
         "greater than or equal to 1"),
        ("flights", lambda s: s["monitoring"].update(floors={"max_rmse": 3.0}), "monitoring.floors",
         "do not apply to a binary_classification use case"),
        ("weather", lambda s: s["monitoring"].update(floors={"min_roc_auc": 0.7}), "monitoring.floors",
         "do not apply to a regression use case"),
        ("weather", lambda s: s["monitoring"].update(floors={"max_mae": 0}), "monitoring.floors.max_mae",
         "greater than 0"),
    ],
)
def test_a_bad_monitoring_value_names_the_file_and_the_field(tmp_path, name, mutate, field, message):
    path = _write(tmp_path, name, mutate)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert str(path) in str(error.value)
    assert field in str(error.value)
    assert message in str(error.value)
