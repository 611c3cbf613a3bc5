"""Each benchmark replaces its own section of bench/RESULTS.md and leaves the others alone."""

from __future__ import annotations

import importlib.util

import pytest

from assay.settings import REPO_ROOT

_spec = importlib.util.spec_from_file_location("bench_results", REPO_ROOT / "bench" / "results.py")
results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results)


def test_a_rerun_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Assay benchmarks\n\n## Training, flights (old)\n\nold table\n\n## Serving\n\nhand notes\n")

    results.write_section("## Training, flights ", "## Training, flights (new)\n\nnew table\n", path)
    results.write_section("## Training, weather ", "## Training, weather (first)\n\nweather table\n", path)

    assert path.read_text() == ("# Assay benchmarks\n\n## Training, flights (new)\n\nnew table\n\n## Serving\n\n"
                                "hand notes\n\n## Training, weather (first)\n\nweather table\n")


def test_a_section_whose_first_line_is_not_its_heading_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must start with"):
        results.write_section("## Serving", "| a table without its heading |", tmp_path / "RESULTS.md")
