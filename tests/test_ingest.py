"""Raw partitions on a real Dagster instance and DuckDB: atomic, idempotent, and bad files quarantined."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl
import pytest

from harness.replay import replay
from definitions import current_definitions

FLIGHTS = dg.AssetKey(["flights", "raw_flights"])
WEATHER = dg.AssetKey(["flights", "raw_weather"])


@pytest.fixture(scope="module")
def defs(assay_home):
    return current_definitions()


@pytest.fixture(scope="module")
def loaded(defs, instance, landing, flights_spec):
    """Three real days landed and loaded."""
    replay(flights_spec, landing, date(2013, 1, 1), 3)
    for day in ("2013-01-01", "2013-01-02", "2013-01-03"):
        assert _materialize(defs, instance, day, [FLIGHTS, WEATHER]).success
    return landing


def _materialize(defs, instance, partition, selection):
    return dg.materialize(
        assets=list(defs.assets), resources=defs.resources, instance=instance,
        selection=selection, partition_key=partition, raise_on_error=False,
    )


def _stored(warehouse, partition: str) -> pl.DataFrame:
    with warehouse.reader() as connection:
        return connection.execute(
            "SELECT * EXCLUDE (_loaded_at) FROM flights.raw_flights WHERE _partition = ? ORDER BY ALL", [partition]
        ).pl()


def _latest_version(instance, partition: str) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=FLIGHTS, asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization.tags["dagster/data_version"]


def _check(result, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name and e.asset_key == FLIGHTS)


def test_a_loaded_partition_records_row_count_landing_hash_and_schema(loaded, instance):
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=FLIGHTS, asset_partitions=["2013-01-02"]), limit=1
    ).records[0]
    metadata = record.asset_materialization.metadata
    assert metadata["dagster/row_count"].value == 943
    assert len(metadata["landing_sha256"].value) == 64
    assert [c.name for c in metadata["dagster/column_schema"].value.columns][:3] == ["year", "month", "day"]


def test_rerunning_a_partition_gives_the_same_data_version_and_rows(loaded, defs, instance, warehouse):
    before_rows, before_version = _stored(warehouse, "2013-01-02"), _latest_version(instance, "2013-01-02")
    assert _materialize(defs, instance, "2013-01-02", [FLIGHTS]).success
    after_rows = _stored(warehouse, "2013-01-02")
    assert after_rows.height == before_rows.height == 943
    assert after_rows.equals(before_rows)
    assert _latest_version(instance, "2013-01-02") == before_version


def _redeliver(landing, mutate) -> None:
    path = landing.path_for("flights", "flights", "2013-01-02")
    source = landing.path_for("flights", "flights", "2013-01-01").parent / "2013-01-02.good"
    if not source.exists():
        source.write_bytes(path.read_bytes())
    path.write_text(mutate(source.read_text()))


def _lines(edit):
    def mutate(text: str) -> str:
        lines = text.splitlines(keepends=True)
        edit(lines)
        return "".join(lines)
    return mutate


def _set_field(line: str, index: int, value: str) -> str:
    fields = line.rstrip("\n").split(",")
    fields[index] = value
    return ",".join(fields) + "\n"


BAD_FILES = {
    "missing column": (lambda t: "\n".join(",".join(l.split(",")[:-1]) for l in t.splitlines()) + "\n", "missing columns"),
    "extra column": (lambda t: "\n".join(l + ",x" for l in t.splitlines()) + "\n", "not in the contract"),
    "wrong type": (_lines(lambda ls: ls.__setitem__(3, _set_field(ls[3], 5, "late"))), "not a valid int"),
    "unparsable row": (_lines(lambda ls: ls.__setitem__(3, ls[3].rstrip("\n") + ',"open quote\n')), "unparsable row"),
    "empty file": (lambda t: "", "empty"),
    "duplicate rows": (_lines(lambda ls: ls.append(ls[5])), "duplicate key"),
    "date outside the partition": (_lines(lambda ls: ls.__setitem__(3, _set_field(ls[3], 2, "9"))), "for partition 2013-01-02"),
    "truncated file": (lambda t: t[: len(t) // 2], "truncated"),
    # a value beyond the contract's max must never replace the good stored day (it used to, then fail a gate)
    "value outside its range": (_lines(lambda ls: ls.__setitem__(3, _set_field(ls[3], 5, "9999"))),
                                "outside the contract's range"),
    "null in a non-nullable column": (_lines(lambda ls: ls.__setitem__(3, _set_field(ls[3], 9, "NA"))),
                                      "in a non-nullable column"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_landing_file_is_quarantined_and_the_stored_partition_is_unchanged(
    kind, loaded, defs, instance, warehouse
):
    mutate, reason = BAD_FILES[kind]
    stored, version = _stored(warehouse, "2013-01-02"), _latest_version(instance, "2013-01-02")
    _redeliver(loaded, mutate)

    result = _materialize(defs, instance, "2013-01-02", [FLIGHTS])

    assert not result.success
    contract = _check(result, "contract")
    assert not contract.passed and reason in contract.description
    assert "2013-01-02.csv" in contract.description  # names the file
    quarantined = loaded.quarantined("flights", "flights", "2013-01-02")
    assert quarantined and reason in quarantined[-1]["reason"]
    assert not loaded.path_for("flights", "flights", "2013-01-02").exists()
    assert _stored(warehouse, "2013-01-02").equals(stored)
    assert _latest_version(instance, "2013-01-02") == version


def test_a_partial_delivery_fails_the_volume_gate_and_blocks_its_partition(loaded, defs, instance, landing):
    _redeliver(loaded, lambda t: "".join(t.splitlines(keepends=True)[:60]))
    result = _materialize(defs, instance, "2013-01-02", [FLIGHTS])
    assert not result.success  # a failed blocking gate fails the step after recording the data
    volume = _check(result, "volume")
    assert not volume.passed
    assert volume.metadata["ratio"].value < 0.5
    _redeliver(loaded, lambda t: t)  # the good file again, so later tests see a clean partition
    assert _materialize(defs, instance, "2013-01-02", [FLIGHTS]).success


def test_a_missing_landing_file_fails_with_its_path(loaded, defs, instance):
    result = _materialize(defs, instance, "2013-03-01", [FLIGHTS])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no landing file" in str(failure.event_specific_data.error)
    assert "2013-03-01.csv" in str(failure.event_specific_data.error)
