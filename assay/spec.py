"""The use-case spec: what a team declares so the platform can build its whole asset graph.

A spec is a YAML file in usecases/. It is validated on load; any error names the file and the
field (`usecases/flights.yaml: tables.flights.columns.dep_time.type: ...`), because a spec error
found at run time, halfway through a backfill, is far more expensive than one found at load.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ColumnType = Literal["int", "float", "string", "timestamp", "date"]
# Text that a landing file may write for a missing value. "NaN" matters for floats above all: read
# as a number it would be stored as a NaN that null counts and range rules do not see.
DEFAULT_NULL_MARKERS = ["", "NA", "NULL", "NaN"]


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    # Unknown fields are errors: a misspelt threshold must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    type: ColumnType
    nullable: bool = False
    max_null_rate: float | None = Field(default=None, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    accepted_values: list[str] | None = None
    # Overrides the table's null_markers for this column (a country code column where "NA" is Namibia).
    null_markers: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if self.max_null_rate is not None and not self.nullable:
            raise ValueError("max_null_rate needs nullable: true")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"min/max apply to numeric columns, not {self.type}")
        return self


class Volume(_Strict):
    """A partition's row count must lie within [min_ratio, max_ratio] x the trailing median."""

    trailing_days: int = Field(default=7, ge=1)
    min_ratio: float = Field(default=0.5, gt=0)
    max_ratio: float = Field(default=2.0, gt=0)


class Table(_Strict):
    """A source table's contract. A partitioned table says which day a row belongs to by
    `date_columns`: either [year, month, day] (int columns) or one `date` or `timestamp` column (a
    timestamp's day is taken in the use case's `timezone`)."""

    description: str = ""
    partitioned: bool = False
    date_columns: list[str] | None = None
    key: list[str]
    columns: dict[str, Column]
    volume: Volume | None = None
    # Values read as null (after trimming spaces), in every column type; a column may override them.
    null_markers: list[str] = DEFAULT_NULL_MARKERS

    def null_markers_of(self, column: str) -> list[str]:
        markers = self.columns[column].null_markers
        return self.null_markers if markers is None else markers

    @model_validator(mode="after")
    def _consistent(self) -> Table:
        for field, names in (("key", self.key), ("date_columns", self.date_columns or [])):
            missing = [n for n in names if n not in self.columns]
            if missing:
                raise ValueError(f"{field} names columns not in the contract: {missing}")
        if self.partitioned and not self.date_columns:
            raise ValueError("a partitioned table needs date_columns ([year, month, day] or one date or timestamp column)")
        dating = [self.columns[n] for n in self.date_columns or []]
        if len(dating) == 3 and any(c.type != "int" for c in dating):
            raise ValueError("date_columns [year, month, day] must be int columns")
        if len(dating) == 1 and dating[0].type not in ("date", "timestamp"):
            raise ValueError(f"a single date column must be of type date or timestamp, not {dating[0].type}")
        if len(dating) not in (0, 1, 3):
            raise ValueError("date_columns must be [year, month, day] or one date or timestamp column")
        if any(c.nullable for c in dating):
            raise ValueError("date_columns cannot be nullable: every row needs its day")
        return self


class Partitions(_Strict):
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Partitions:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class FeatureColumns(_Strict):
    numeric: list[str] = []
    categorical: list[str] = []


class Features(_Strict):
    dbt_models: list[str] = Field(min_length=1)
    entity: str
    timestamp: str
    target: str
    task: Literal["binary_classification", "regression"]
    columns: FeatureColumns
    slices: list[str] = []
    # Source columns only known after the prediction time; the leakage gate refuses them as features.
    known_after_prediction: list[str] = []

    @property
    def training_model(self) -> str:
        """The dbt model whose rows make the training set (the last one listed)."""
        return self.dbt_models[-1]

    def feature_set(self):
        """What a model takes and predicts (training/tabular.py's FeatureSet), as training, serving checks,
        monitoring and the benchmarks all need it; training/ stays free of the spec."""
        from training.tabular import FeatureSet

        return FeatureSet(self.columns.numeric, self.columns.categorical, self.target, self.task)

    @model_validator(mode="after")
    def _consistent(self) -> Features:
        features = set(self.columns.numeric) | set(self.columns.categorical)
        if not features:
            raise ValueError("columns: declare at least one feature")
        if self.target in features:
            raise ValueError(f"the target {self.target!r} cannot also be a feature")
        late = sorted(features & set(self.known_after_prediction))
        if late:
            raise ValueError(f"features known only after the prediction time: {late}")
        unknown_slices = [s for s in self.slices if s not in features]
        if unknown_slices:
            raise ValueError(f"slices must be feature columns: {unknown_slices}")
        return self


class Training(_Strict):
    window_days: int = Field(ge=2)
    holdout_days: int = Field(ge=1)

    @model_validator(mode="after")
    def _holdout_inside_window(self) -> Training:
        if self.holdout_days >= self.window_days:
            raise ValueError("holdout_days must be shorter than window_days")
        return self


class Gates(_Strict):
    """Model-gate thresholds; read by the model stage, validated here so typos fail at load."""

    min_roc_auc: float | None = None
    min_pr_auc: float | None = None
    max_rmse: float | None = None
    max_mae: float | None = None
    max_regression: float = 0.0
    max_slice_gap: float | dict[str, float] | None = None  # one limit, or one per slice column
    min_slice_size: int = 100
    max_calibration_error: float | None = None
    max_plausible_roc_auc: float | None = None


# The staged steps of a rollout, in order; `full` (serve the candidate alone) follows them.
ROLLOUT_STEPS = ("shadow", "canary")


class Release(_Strict):
    strategy: list[Literal["shadow", "canary", "full"]] = ["full"]
    canary_weight: int = Field(default=10, ge=1, le=99)
    environments: list[str] = ["staging"]
    # Environments that only deploy a version someone approved (`assay approve`).
    approval_required: list[str] = ["production"]
    # None: derived at deploy from a sequential warm-up of the served model (resources/deployment/release.py).
    latency_p99_ms: float | None = Field(default=None, gt=0)
    latency_concurrency: int = Field(default=4, ge=1, le=64)
    latency_requests: int = Field(default=200, ge=20)
    # Served predictions may differ from the offline model's by at most this (codec round trips).
    smoke_tolerance: float = 1e-6
    # Progressive rollout: replayed requests per step, and the live gates a candidate must pass
    # against the incumbent before taking more traffic.
    rollout_requests: int = Field(default=300, ge=50)
    min_agreement: float = Field(default=0.8, ge=0, le=1)
    # Two answers agree when the decision matches (classification, threshold 0.5) or when they
    # differ by at most this many target units (regression; required when the task is regression).
    agreement_tolerance: float | None = Field(default=None, gt=0)
    max_latency_ratio: float = Field(default=2.0, ge=1)
    min_labelled_rows: int = Field(default=50, ge=10)

    @model_validator(mode="after")
    def _environment_names(self) -> Release:
        for name in self.environments:
            if not NAME.match(name):
                raise ValueError(f"environment {name!r} must be lower_snake_case")
        return self


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    match = re.fullmatch(r"(\d+)([mhd])", str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30m, 26h or 8d")
    units = {"m": "minutes", "h": "hours", "d": "days"}
    return timedelta(**{units[match.group(2)]: int(match.group(1))})


class Freshness(_Strict):
    """How old each stage may get before it is shown as stale."""

    raw: timedelta = timedelta(hours=26)
    features: timedelta = timedelta(hours=28)
    training_set: timedelta = timedelta(days=8)
    # Candidates and the champion: a retrain at least this often (the retrain sensor's interval
    # plus slack); deployments follow the champion; monitoring runs daily.
    models: timedelta = timedelta(days=15)
    deployment: timedelta = timedelta(days=15)
    monitoring: timedelta = timedelta(hours=28)

    @field_validator("raw", "features", "training_set", "models", "deployment", "monitoring", mode="before")
    @classmethod
    def _parse(cls, value: object) -> timedelta:
        parsed = _duration(value)
        if parsed < timedelta(minutes=1):
            raise ValueError("freshness windows must be at least 1m")
        return parsed


class LiveFloors(_Strict):
    """The live metric a serving model must keep; below it (or above, for errors) a retrain is asked for."""

    min_roc_auc: float | None = Field(default=None, ge=0, le=1)
    min_pr_auc: float | None = Field(default=None, ge=0, le=1)
    max_rmse: float | None = Field(default=None, gt=0)
    max_mae: float | None = Field(default=None, gt=0)


class Monitoring(_Strict):
    """Drift and live-performance thresholds, and how often they may ask for a retrain.

    A column drifts when its PSI reaches `psi_threshold` AND its two-sample test's p-value falls
    below `p_value` (monitoring/drift.py says why both). Below `min_rows` rows on either side, a
    feature's drift or a live metric is reported as insufficient data and triggers nothing; unset,
    it is half a day's volume, the latest training set's rows per day (`UseCase.monitoring_min_rows`).
    `drift_window_days` is how many days of served requests, ending on the monitored day, are
    compared with the training reference: one day of flights is one day's weather, a single regime
    that differs from any 28-day reference every day, so a daily sample makes drift a constant alarm.
    `features` defaults to every feature column; `floors` default, metric by metric, to the gates'
    floors (the floor a model had to meet to be released is the one it must keep meeting live).
    """

    psi_threshold: float = Field(default=0.2, gt=0)
    p_value: float = Field(default=0.01, gt=0, lt=1)
    min_rows: int | None = Field(default=None, ge=10)
    drift_window_days: int = Field(default=1, ge=1, le=90)
    features: list[str] | None = Field(default=None, min_length=1)
    floors: LiveFloors = LiveFloors()
    retrain_min_interval: timedelta = timedelta(days=7)

    @field_validator("retrain_min_interval", mode="before")
    @classmethod
    def _parse(cls, value: object) -> timedelta:
        parsed = _duration(value)
        if parsed < timedelta(hours=1):
            raise ValueError("retrain_min_interval must be at least 1h")
        return parsed


class Serving(_Strict):
    """What the model server accepts from a caller (serving/validation.py); past a limit, or with a
    value its feature's type refuses, a request is a 4xx naming the field, before the model runs."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)  # 413 before the body is parsed
    max_rows: int = Field(default=5000, ge=1)
    max_string_length: int = Field(default=256, ge=1)  # per categorical value
    max_request_id_length: int = Field(default=128, ge=16)
    max_entity_id_length: int = Field(default=128, ge=1)
    # Missing values: null (or the string "NaN") for a number, null for a category; Assay's
    # client sends null. With false, a request with a missing value is refused.
    allow_missing_values: bool = True
    # A caller's event time may run ahead of the server's clock by this much (clock skew), no more;
    # it must also fall within the use case's partitions.
    max_event_time_ahead: timedelta = timedelta(days=1)
    # Inference-log day files older than this many days before the newest one are deleted
    # (null: kept forever). Counted from the newest day logged, so a replay of history keeps it.
    log_retention_days: int | None = Field(default=400, ge=1)

    @field_validator("max_event_time_ahead", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        if isinstance(value, str) and value.startswith("P"):
            return value  # ISO 8601, as the model settings carry it (model_dump(mode="json")): pydantic's own
        return _duration(value)


class UseCase(_Strict):
    name: str
    description: str
    owner: str
    # The replay source of a demo data set (`assay replay`); None when upstream lands the files.
    source: str | None = None
    partitions: Partitions
    # IANA zone of timestamps written without an offset, and of the days of a table dated by a timestamp.
    timezone: str = "UTC"
    tables: dict[str, Table]
    features: Features
    training: Training
    models: list[Literal["lightgbm", "torch"]] = Field(min_length=1)
    gates: Gates = Gates()
    release: Release = Release()
    freshness: Freshness = Freshness()
    monitoring: Monitoring = Monitoring()
    serving: Serving = Serving()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("must be lower_snake_case (it prefixes asset keys and a schema)")
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        if not (value.startswith("team:") or "@" in value):
            raise ValueError("must be 'team:<name>' or an email address (Dagster's owner format)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name (like UTC or America/New_York)") from None
        return value

    @model_validator(mode="after")
    def _tables(self) -> UseCase:
        if not any(t.partitioned for t in self.tables.values()):
            raise ValueError("tables: at least one table must be partitioned by day")
        for name in self.tables:
            if not NAME.match(name):
                raise ValueError(f"tables.{name}: table names must be lower_snake_case")
        staged = set(self.release.strategy) - {"full"}
        if staged and self.features.task == "regression" and self.release.agreement_tolerance is None:
            raise ValueError("release.agreement_tolerance: a regression use case rolled out by "
                             f"{sorted(staged)} must say how far two predictions may differ and still agree")
        return self

    @model_validator(mode="after")
    def _sql_names(self) -> UseCase:
        """Every name that becomes a SQL identifier (a column, a dbt model) follows the table-name rule,
        so a spec cannot smuggle quoting or SQL into the statements built from it."""
        f = self.features
        named = [(f"tables.{t}.columns", c) for t, table in self.tables.items() for c in table.columns]
        named += [("features.entity", f.entity), ("features.timestamp", f.timestamp), ("features.target", f.target)]
        named += [(f"features.{field}", name) for field, names in (
            ("dbt_models", f.dbt_models), ("columns.numeric", f.columns.numeric),
            ("columns.categorical", f.columns.categorical), ("known_after_prediction", f.known_after_prediction))
            for name in names]
        bad = [f"{where}: {name!r}" for where, name in named if not NAME.match(name)]
        if bad:
            raise ValueError(f"names used as SQL identifiers must be lower_snake_case ({NAME.pattern}): "
                             + "; ".join(bad))
        return self

    @model_validator(mode="after")
    def _monitoring(self) -> UseCase:
        columns = self.features.columns
        unknown = [f for f in self.monitoring.features or [] if f not in {*columns.numeric, *columns.categorical}]
        if unknown:
            raise ValueError(f"monitoring.features: not feature columns of this use case: {unknown}")
        wrong = {"binary_classification": ("max_rmse", "max_mae"),
                 "regression": ("min_roc_auc", "min_pr_auc")}[self.features.task]
        misplaced = [f for f in wrong if getattr(self.monitoring.floors, f) is not None]
        if misplaced:
            raise ValueError(f"monitoring.floors: {misplaced} do not apply to a {self.features.task} use case")
        retention = self.serving.log_retention_days
        if retention is not None and retention < self.monitoring.drift_window_days:
            raise ValueError(f"serving.log_retention_days: {retention} days would delete served requests "
                             f"monitoring still reads (drift_window_days {self.monitoring.drift_window_days})")
        return self

    @property
    def watched_features(self) -> tuple[list[str], list[str]]:
        """(numeric, categorical) columns whose drift is monitored, in the spec's order."""
        watched = self.monitoring.features
        columns = self.features.columns
        if watched is None:
            return list(columns.numeric), list(columns.categorical)
        return ([c for c in columns.numeric if c in watched], [c for c in columns.categorical if c in watched])

    @property
    def live_floors(self) -> dict[str, float]:
        """Live-metric floors by metric name (roc_auc, pr_auc, rmse, mae); monitoring's, else the gates'."""
        names = ({"roc_auc": "min_roc_auc", "pr_auc": "min_pr_auc"} if self.features.task == "binary_classification"
                 else {"rmse": "max_rmse", "mae": "max_mae"})
        floors = {}
        for metric, field in names.items():
            value = getattr(self.monitoring.floors, field)
            value = getattr(self.gates, field) if value is None else value
            if value is not None:
                floors[metric] = value
        return floors

    def monitoring_min_rows(self, training_rows: int | None) -> int:
        """`monitoring.min_rows`, or half a day's volume: the training set's rows per day of its window
        (at least 10), so a day that delivered half its usual rows is still judged and a trickle is not."""
        if self.monitoring.min_rows is not None:
            return self.monitoring.min_rows
        if not training_rows:
            raise SpecError(f"{self.name}: monitoring.min_rows is not set and there is no training set yet to "
                            "derive it from a day's volume: set monitoring.min_rows in the spec")
        return max(10, round(training_rows / self.training.window_days / 2))

    @property
    def partitioned_tables(self) -> list[str]:
        return [n for n, t in self.tables.items() if t.partitioned]

    @property
    def dimension_tables(self) -> list[str]:
        return [n for n, t in self.tables.items() if not t.partitioned]


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def load_spec(path: Path) -> UseCase:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    try:
        spec = UseCase.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{path}: {_describe(exc)}") from None
    if spec.name != path.stem:
        raise SpecError(f"{path}: name: {spec.name!r} must match the file name {path.stem!r}")
    return spec


def load_specs(folder: Path) -> list[UseCase]:
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise SpecError(f"{folder}: no use-case specs (*.yaml) found")
    return [load_spec(p) for p in paths]
