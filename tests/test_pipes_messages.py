"""Training reports back through a Pipes message file; a message still being written is never parsed."""

from __future__ import annotations

import threading
import time

from dagster._utils import tail_file

from resources.training.local import LocalTrainer, WholeLineTempFileMessageReader, whole_lines


def _collect(lines, into: list) -> None:
    into.extend(lines)


def test_a_message_half_written_by_the_training_process_is_read_only_once_its_line_ends(tmp_path):
    path = tmp_path / "messages"
    path.write_text('{"method": "report_asset_materialization", "params": {"plots": "iVBOR')
    stop = threading.Event()
    read: list[str] = []
    reader = threading.Thread(target=_collect, args=(whole_lines(str(path), stop.is_set), read))
    reader.start()
    time.sleep(0.2)
    assert read == []  # Dagster's own tail_file would have handed this half line to json.loads

    with path.open("a") as stream:
        stream.write('w0KGgo"}}\n{"method": "closed"}\n')
    time.sleep(0.2)
    stop.set()
    reader.join(timeout=5)

    assert read == ['{"method": "report_asset_materialization", "params": {"plots": "iVBORw0KGgo"}}\n',
                    '{"method": "closed"}\n']


def test_dagster_s_stock_tail_hands_back_a_half_written_line(tmp_path):
    """Why the reader above exists: the stock one returns the unfinished line as it is."""
    path = tmp_path / "messages"
    path.write_text('{"method": "report_asset_mat')
    assert next(tail_file(str(path), lambda: True)) == '{"method": "report_asset_mat'


def test_local_training_reads_its_messages_whole(monkeypatch):
    import dagster as dg

    used = {}

    def run(self, **kwargs):
        used["reader"] = self.message_reader
        return None

    monkeypatch.setattr(dg.PipesSubprocessClient, "run", run)
    LocalTrainer().train(context=None, extras={}, tracking_uri="sqlite:///unused.db")
    assert isinstance(used["reader"], WholeLineTempFileMessageReader)
