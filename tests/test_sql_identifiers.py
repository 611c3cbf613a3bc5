"""Names from specs reach SQL only validated (at spec load) and quoted by sqlglot (assay/sql.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest
import sqlglot

from assay import sql
from assay.settings import REPO_ROOT
from assay.spec import SpecError, load_spec
from resources.raw_tables import store_partition
from assets.monitoring import read_log_day, store_log_day
from resources.snapshots import read_training_window, training_columns
from resources.warehouse import Warehouse

HOSTILE = 'dep_time" VARCHAR); DROP TABLE x; --'


def _spec_with(tmp_path, old: str, new: str):
    text = (REPO_ROOT / "usecases" / "flights.yaml").read_text()
    assert old in text
    path = tmp_path / "flights.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "field"), [
    ("      dep_time: {type: int", f"      '{HOSTILE}': {{type: int", "tables.flights.columns"),
    ("entity: flight_id", "entity: 'Flight Id'", "features.entity"),
    ("timestamp: scheduled_departure", 'timestamp: "scheduled_departure\\""', "features.timestamp"),
    ("target: is_late", "target: is-late", "features.target"),
    ("dbt_models: [flight_features]", "dbt_models: ['flight_features; DROP SCHEMA flights']", "features.dbt_models"),
    ("plane_engine]", "'Plane Engine']", "features.columns.categorical"),
])
def test_a_spec_name_that_would_be_a_sql_identifier_must_follow_the_table_name_rule(tmp_path, old, new, field):
    path = _spec_with(tmp_path, old, new)

    with pytest.raises(SpecError, match=f"{path}.*{field}"):
        load_spec(path)


def test_sqlglot_quotes_a_name_with_a_double_quote_as_one_identifier(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    with warehouse.writer() as connection:
        connection.execute(f"CREATE SCHEMA {sql.identifier('s x')}")
        connection.execute(f"CREATE TABLE {sql.table('s x', 't')} ({sql.identifier(HOSTILE)} INTEGER)")
        assert connection.execute(f"SELECT {sql.identifiers([HOSTILE])} FROM {sql.table('s x', 't')}").description[0][0] \
            == HOSTILE


@pytest.fixture
def reserved(flights_spec):
    """A valid spec whose use case and training model are SQL keywords: lower_snake_case, so allowed,
    and only correct SQL if every name is quoted."""
    features = flights_spec.features.model_copy(update={"dbt_models": ["order"]})
    return flights_spec.model_copy(update={"name": "group", "features": features})


def test_a_raw_partition_of_a_use_case_named_like_a_keyword_is_stored(tmp_path, reserved):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    table = reserved.tables["airlines"]
    frame = pl.DataFrame({"carrier": ["AA"], "name": ["American"]})

    store_partition(warehouse, reserved.name, "airlines", table, frame, None, "airlines.csv", "0" * 64)

    with warehouse.reader() as connection:
        assert connection.execute('SELECT carrier FROM "group".raw_airlines').fetchall() == [("AA",)]


def test_the_inference_log_of_a_use_case_named_like_a_keyword_round_trips(tmp_path, reserved):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    line = {"environment": "staging", "request_id": "r1", "entity_id": "1", "model_version": "1",
            "prediction": 0.5, "latency_ms": 1.0, "event_time": "2013-01-02T10:00:00+00:00", "features": {"a": 1}}

    store_log_day(warehouse, reserved, "2013-01-02", [line])

    assert read_log_day(warehouse, reserved, "2013-01-02")["request_id"].to_list() == ["r1"]


def test_the_training_window_reads_a_training_model_named_like_a_keyword(tmp_path, reserved):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    f = reserved.features
    start = datetime(2013, 1, 1)
    rows = {c: [1.0] * 3 for c in training_columns(reserved)}
    rows |= {f.entity: [1, 2, 3], f.timestamp: [start + timedelta(days=d) for d in range(3)],
             f.target: [0, 1, None]} | {c: ["x"] * 3 for c in f.columns.categorical}
    frame = pl.DataFrame(rows)
    with warehouse.writer() as connection:
        connection.execute('CREATE SCHEMA "group"')
        connection.execute('CREATE TABLE "group"."order" AS SELECT * FROM frame')

    window = read_training_window(warehouse, reserved)

    assert window[f.entity].to_list() == [1, 2]
    assert window[f.timestamp].max().date() == date(2013, 1, 2)


def test_a_partition_predicate_keeps_a_hostile_column_one_identifier_and_the_day_a_date_literal():
    predicate = sql.equals_date(HOSTILE, date(2013, 1, 2))

    parsed = sqlglot.parse_one(predicate, read=sql.DIALECT)
    assert isinstance(parsed, sqlglot.exp.EQ)
    assert parsed.this.name == HOSTILE
    assert parsed.expression.sql(sql.DIALECT) == "CAST('2013-01-02' AS DATE)"
