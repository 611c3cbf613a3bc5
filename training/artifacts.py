"""The model's fingerprints, and the one way Assay loads a registered model: verified first.

Two hashes are recorded on a registered version:
- `assay.artifact_sha256`, the trained payload (weights and manifest), computed before MLflow logs
  the model: it proves the registry holds what was trained;
- `assay.model_sha256`, the whole logged model (MLmodel, python_model.pkl, code/, the payload, the
  environment files), computed over the logged folder after `log_model`: loading a model unpickles
  python_model.pkl and imports code/, so every file that runs at load is covered.

Every place that loads a model (deployment checks, monitoring, training's champion comparison, the
serving runtime, the Kubernetes deployer) goes through `download_verified` / `load_verified`:
download to a folder, hash it, compare with the recorded hash, refuse with `ArtifactMismatch`
before anything is unpickled. This module imports only the standard library at import time: the
serving runtime loads it by file (serving/runtime.py says why) and the training pod has no Dagster.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

# The registry tags the two hashes are recorded under (training/tags.py names every other tag).
PAYLOAD_SHA256_TAG = "assay.artifact_sha256"
MODEL_SHA256_TAG = "assay.model_sha256"
# Written by MLflow into a folder it downloads as `models:/<name>/<version>` (naming that version), so
# not part of what was logged: a model fetched from storage directly (Seldon) has none.
DOWNLOAD_ONLY_FILES = frozenset({"registered_model_meta"})


class ArtifactMismatch(RuntimeError):
    """A model whose files do not hash to what was recorded: it is never loaded."""


def payload_sha256(folder: Path, skip: frozenset[str] = frozenset()) -> str:
    """sha256 over every file's relative path and bytes, in sorted order (independent of mtimes);
    files named in `skip` at the folder's top level are left out."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative in skip:
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def model_sha256(folder: Path) -> str:
    """The whole logged model folder's hash (every file but what the download itself adds)."""
    return payload_sha256(folder, skip=DOWNLOAD_ONLY_FILES)


def check_model_folder(folder: Path, expected: str | None, subject: str) -> None:
    """Refuse a model folder that does not hash to `expected` (or has nothing recorded to compare)."""
    if not expected:
        raise ArtifactMismatch(f"{subject}: no {MODEL_SHA256_TAG} recorded (registered before whole-model "
                               "hashes, or never verified): refusing to load a model that cannot be checked; retrain it")
    found = model_sha256(folder)
    if found != expected:
        raise ArtifactMismatch(f"{subject}: the model's files hash to {found[:16]}…, not the {expected[:16]}… "
                               f"recorded ({MODEL_SHA256_TAG}): refusing to load it")


def download_verified(uri: str, expected: str | None, destination: Path) -> Path:
    """Download the MLflow model at `uri` into `destination` and check its hash; returns the folder."""
    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
    check_model_folder(folder, expected, uri)
    return folder


def load_verified(uri: str, expected: str | None):
    """The pyfunc model at `uri`, loaded only after its downloaded files hash to `expected`.

    The folder is removed after loading: Assay's families read their payload into memory."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="assay-model-") as scratch:
        return mlflow.pyfunc.load_model(str(download_verified(uri, expected, Path(scratch))))
