"""The lake: Delta Lake tables on a file store or S3, one per `<root>/<team>/<use case>/<table>`.

This replaces one shared DuckDB file behind a writer lock (issue 15). Every table is a Delta table
(delta-rs); DuckDB stays, but as stateless compute over a table version read as an Arrow dataset in its
own in-memory connection, so no process ever holds a file another needs. Why this shape:

- **Create first.** A `write_deltalake` that creates a missing table races: two first writers of the
  same new day both "win" (the loser's version-0 commit is retried from an empty snapshot, where no
  conflict can be seen) and the day is silently duplicated. `DeltaTable.create(mode="ignore")` racing
  itself is harmless, so every table is created from its schema before any partition write, and
  `replace_partition` refuses a table that does not exist rather than creating it.
- **No lock.** A commit is the put of `_delta_log/<version>.json`. On a local store that is an atomic
  create-if-absent; on S3 delta-rs 1.x uses a conditional PUT (`If-None-Match: *`), so the loser gets
  412, re-reads the log and either commits on top (a different partition) or fails (the same one). No
  DynamoDB, no `AWS_S3_ALLOW_UNSAFE_RENAME`. The store must honour conditional PUT (AWS S3, MinIO, R2
  and moto do).
- **One day, one commit.** `replace_partition` deletes the day's files and adds the new ones in a single
  commit, so a rerun replaces and never duplicates, and a reader sees the old day or the new, never both.
- **Partitioned by day.** Each day's rows live in their own files, so writers of different days never
  touch the same file and compaction never merges days (merged, two writers of different days would
  conflict on the shared file).

Dagster-free on purpose: the assets, benchmarks and CLI all reach it the same way.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from assay import sql
from assay.spec import NAME

# Team names come from the spec's owner (`team:flight-ops-ml`), which Dagster allows hyphens in; they
# are only ever a path segment, never a SQL identifier. Use cases and tables follow NAME.
TEAM = re.compile(r"^[a-z][a-z0-9_-]*$")
# The day column: a NAME, or a lineage column's `_`-prefixed one (`_partition`).
COLUMN = re.compile(r"^_?[a-z][a-z0-9_]*$")

# The environment variables the S3 options are read from; nothing else, and never a literal.
S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
          "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP")


class LakeConflict(RuntimeError):
    """A concurrent writer committed the same partition first; this write committed nothing.

    Rerun the load: it re-reads the table and replaces the day again (a Dagster retry does exactly this).
    """

    def __init__(self, table: LakeTable, day: date, detail: str):
        self.table, self.day = table, day
        super().__init__(f"{table}: another writer replaced {day.isoformat()} first; this load committed "
                         f"nothing, rerun it to replace the day again ({detail.splitlines()[0]})")


class LakeUnsafe(RuntimeError):
    """The object store does not honour conditional writes, so a commit could overwrite another."""


def _check(part: str, value: object, rule: re.Pattern) -> str:
    if not isinstance(value, str) or not rule.match(value):
        raise ValueError(f"lake {part} {value!r} is not a valid name (it must match {rule.pattern})")
    return value


@dataclass(frozen=True)
class LakeTable:
    """Which table: `<team>/<use case>/<name>` under a lake's root. Each part is checked here, because
    it becomes a path segment (a `..` or a `/` would land a write in another team's tables)."""

    team: str
    use_case: str
    name: str

    def __post_init__(self):
        _check("team", self.team, TEAM)
        _check("use case", self.use_case, NAME)
        _check("table", self.name, NAME)

    def __str__(self) -> str:
        return f"{self.team}/{self.use_case}/{self.name}"


def s3_storage_options(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """delta-rs options for S3 from the environment only (`AWS_*`; a Kubernetes Secret in production):
    credentials are never written in code or config. Unset variables are left out, so an instance role
    (IRSA) still works. `AWS_ALLOW_HTTP` is for test servers on loopback only."""
    environ = os.environ if environ is None else environ
    return {key: environ[key] for key in S3_ENV if environ.get(key)}


class Lake:
    """Delta tables under `root` (a local path, `file://…` or `s3://bucket/prefix`)."""

    def __init__(self, root: str, storage_options: dict[str, str] | None = None):
        if not root:
            raise ValueError("a lake needs a root (a path, file://… or s3://bucket/prefix)")
        self.root = root.rstrip("/")
        if storage_options is None and self.root.startswith("s3://"):
            storage_options = s3_storage_options()
        self.storage_options = storage_options or None

    def uri(self, table: LakeTable) -> str:
        return f"{self.root}/{table.team}/{table.use_case}/{table.name}"

    def _open(self, table: LakeTable, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=self.storage_options)
        except TableNotFoundError as error:
            raise LookupError(f"{table}: no lake table at {self.uri(table)}; create it first") from error

    def create(self, table: LakeTable, schema: pa.Schema, partition_by: str = "_partition") -> None:
        """Create the table from its schema if it does not exist yet; a no-op if it does (a racing
        create is harmless). Must run before the first write: see the module docstring."""
        _check("partition column", partition_by, COLUMN)
        if partition_by not in schema.names:
            raise ValueError(f"{table}: partition column {partition_by!r} is not in the schema {schema.names}")
        DeltaTable.create(self.uri(table), schema, partition_by=[partition_by], mode="ignore",
                          storage_options=self.storage_options)

    def replace_partition(self, table: LakeTable, day: date, frame, *, read_version: int | None = None,
                          metadata: Mapping[str, str] | None = None) -> int:
        """Replace one day's rows with `frame` (a pyarrow Table or a polars DataFrame) in one commit;
        return the table version it committed.

        `read_version` is the version the load read its inputs at (say, trailing counts): a commit to
        the same day after it is a conflict, as is one made while this write was in flight. Either way
        `LakeConflict` is raised and nothing of this write is visible. Writers of other days never
        conflict: delta-rs re-checks and commits on top of them.
        """
        if not isinstance(day, date) or isinstance(day, datetime):
            raise TypeError(f"{table}: the day must be a datetime.date, not {type(day).__name__}")
        snapshot = self._open(table, read_version)
        partition_by = snapshot.metadata().partition_columns
        if len(partition_by) != 1:
            raise ValueError(f"{table}: replace_partition needs a table partitioned by one day column, "
                             f"not {partition_by}")
        column = _check("partition column", partition_by[0], COLUMN)
        data = _stamped(table, frame, column, day)
        predicate = sql.equals_date(column, day)  # a checked identifier and a parsed date, quoted by sqlglot
        try:
            write_deltalake(snapshot, data, mode="overwrite", predicate=predicate,
                            commit_properties=CommitProperties(
                                custom_metadata={**(metadata or {}), "assay.day": day.isoformat()}))
        except CommitFailedError as error:
            raise LakeConflict(table, day, str(error)) from error
        return snapshot.version()

    def check_conditional_put(self) -> None:
        """Refuse an S3 store that accepts `If-None-Match: *` and ignores it (some S3 look-alikes do):
        there, two commits of one version both "succeed" and one silently overwrites the other, so the
        lake's whole concurrency guarantee rests on this. Puts a probe object twice, requires the
        second to be refused with 412, deletes it. A local store needs no check (its commit is an
        atomic create-if-absent)."""
        if not self.root.startswith("s3://"):
            return
        import boto3
        from botocore.exceptions import ClientError

        bucket, _, prefix = self.root.removeprefix("s3://").partition("/")
        options = self.storage_options or {}
        client = boto3.client("s3", endpoint_url=options.get("AWS_ENDPOINT_URL"), region_name=options.get("AWS_REGION"),
                              aws_access_key_id=options.get("AWS_ACCESS_KEY_ID"),
                              aws_secret_access_key=options.get("AWS_SECRET_ACCESS_KEY"),
                              aws_session_token=options.get("AWS_SESSION_TOKEN"))
        probe = f"{prefix}/.assay-conditional-put-probe/{uuid.uuid4().hex}".lstrip("/")
        client.put_object(Bucket=bucket, Key=probe, Body=b"1", IfNoneMatch="*")
        try:
            client.put_object(Bucket=bucket, Key=probe, Body=b"2", IfNoneMatch="*")
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 412:
                raise
        else:
            raise LakeUnsafe(f"{self.root}: the store accepted a second put of {probe} with If-None-Match: *; "
                             "concurrent commits would overwrite each other. Use a store that honours "
                             "conditional writes (AWS S3, MinIO, R2)")
        finally:
            client.delete_object(Bucket=bucket, Key=probe)

    def version(self, table: LakeTable) -> int:
        """The table's latest committed version."""
        return self._open(table).version()

    def read(self, table: LakeTable, version: int | None = None) -> ds.Dataset:
        """The table at `version` (latest if None) as an Arrow dataset: register it in an in-memory
        DuckDB (`duckdb.connect().register("t", lake.read(...))`) and filters push into the scan.
        A version stays readable until it is vacuumed; reading a vacuumed one fails at scan time."""
        return self._open(table, version).to_pyarrow_dataset()


def _stamped(table: LakeTable, frame, column: str, day: date) -> pa.Table:
    """`frame` as Arrow with its day column set to `day`, or refused if it holds rows of another day."""
    data = frame if isinstance(frame, pa.Table) else frame.to_arrow()
    if column not in data.column_names:
        return data.append_column(column, pa.array([day] * data.num_rows, pa.date32()))
    values = data.column(column)
    if values.null_count or not pc.all(pc.equal(values.cast(pa.date32()), pa.scalar(day, pa.date32()))).as_py():
        raise ValueError(f"{table}: the frame's {column!r} holds rows of days other than {day.isoformat()}")
    return data
