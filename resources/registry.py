"""MLflow as the model registry, and the registry-side rule that guards promotion.

The rule lives here, not in the Dagster run: a model version whose gates did not all pass, or whose
registered artifact was not verified against the one trained, is refused by `promote` whatever
calls it (the champion asset, a notebook, a future CLI). `load_model` is the one way the platform
loads a version: its files are hashed against `assay.model_sha256` before MLflow unpickles anything
(training/artifacts.py). The registry is also the second witness of the release and approval logs:
each use case's registered model carries the count and last hash of its entries in each log
(`witness_log`), so a log deleted or cut short with its head file is still found out (assay/releases.py).
A registry opened from a copied or moved state folder first points its artifact locations at its own
folder (`follow_moved_state`). MLflow is imported lazily: the code location should not pay its 2-3 s
import to load.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assay import sql
from training.artifacts import download_verified, load_verified, model_sha256, payload_sha256
from training.tags import (
    GATES_TAG,
    INTEGRITY_TAG,
    MODEL_SHA256_TAG,
    PROMOTED_BECAUSE_TAG,
    REGISTERED_MODEL_SHA256_TAG,
    REGISTERED_SHA256_TAG,
    ROLLED_BACK_BECAUSE_TAG,
    WITNESS_TAG_PREFIX,
    gate_tag,
)

CHAMPION, PREVIOUS = "champion", "previous_champion"


class PromotionRefused(Exception):
    pass


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def failed_gates(self) -> list[str]:
        required = json.loads(self.tags.get(GATES_TAG, "[]"))
        if not required:
            return ["(no gate results recorded)"]
        failed = [g for g in required if self.tags.get(gate_tag(g)) != "passed"]
        if self.tags.get(INTEGRITY_TAG) != "verified":
            failed.append("integrity")
        return failed


def _point_mlflow_at(uri: str) -> None:
    """Point MLflow's process-wide helpers (`pyfunc.load_model` and downloads of `models:/` URIs) at `uri`,
    without leaving it in the environment.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI, which Assay reads as the user's choice of
    tracking server (`assay.settings.mlflow_tracking_uri`): a second state folder loaded in the same process
    would silently inherit the first one's registry and compare its candidates with a stranger's champion."""
    import mlflow

    chosen = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if chosen is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = chosen


# Where MLflow's SQLite store keeps absolute artifact locations: a state folder copied or moved
# (`cp -a .assay other`) would otherwise keep downloading from, and logging into, the original.
_ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                     ("model_versions", "source"))
ARTIFACT_ROOT_MARKER = "artifact_root"  # beside mlflow.db: the artifact root its paths were written under


def _moved(value: str | None, old: str, new: str) -> str | None:
    """`value` with the artifact root `old` replaced by `new` (a plain path or a file:// URI), or None
    where it is not under `old`."""
    if not value:
        return None
    for prefix in (old, f"file://{old}"):
        if value == prefix or value.startswith(f"{prefix}/"):
            return prefix[: len(prefix) - len(old)] + new + value[len(prefix):]
    return None


def follow_moved_state(database: Path, artifact_root: Path) -> int:
    """Point the store's artifact locations at `artifact_root` if the state folder was copied or moved
    since they were written; returns how many locations changed.

    MLflow keeps no relative locations, so the store records the root its locations are under (a file
    beside it) and, opened from another root, rewrites them before anything reads or logs. The copy
    then serves from its own artifacts, and deleting the original's breaks nothing.
    """
    import sqlite3

    marker = database.parent / ARTIFACT_ROOT_MARKER
    new = str(artifact_root)
    old = marker.read_text().strip() if marker.exists() else new
    changed = 0
    if old != new and database.exists():
        with sqlite3.connect(database) as store:  # one transaction: all locations move, or none
            tables = {row[0] for row in store.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, column in _ARTIFACT_COLUMNS:
                if table not in tables:
                    continue
                name, field = sql.identifier(table), sql.identifier(column)
                for rowid, value in store.execute(f"SELECT rowid, {field} FROM {name}").fetchall():
                    moved = _moved(value, old, new)
                    if moved is not None:
                        store.execute(f"UPDATE {name} SET {field} = ? WHERE rowid = ?", (moved, rowid))
                        changed += 1
    if old != new or not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{new}\n")
    return changed


_followed: set[tuple[Path, Path]] = set()


def _follow_moved_state_once(database: Path, artifact_root: Path) -> None:
    """`follow_moved_state` once per store and root in this process: `client()` is called for every
    registry read, and a state folder does not move under a running process."""
    if (database, artifact_root) not in _followed:
        follow_moved_state(database, artifact_root)
        _followed.add((database, artifact_root))


class ModelRegistry(dg.ConfigurableResource):
    """MLflow tracking + registry: SQLite and a local artifact folder by default, a server by URI."""

    tracking_uri: str
    artifact_root: str | None = None  # where a new experiment stores artifacts (a folder locally)

    def ensure_experiment(self, name: str) -> None:
        client = self.client()
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name, artifact_location=f"{self.artifact_root}/{name}" if self.artifact_root else None)

    def client(self):
        import mlflow

        if self.tracking_uri.startswith("sqlite:///") and self.artifact_root:
            _follow_moved_state_once(Path(self.tracking_uri.removeprefix("sqlite:///")), Path(self.artifact_root))
        _point_mlflow_at(self.tracking_uri)
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)

    def _version(self, client, name: str, version: str) -> Version:
        found = client.get_model_version(name, version)
        return Version(name, str(found.version), dict(found.tags))

    def version(self, name: str, version: str) -> Version:
        return self._version(self.client(), name, version)

    def alias(self, name: str, alias: str = CHAMPION) -> Version | None:
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            found = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        return Version(name, str(found.version), dict(found.tags))

    def download(self, name: str, version: str, destination: Path) -> Path:
        import mlflow

        self.client()
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                        dst_path=str(destination)))

    def download_verified(self, name: str, version: str, destination: Path) -> Path:
        """Download the registered version and check its files against its recorded whole-model hash."""
        self.client()
        return download_verified(f"models:/{name}/{version}", self.version(name, version).tags.get(MODEL_SHA256_TAG),
                                 destination)

    def load_model(self, name: str, version: str):
        """The version as a pyfunc model, loaded only after its files hash to `assay.model_sha256`."""
        self.client()
        return load_verified(f"models:/{name}/{version}", self.version(name, version).tags.get(MODEL_SHA256_TAG))

    def verify_artifact(self, name: str, version: str, trained_sha256: str,
                        trained_model_sha256: str | None = None) -> tuple[bool, str, str]:
        """Download the registered version, hash its payload and the whole model, record the outcome.

        Verified when the payload is the one trained and the whole model hashes to its recorded
        `assay.model_sha256` (and to what the trainer reported, when given). Returns (verified,
        payload sha256, whole-model sha256) as found in the store."""
        import mlflow

        client = self.client()
        recorded = self._version(client, name, version).tags.get(MODEL_SHA256_TAG)
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=scratch))
            payloads = [p for p in local.rglob("payload") if p.is_dir()]
            registered = payload_sha256(payloads[0]) if payloads else "missing"
            whole = model_sha256(local)
        verified = (registered == trained_sha256 and bool(recorded) and whole == recorded
                    and trained_model_sha256 in (None, recorded))
        client.set_model_version_tag(name, version, INTEGRITY_TAG, "verified" if verified else "mismatch")
        client.set_model_version_tag(name, version, REGISTERED_SHA256_TAG, registered)
        client.set_model_version_tag(name, version, REGISTERED_MODEL_SHA256_TAG, whole)
        return verified, registered, whole

    def _bar(self, client, name: str, version: str, reason: str) -> None:
        """Record a failed post-deploy gate on `version`: `promote` refuses it from now on."""
        found = self._version(client, name, version)
        required = sorted(set(json.loads(found.tags.get(GATES_TAG, "[]"))) | {"post_deploy"})
        client.set_model_version_tag(name, version, GATES_TAG, json.dumps(required))
        client.set_model_version_tag(name, version, gate_tag("post_deploy"), "failed")
        client.set_model_version_tag(name, version, ROLLED_BACK_BECAUSE_TAG, reason)

    def bar(self, name: str, version: str, reason: str) -> None:
        """A version failed after deploy with no former champion to return to: bar it and take the
        champion alias off it, so no automation deploys it again."""
        client = self.client()
        self._bar(client, name, version, reason)
        champion = self.alias(name, CHAMPION)
        if champion is not None and champion.version == str(version):
            client.delete_registered_model_alias(name, CHAMPION)

    # --- the second witness of the chained logs --------------------------------------------------

    def witness_log(self, name: str, log: str, head: dict) -> None:
        self.client().set_registered_model_tag(name, f"{WITNESS_TAG_PREFIX}{log}", json.dumps(head, sort_keys=True))

    def log_witnesses(self) -> dict[str, dict[str, dict]]:
        """Per registered model: what it witnesses of each log, and `promoted` (versions it records as
        promoted, a witness older than the log tags)."""
        client = self.client()
        found = {}
        for model in client.search_registered_models():
            tags = dict(model.tags or {})
            entry = {k.removeprefix(WITNESS_TAG_PREFIX): json.loads(v) for k, v in tags.items()
                     if k.startswith(WITNESS_TAG_PREFIX)}
            promoted = sorted(str(v.version) for v in client.search_model_versions(f"name = '{model.name}'")
                              if PROMOTED_BECAUSE_TAG in (v.tags or {}))
            if promoted:
                entry["promoted"] = {"versions": promoted}
            found[model.name] = entry
        return found

    def rollback(self, name: str, reason: str) -> Version:
        """Restore the previous champion; the version rolled back from can never be promoted again."""
        client = self.client()
        failed, previous = self.alias(name, CHAMPION), self.alias(name, PREVIOUS)
        if previous is None:
            raise PromotionRefused(f"{name}: no previous champion to roll back to")
        client.set_registered_model_alias(name, CHAMPION, previous.version)
        client.delete_registered_model_alias(name, PREVIOUS)
        if failed is not None and failed.version != previous.version:
            self._bar(client, name, failed.version, reason)
        return previous

    def promote(self, name: str, version: str, reason: str) -> Version | None:
        """Make `version` the champion; the former champion keeps an alias for rollback.

        Refuses any version with a failed or missing gate. Returns the former champion.
        """
        client = self.client()
        candidate = self._version(client, name, version)
        failed = candidate.failed_gates()
        if failed:
            raise PromotionRefused(f"{name} v{version} cannot become champion: failed or missing gates {failed}")
        former = self.alias(name, CHAMPION)
        if former and former.version == candidate.version:
            return former
        if former:
            client.set_registered_model_alias(name, PREVIOUS, former.version)
        client.set_registered_model_alias(name, CHAMPION, candidate.version)
        client.set_model_version_tag(name, version, PROMOTED_BECAUSE_TAG, reason)
        return former
