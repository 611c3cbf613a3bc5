"""The local trainer: `python -m training.train` as a subprocess on this machine, through Dagster Pipes.

Its message reader reads whole lines only (Dagster's own reader can parse a line the trainer is still
writing)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg

from assay.settings import REPO_ROOT
from resources.training.trainer import ENTRYPOINT, Trainer


def whole_lines(path: str, should_stop: Callable[[], bool]) -> Iterator[str]:
    """Tail `path`, yielding only complete lines (the writer's own newline ends each message).

    Dagster's file reader json-parses whatever `readline` returns; a line the training process is
    still appending comes back half-written, and the run fails with a JSONDecodeError (seen here under
    load: the materialization carries its plots inline, so it is a long line)."""
    with open(path, encoding="utf-8") as stream:
        pending = ""
        while True:
            chunk = stream.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
            elif should_stop():
                if pending.strip():  # the process has exited: what is left is all it wrote
                    yield pending
                return
            else:
                time.sleep(0.01)


class WholeLineFileMessageReader(dg.PipesFileMessageReader):
    def _reader_thread(self, handler, is_resource_complete) -> None:
        try:
            for line in whole_lines(self._path, is_resource_complete.is_set):
                handler.handle_message(json.loads(line))
        except:  # noqa: E722 - as Dagster's reader: report to the run, then stop the thread
            handler.report_pipes_framework_exception(f"{type(self).__name__} reader thread", sys.exc_info())
            raise


class WholeLineTempFileMessageReader(dg.PipesTempFileMessageReader):
    """Dagster's default reader for a subprocess (a temporary file), reading whole lines only."""

    @contextmanager
    def read_messages(self, handler):
        with tempfile.TemporaryDirectory() as folder:
            reader = WholeLineFileMessageReader(os.path.join(folder, "messages"),
                                                include_stdio_in_messages=self._include_stdio_in_messages)
            with reader.read_messages(handler) as params:
                yield params


class LocalTrainer(Trainer):
    """The embedded default: a subprocess on this machine, with this environment's Python."""

    def train(self, context, extras, tracking_uri):
        return dg.PipesSubprocessClient(cwd=str(REPO_ROOT), message_reader=WholeLineTempFileMessageReader()).run(
            context=context, command=[sys.executable, *ENTRYPOINT], extras=extras,
            env={"MLFLOW_TRACKING_URI": tracking_uri},
        )
