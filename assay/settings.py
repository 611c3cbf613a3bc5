"""Where Assay keeps its state, and which environment it runs in.

Every piece of state of the embedded default (Dagster home, DuckDB warehouse, MLflow store, landing
zone, quarantine, snapshots) lives under one folder, so `make clean` is one `rm -rf` and a test can
point the whole platform at a temporary folder by setting one variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("local", "kubernetes")


def environment() -> str:
    """The one switch between the embedded default and the cluster (`ASSAY_ENV`)."""
    env = os.environ.get("ASSAY_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"ASSAY_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}")
    return env


@dataclass(frozen=True)
class StateLayout:
    """Paths inside the state folder; derived, never configured one by one."""

    root: Path

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def training_snapshot(self, use_case: str, sha256: str) -> Path:
        """A training-set snapshot, found by its hash under this state: never by a path recorded in an
        event, which names whichever folder the state was in when it was written (a copy must read its own)."""
        return self.snapshots / use_case / "training_set" / f"{sha256}.parquet"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def serving(self) -> Path:
        return self.root / "serving"


def state() -> StateLayout:
    return StateLayout(Path(os.environ.get("ASSAY_HOME", REPO_ROOT / ".assay")).resolve())


def usecases_dir() -> Path:
    """Spec files are found here; tests point it at a folder holding a single spec."""
    return Path(os.environ.get("ASSAY_USECASES_DIR", REPO_ROOT / "usecases")).resolve()


DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def mlflow_tracking_uri(layout: StateLayout) -> str:
    """A tracking server when MLFLOW_TRACKING_URI names one; else SQLite in the state folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{layout.mlflow / 'mlflow.db'}"

_DAGSTER_YAML = """\
# Written by assay on first use; the embedded default instance (SQLite under this folder).
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    default_limit: 1   # the `gpu` pool: one training at a time on a laptop
"""


# The DAGSTER_HOME that Assay exported itself: a value equal to it was derived, not chosen, so it may
# follow a new ASSAY_HOME (a child process, or a test pointing at another state folder).
DERIVED_DAGSTER_HOME = "ASSAY_DERIVED_DAGSTER_HOME"


class StateMismatch(RuntimeError):
    """DAGSTER_HOME names a Dagster instance outside the state folder ASSAY_HOME names."""


def export_dagster_home(layout: StateLayout) -> None:
    """Point DAGSTER_HOME at the state folder's instance, creating it with its dagster.yaml.

    Locally DAGSTER_HOME is derived from ASSAY_HOME, never configured beside it. A DAGSTER_HOME the user
    set that disagrees is an error rather than either side winning silently: following it would put
    runs in one instance and their data in another state (the bug this prevents), and overriding it
    would ignore what the user asked for. On Kubernetes the Helm chart's DAGSTER_HOME (its Postgres
    instance) is kept as it is.
    """
    wanted = str(layout.dagster_home)
    if environment() != "local":
        os.environ.setdefault("DAGSTER_HOME", wanted)
        return
    current = os.environ.get("DAGSTER_HOME")
    chosen = current and current != os.environ.get(DERIVED_DAGSTER_HOME)
    if chosen and Path(current).expanduser().resolve() != layout.dagster_home:
        raise StateMismatch(
            f"DAGSTER_HOME={current} but ASSAY_HOME={layout.root} keeps its Dagster instance in {wanted}: "
            "runs would land in one state and their data in another. Unset DAGSTER_HOME (Assay derives it "
            "from ASSAY_HOME) or set ASSAY_HOME to the state folder that holds that instance.")
    layout.dagster_home.mkdir(parents=True, exist_ok=True)
    dagster_yaml = layout.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.write_text(_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = os.environ[DERIVED_DAGSTER_HOME] = wanted


def prepare_environment() -> StateLayout:
    """Create the state folder and export the variables every process (Dagster, dbt) reads.

    Called by the CLI before it starts Dagster or dbt, and by definitions.py when Dagster loads the
    code location (not when it is imported), so a run launched from the UI sees the same warehouse
    as `assay replay` and the tests. The plain `dagster` CLI resolves its instance before it loads
    definitions.py: for it, the interpreter start-up hook (assay/startup_hook.py, installed by
    `make install`) calls `export_dagster_home` first.
    """
    layout = state()
    for path in (layout.landing, layout.quarantine, layout.snapshots, layout.mlflow):
        path.mkdir(parents=True, exist_ok=True)
    export_dagster_home(layout)
    os.environ["ASSAY_WAREHOUSE_PATH"] = str(layout.warehouse)  # dbt's profile reads it
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return layout
