"""MLflow as the model registry, and the registry-side rule that guards promotion.

The rule lives here, not in the Dagster run: a model version whose gates did not all pass, or whose
registered artifact was not verified against the one trained, is refused by `promote` whatever
calls it (the champion asset, a notebook, a future CLI). MLflow is imported lazily: the code
location should not pay its 2-3 s import to load. A registry opened from a copied or moved state
folder first points its artifact locations at its own folder (`follow_moved_state`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assay import sql
from training.artifacts import GATE_TAG, payload_sha256

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
        required = json.loads(self.tags.get("assay.gates", "[]"))
        if not required:
            return ["(no gate results recorded)"]
        failed = [g for g in required if self.tags.get(f"{GATE_TAG}{g}") != "passed"]
        if self.tags.get("assay.integrity") != "verified":
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
            follow_moved_state(Path(self.tracking_uri.removeprefix("sqlite:///")), Path(self.artifact_root))
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

    def verify_artifact(self, name: str, version: str, trained_sha256: str) -> tuple[bool, str]:
        """Download the registered version and hash its payload; record the outcome on the version."""
        import mlflow

        client = self.client()
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=scratch))
            payloads = [p for p in local.rglob("payload") if p.is_dir()]
            registered = payload_sha256(payloads[0]) if payloads else "missing"
        verified = registered == trained_sha256
        client.set_model_version_tag(name, version, "assay.integrity", "verified" if verified else "mismatch")
        client.set_model_version_tag(name, version, "assay.registered_sha256", registered)
        return verified, registered

    def rollback(self, name: str, reason: str) -> Version:
        """Restore the previous champion; the version rolled back from can never be promoted again."""
        client = self.client()
        failed, previous = self.alias(name, CHAMPION), self.alias(name, PREVIOUS)
        if previous is None:
            raise PromotionRefused(f"{name}: no previous champion to roll back to")
        client.set_registered_model_alias(name, CHAMPION, previous.version)
        client.delete_registered_model_alias(name, PREVIOUS)
        if failed is not None and failed.version != previous.version:
            required = sorted(set(json.loads(failed.tags.get("assay.gates", "[]"))) | {"post_deploy"})
            client.set_model_version_tag(name, failed.version, "assay.gates", json.dumps(required))
            client.set_model_version_tag(name, failed.version, f"{GATE_TAG}post_deploy", "failed")
            client.set_model_version_tag(name, failed.version, "assay.rolled_back_because", reason)
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
        client.set_model_version_tag(name, version, "assay.promoted_because", reason)
        return former
