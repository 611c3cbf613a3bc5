"""Shared fixtures: every test runs the real platform against its own state folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

import dagster as dg
import pytest

from assay.settings import REPO_ROOT, prepare_environment
from assay.spec import load_spec
from resources.landing_zone import LandingZone
from resources.warehouse import Warehouse


@contextlib.contextmanager
def state_folder(home: Path):
    """The platform's state (Dagster home, warehouse, landing zone) in `home` while the block runs,
    with no Dagster home or use-case folder inherited from the caller's environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_HOME", str(home))
        patch.delenv("DAGSTER_HOME", raising=False)
        patch.delenv("ASSAY_USECASES_DIR", raising=False)
        yield prepare_environment()


def landing_zone(layout) -> LandingZone:
    return LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))


@pytest.fixture(scope="module")
def assay_home(tmp_path_factory):
    """A fresh state folder for one test module."""
    with state_folder(tmp_path_factory.mktemp("assay-home")) as layout:
        yield layout


@pytest.fixture(scope="module")
def instance(assay_home):
    with dg.DagsterInstance.from_config(str(assay_home.dagster_home)) as instance:
        yield instance


@pytest.fixture(scope="module")
def landing(assay_home) -> LandingZone:
    return landing_zone(assay_home)


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


def free_ports(count: int = 3) -> int:
    """The first of `count` consecutive free loopback ports, from a range of this xdist worker's own:
    two workers scanning one range both find the same ports free before either server binds them."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    first = 20000 + 1000 * worker
    for base in range(first, first + 1000, count + 1):
        ports = []
        for port in range(base, base + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                    ports.append(port)
                except OSError:
                    break
        if len(ports) == count:
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {first}..{first + 999}")


def venv_bin(name: str) -> str:
    import sys

    return os.path.join(os.path.dirname(sys.executable), name)


@contextlib.contextmanager
def weather_platform(folder: Path, edit):
    """The platform's definitions over the weather use case alone, its spec changed by `edit(spec)`,
    with model servers on free ports; the servers are stopped afterwards."""
    import yaml

    from definitions import current_definitions

    usecases = only_use_case(folder, "weather")
    spec = yaml.safe_load((usecases / "weather.yaml").read_text())
    edit(spec)
    (usecases / "weather.yaml").write_text(yaml.safe_dump(spec))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(usecases))
        base = free_ports(6)
        patch.setenv("ASSAY_SERVING_PORTS", f"staging={base},production={base + 3}")
        defs = current_definitions()
        try:
            yield defs, load_spec(usecases / "weather.yaml")
        finally:
            for server in defs.resources["deployer"].servers().values():
                server.stop()


def why_failed(result) -> str:
    """The failed steps' errors and failed checks of an in-process run, so an assertion on `.success`
    says what broke instead of `assert False`."""
    reasons = [f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
               for e in result.all_events if e.is_step_failure and e.event_specific_data.error]
    reasons += [f"check {c.asset_key.to_user_string()}:{c.check_name} failed: {c.description} {dict(c.metadata)}"
                for c in result.get_asset_check_evaluations() if not c.passed]
    return "\n".join(reasons) or "no failed step or check recorded"


def log_lightgbm_model(folder: Path, frame, features, example_rows: int = 5) -> Path:
    """A small LightGBM model logged as training logs it (Assay's pyfunc, its code, signature and input
    example), trained on all but the last 100 rows of `frame`; returns the logged model's folder."""
    import mlflow.pyfunc

    from training import lightgbm_family
    from training.pyfunc import AssayPyfunc, pip_requirements
    from training.train import model_input, model_signature

    model = lightgbm_family.train(frame[:-100], frame[-100:], features, seed=3)
    model.save(folder / "payload")
    mlflow.pyfunc.save_model(
        path=folder / "pyfunc", python_model=AssayPyfunc(), artifacts={"payload": str(folder / "payload")},
        code_paths=[str(REPO_ROOT / "training")], input_example=model_input(frame.tail(example_rows), features),
        signature=model_signature(features, features.task), pip_requirements=pip_requirements("lightgbm"),
    )
    return folder / "pyfunc"
