"""The lake's storage primitive on real Delta tables, a local store and an S3-compatible server (moto),
with writers in real processes: a rerun replaces a day, writers of different days both commit, two
writers of one day give one winner and a clear conflict, and an old version reads back unchanged."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from resources.lake import Lake, LakeConflict, LakeTable, LakeUnsafe, s3_storage_options
from conftest import free_ports

REPO = Path(__file__).resolve().parents[1]
TABLE = LakeTable("flight-ops-ml", "flights", "raw_flights")
SCHEMA = pa.schema([("flight_id", pa.string()), ("dep_delay", pa.float64()), ("_landing_sha256", pa.string()),
                    ("_partition", pa.date32())])
BUCKET = "assay-lake"


def load(day: date, seed: int, rows: int = 300) -> pl.DataFrame:
    """One landing file's rows for `day`, told apart from another load of the day by `_landing_sha256`."""
    return pl.DataFrame({"flight_id": [f"{day}_{i}" for i in range(rows)],
                         "dep_delay": [float((i * 7 + seed) % 90) for i in range(rows)],
                         "_landing_sha256": [f"sha-{day}-{seed}"] * rows, "_partition": [day] * rows})


def per_day(lake: Lake, version: int | None = None) -> list[tuple]:
    """(day, rows, loads) for every day, read through an in-memory DuckDB as the assets will."""
    connection = duckdb.connect()
    connection.register("t", lake.read(TABLE, version))
    return connection.sql("SELECT _partition, count(*), count(DISTINCT _landing_sha256) FROM t "
                          "GROUP BY ALL ORDER BY ALL").fetchall()


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    port = free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path, monkeypatch):
    """An empty lake on a local store or on the S3 server, its S3 options from the environment only."""
    if request.param == "local":
        return Lake(str(tmp_path / "lake"))
    import boto3

    endpoint = request.getfixturevalue("s3_server")
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    return Lake(f"s3://{BUCKET}/{re.sub(r'[^a-z0-9]+', '-', request.node.name.lower()).strip('-')}")


WRITER = """
import json, sys, time
from datetime import date
from pathlib import Path
import pyarrow.parquet as pq
from resources.lake import Lake, LakeConflict, LakeTable
root, team, use_case, name, day, frame, ready, go = sys.argv[1:]
lake, table, frame = Lake(root), LakeTable(team, use_case, name), pq.read_table(frame)
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.001)
try:
    print(json.dumps({"day": day, "version": lake.replace_partition(table, date.fromisoformat(day), frame)}))
except LakeConflict as error:
    print(json.dumps({"day": day, "conflict": str(error)}))
"""


def race(lake: Lake, tmp_path: Path, jobs: list[tuple[date, int]]) -> list[dict]:
    """Write each (day, seed) from its own process, all released at once once every one is ready."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for i, (day, seed) in enumerate(jobs):
        load(day, seed).write_parquet(tmp_path / f"load-{i}.parquet")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, lake.root, TABLE.team, TABLE.use_case, TABLE.name,
                                 day.isoformat(), str(tmp_path / f"load-{i}.parquet"),
                                 str(tmp_path / f"ready-{i}"), str(go)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i, (day, seed) in enumerate(jobs)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{i}").exists() for i in range(len(jobs))):
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers), \
            [w.communicate()[1][-2000:] for w in writers if w.poll() is not None]
        time.sleep(0.01)
    go.touch()
    results = []
    for writer in writers:
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_a_table_uri_is_root_team_use_case_table():
    assert Lake("s3://bucket/prefix/", {}).uri(TABLE) == "s3://bucket/prefix/flight-ops-ml/flights/raw_flights"


def test_rerunning_a_day_replaces_it_in_one_new_version(lake):
    lake.create(TABLE, SCHEMA)
    first = lake.replace_partition(TABLE, date(2013, 1, 1), load(date(2013, 1, 1), 1))
    lake.replace_partition(TABLE, date(2013, 1, 2), load(date(2013, 1, 2), 1))
    rerun = lake.replace_partition(TABLE, date(2013, 1, 1), load(date(2013, 1, 1), 2).to_arrow())
    assert (first, rerun) == (1, 3) and lake.version(TABLE) == 3
    assert per_day(lake) == [(date(2013, 1, 1), 300, 1), (date(2013, 1, 2), 300, 1)]
    connection = duckdb.connect()
    connection.register("t", lake.read(TABLE))
    assert connection.sql("SELECT DISTINCT _landing_sha256 FROM t WHERE _partition = DATE '2013-01-01'"
                          ).fetchall() == [("sha-2013-01-01-2",)]


def test_creating_a_table_twice_keeps_the_first_and_adds_no_version(lake):
    lake.create(TABLE, SCHEMA)
    lake.replace_partition(TABLE, date(2013, 1, 1), load(date(2013, 1, 1), 1))
    lake.create(TABLE, SCHEMA)
    assert lake.version(TABLE) == 1 and per_day(lake) == [(date(2013, 1, 1), 300, 1)]


def test_writers_of_different_days_in_two_processes_at_once_both_commit(lake, tmp_path):
    lake.create(TABLE, SCHEMA)
    results = race(lake, tmp_path, [(date(2013, 1, 1), 1), (date(2013, 1, 2), 1)])
    assert sorted(r.get("version") for r in results) == [1, 2], results
    assert per_day(lake) == [(date(2013, 1, 1), 300, 1), (date(2013, 1, 2), 300, 1)]


@pytest.mark.parametrize("existing", [False, True], ids=["new day", "existing day"])
def test_two_writers_of_one_day_give_one_commit_and_a_conflict_naming_table_and_day(lake, existing):
    day = date(2013, 1, 5)
    lake.create(TABLE, SCHEMA)
    if existing:
        lake.replace_partition(TABLE, day, load(day, 0))
    read_by_second = lake.version(TABLE)       # writer 2 has read the table ...
    lake.replace_partition(TABLE, day, load(day, 1))   # ... then writer 1 commits the day ...
    with pytest.raises(LakeConflict, match=r"flight-ops-ml/flights/raw_flights: .*2013-01-05") as conflict:
        lake.replace_partition(TABLE, day, load(day, 2), read_version=read_by_second)  # ... then writer 2
    assert isinstance(conflict.value, RuntimeError) and conflict.value.day == day
    assert lake.version(TABLE) == read_by_second + 1
    assert per_day(lake) == [(day, 300, 1)]
    connection = duckdb.connect()
    connection.register("t", lake.read(TABLE))
    assert connection.sql("SELECT DISTINCT _landing_sha256 FROM t").fetchall() == [("sha-2013-01-05-1",)]



def test_two_processes_replacing_one_day_at_once_leave_exactly_one_loads_rows(lake, tmp_path):
    """Unscripted, a loser either sees the winner's commit in time (conflict) or starts after it (replaces
    it in turn); either way the day holds one load, never both."""
    day = date(2013, 1, 5)
    lake.create(TABLE, SCHEMA)
    results = race(lake, tmp_path, [(day, 1), (day, 2)])
    committed = [r for r in results if "version" in r]
    assert committed and all("version" in r or "2013-01-05" in r["conflict"] for r in results), results
    assert lake.version(TABLE) == len(committed)
    assert per_day(lake) == [(day, 300, 1)]

def test_a_write_from_an_older_read_of_another_day_still_commits(lake):
    lake.create(TABLE, SCHEMA)
    read_by_second = lake.version(TABLE)
    lake.replace_partition(TABLE, date(2013, 1, 1), load(date(2013, 1, 1), 1))
    assert lake.replace_partition(TABLE, date(2013, 1, 2), load(date(2013, 1, 2), 1), read_version=read_by_second) == 2


def test_a_version_read_later_gives_the_same_rows_after_more_commits(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.create(TABLE, SCHEMA)
    lake.replace_partition(TABLE, date(2013, 1, 1), load(date(2013, 1, 1), 1))
    pinned = lake.replace_partition(TABLE, date(2013, 1, 2), load(date(2013, 1, 2), 1))

    def rows(version):
        connection = duckdb.connect()
        connection.register("t", lake.read(TABLE, version))
        return connection.sql("SELECT * FROM t ORDER BY flight_id").fetchall()

    before = rows(pinned)
    lake.replace_partition(TABLE, date(2013, 1, 1), load(date(2013, 1, 1), 2, rows=100))
    lake.replace_partition(TABLE, date(2013, 1, 3), load(date(2013, 1, 3), 1))
    assert rows(pinned) == before and len(before) == 600
    assert rows(None) != before and lake.version(TABLE) == pinned + 2


def test_a_write_to_a_table_not_created_yet_is_refused_rather_than_creating_it(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(LookupError, match="flight-ops-ml/flights/raw_flights: .*create it first"):
        lake.replace_partition(TABLE, date(2013, 1, 1), load(date(2013, 1, 1), 1))
    assert not (tmp_path / "lake" / "flight-ops-ml" / "flights" / "raw_flights" / "_delta_log").exists()


def test_a_frame_holding_another_days_rows_is_refused(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.create(TABLE, SCHEMA)
    with pytest.raises(ValueError, match="days other than 2013-01-02"):
        lake.replace_partition(TABLE, date(2013, 1, 2), load(date(2013, 1, 1), 1))
    with pytest.raises(TypeError, match="datetime.date"):
        lake.replace_partition(TABLE, "2013-01-01' OR true --", load(date(2013, 1, 1), 1))
    assert lake.version(TABLE) == 0


def test_a_frame_without_the_day_column_is_stamped_with_the_day(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.create(TABLE, SCHEMA)
    lake.replace_partition(TABLE, date(2013, 1, 2), load(date(2013, 1, 2), 1).drop("_partition"))
    assert per_day(lake) == [(date(2013, 1, 2), 300, 1)]


@pytest.mark.parametrize(("part", "parts"), [
    ("team", ("../other-team", "flights", "raw_flights")),
    ("team", ("Flight Ops", "flights", "raw_flights")),
    ("use case", ("flight-ops-ml", "flights/raw", "raw_flights")),
    ("use case", ("flight-ops-ml", "", "raw_flights")),
    ("table", ("flight-ops-ml", "flights", "raw-flights")),
    ("table", ("flight-ops-ml", "flights", "x'; DROP")),
])
def test_a_bad_team_use_case_or_table_name_is_refused_naming_it(part, parts):
    bad = parts[("team", "use case", "table").index(part)]
    with pytest.raises(ValueError, match=f"lake {part} {bad!r}".replace("(", r"\(").replace(".", r"\.")):
        LakeTable(*parts)


def test_s3_options_come_from_the_environment_only():
    environ = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "eu-west-1",
               "AWS_ENDPOINT_URL": "", "HOME": "/root"}
    assert s3_storage_options(environ) == {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret",
                                           "AWS_REGION": "eu-west-1"}


@pytest.mark.parametrize("lake", ["s3"], indirect=True)
def test_an_s3_store_that_honours_conditional_puts_passes_the_check_and_keeps_no_probe(lake):
    import boto3

    lake.check_conditional_put()  # moto refuses a second If-None-Match put with 412, as AWS S3 does

    bucket, _, prefix = lake.root.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount") == 0


class IgnoresConditions(http.server.BaseHTTPRequestHandler):
    """An S3 look-alike that takes every put, If-None-Match or not."""

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self):
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_s3_store_that_ignores_conditional_puts_is_refused_before_any_write(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_ports(1)), IgnoresConditions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}",
                           "AWS_ALLOW_HTTP": "true"}.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(LakeUnsafe, match="If-None-Match"):
            Lake("s3://careless/assay").check_conditional_put()
    finally:
        server.shutdown()
