"""Shared fixtures: every test runs the real platform against its own state folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from assay.settings import REPO_ROOT, prepare_environment
from assay.spec import load_spec
from resources.landing_zone import LandingZone
from resources.warehouse import Warehouse


@pytest.fixture(scope="module")
def assay_home(tmp_path_factory):
    """A fresh state folder (Dagster home, warehouse, landing zone) for one test module."""
    home = tmp_path_factory.mktemp("assay-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_HOME", str(home))
        patch.delenv("DAGSTER_HOME", raising=False)
        patch.delenv("ASSAY_USECASES_DIR", raising=False)
        layout = prepare_environment()
        yield layout


@pytest.fixture(scope="module")
def instance(assay_home):
    with dg.DagsterInstance.from_config(str(assay_home.dagster_home)) as instance:
        yield instance


@pytest.fixture(scope="module")
def landing(assay_home) -> LandingZone:
    return LandingZone(root=str(assay_home.landing), quarantine_root=str(assay_home.quarantine))


@pytest.fixture(scope="module")
def warehouse(assay_home) -> Warehouse:
    return Warehouse(path=str(assay_home.warehouse), lock_timeout_seconds=60)


@pytest.fixture(scope="session")
def flights_spec():
    return load_spec(REPO_ROOT / "usecases" / "flights.yaml")


@pytest.fixture(scope="session")
def weather_spec():
    return load_spec(REPO_ROOT / "usecases" / "weather.yaml")


def only_use_case(tmp_path: Path, name: str) -> Path:
    """A usecases folder holding a single spec copied from the repo."""
    folder = tmp_path / "usecases"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "usecases" / f"{name}.yaml", folder)
    return folder


def venv_bin(name: str) -> str:
    import sys

    return os.path.join(os.path.dirname(sys.executable), name)
