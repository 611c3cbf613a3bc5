"""DAGSTER_HOME follows ASSAY_HOME in every entry point, the plain `dagster` CLI included."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from harness.replay import replay
from assay.settings import DERIVED_DAGSTER_HOME, REPO_ROOT, StateMismatch, prepare_environment
from assay.spec import load_spec
from assay.startup_hook import install
from resources.landing_zone import LandingZone
from conftest import only_use_case


def _venv_as_make_install_leaves_it(tmp_path: Path) -> Path:
    """A venv that sees this one's packages and has the start-up hook `make install` writes; the shared
    venv of the test run is not changed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    (site_packages / "_assay_test_packages.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    install(site_packages)
    for tool in Path(sys.executable).parent.iterdir():  # dbt, mlserver: found beside the interpreter
        if not (venv / "bin" / tool.name).exists():
            (venv / "bin" / tool.name).symlink_to(tool)
    return venv


def test_a_run_of_the_plain_dagster_cli_lands_in_the_state_folders_instance(tmp_path):
    state = tmp_path / "state"
    spec_dir = only_use_case(tmp_path, "flights")
    replay(load_spec(spec_dir / "flights.yaml"),
           LandingZone(root=str(state / "landing"), quarantine_root=str(state / "quarantine")), date(2013, 1, 1), 1)
    venv = _venv_as_make_install_leaves_it(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", DERIVED_DAGSTER_HOME)}
    env |= {"ASSAY_HOME": str(state), "ASSAY_USECASES_DIR": str(spec_dir),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    dagster_cli = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(dagster_cli), "asset", "materialize", "-f", "definitions.py",
         "--select", "flights/raw_flights", "--partition", "2013-01-01"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(state / "dagster")) as instance:
        runs = instance.get_runs()
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS]
        assert instance.get_latest_materialization_event(dg.AssetKey(["flights", "raw_flights"])) is not None


def test_a_dagster_home_set_apart_from_assay_home_is_refused_naming_both(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.delenv(DERIVED_DAGSTER_HOME, raising=False)

    with pytest.raises(StateMismatch, match="DAGSTER_HOME=.*elsewhere.*ASSAY_HOME=.*state"):
        prepare_environment()


def test_a_dagster_home_assay_derived_itself_follows_the_next_assay_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "first"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv(DERIVED_DAGSTER_HOME, raising=False)
    prepare_environment()
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "second"))

    layout = prepare_environment()

    assert os.environ["DAGSTER_HOME"] == str(layout.dagster_home) == str(tmp_path / "second" / "dagster")
    assert (layout.dagster_home / "dagster.yaml").exists()
