"""The code location: importing definitions.py touches no state, and the factory builds it for any state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from assay.settings import DERIVED_DAGSTER_HOME, REPO_ROOT, StateLayout
from assay.spec import load_specs
from definitions import build_definitions

# Run in a fresh process: this one has imported definitions.py, and prepared a state, long before.
IMPORT_ONLY = """
import json, os, pathlib
state = pathlib.Path(os.environ["ASSAY_HOME"])
variables, paths = dict(os.environ), set(state.rglob("*"))
import definitions
print(json.dumps({"variables": sorted(k for k in {*variables, *os.environ} if variables.get(k) != os.environ.get(k)),
                  "paths": sorted(str(p) for p in set(state.rglob("*")) - paths)}))
"""


def test_importing_the_code_location_makes_no_folder_and_sets_no_variable(tmp_path):
    inherited = ("DAGSTER_HOME", DERIVED_DAGSTER_HOME, "ASSAY_WAREHOUSE_PATH")  # what a prepared state exports
    env = {k: v for k, v in os.environ.items() if k not in inherited} | {"ASSAY_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", IMPORT_ONLY], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    changed = json.loads(done.stdout.strip().splitlines()[-1])

    assert changed["paths"] == []
    # Libraries may set their own variables when imported (polars does); Assay's and its tools' must not change.
    assert [name for name in changed["variables"] if name.startswith(("ASSAY", "DAGSTER", "MLFLOW"))] == []


def test_the_factory_builds_the_code_location_over_any_state_folder_without_creating_it(tmp_path):
    layout, specs = StateLayout(tmp_path / "elsewhere"), load_specs(REPO_ROOT / "usecases")

    defs = build_definitions(layout, specs)

    assert defs.resources["warehouse"].path == str(layout.warehouse)
    assert defs.resources["landing"].root == str(layout.landing)
    assert {asset.key.path[0] for asset in defs.resolve_all_asset_specs()} == {spec.name for spec in specs}
    assert not layout.root.exists()
