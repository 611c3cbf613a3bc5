"""The DuckDB warehouse, and the one rule that keeps it usable: one writer process at a time.

DuckDB lets exactly one process open a file read-write, and a read-write holder also shuts out
readers in other processes (`IO Error: Could not set lock on file`). Assay's remedy is a lock file
beside the warehouse: writers (raw loads, dbt) take it exclusively, readers take it shared. It
works for every process that touches the file (runs launched from the UI, the CLI, dbt, tests),
which a Dagster pool would not: pools only see Dagster steps. A waiting writer logs who holds it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

POLL_SECONDS = 0.05


class WarehouseBusy(TimeoutError):
    pass


@contextmanager
def _file_lock(path: Path, exclusive: bool, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise WarehouseBusy(
                        f"{path}: still locked after {timeout:.0f}s (last writer: {holder})"
                    ) from None
                time.sleep(POLL_SECONDS)
        if exclusive:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Warehouse(dg.ConfigurableResource):
    """One DuckDB file; connections are only handed out under the warehouse lock."""

    path: str
    lock_timeout_seconds: float = 900

    @property
    def lock_path(self) -> Path:
        return Path(self.path + ".lock")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the write lock without a connection, for a tool that opens the file itself (dbt)."""
        with _file_lock(self.lock_path, exclusive=True, timeout=self.lock_timeout_seconds):
            yield

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.exclusive():
            connection = duckdb.connect(self.path)
            try:
                yield connection
            finally:
                connection.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not Path(self.path).exists():
            raise FileNotFoundError(f"{self.path}: the warehouse has not been created yet")
        with _file_lock(self.lock_path, exclusive=False, timeout=self.lock_timeout_seconds):
            connection = duckdb.connect(self.path, read_only=True)
            try:
                yield connection
            finally:
                connection.close()
