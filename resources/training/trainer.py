"""Where training runs: one interface, one implementation per environment, and the job they are given.

Both run the same entrypoint (`python -m training.train`) through Dagster Pipes and hand back the
same results; only the place differs (a local subprocess, or a GPU pod on Kubernetes). What it
trains is a `training.job.TrainingJob`, built here from the spec (`training_job`) and sent as the
Pipes extras.
"""

from __future__ import annotations

import dagster as dg

from assay.settings import state
from assay.spec import UseCase
from resources.registry import Version
from training.job import Champion, TrainingJob
from training.tags import MODEL_SHA256_TAG, TRAINING_SET_SHA256_TAG, TRAINING_WINDOW_TAG, USE_CASE_TAG

# The entrypoint every trainer runs, a dagster-pipes program (training/train.py).
ENTRYPOINT = ["-m", "training.train"]


class Trainer(dg.ConfigurableResource):
    """Runs the training entrypoint for an asset and returns the Pipes invocation."""

    def train(self, context: dg.AssetExecutionContext, extras: dict, tracking_uri: str):
        raise NotImplementedError


def training_job(spec: UseCase, family: str, snapshot: dict, champion: Version | None,
                 provenance: dict[str, str]) -> TrainingJob:
    """What the training entrypoint is asked to do, from the spec, the training set's metadata and the
    current champion; no Dagster context, so a benchmark can build one too."""
    f = spec.features
    return TrainingJob(
        use_case=spec.name,
        family=family,
        snapshot=str(state().training_snapshot(spec.name, snapshot["sha256"])),
        snapshot_sha256=snapshot["sha256"],
        features=f.feature_set(),
        timestamp=f.timestamp,
        slices=f.slices,
        known_after_prediction=f.known_after_prediction,
        holdout_days=spec.training.holdout_days,
        gates=spec.gates.model_dump(),
        registered_model=spec.name,
        experiment=f"assay/{spec.name}",
        champion=Champion(champion.version, champion.uri, champion.tags.get(MODEL_SHA256_TAG)) if champion else None,
        provenance={
            USE_CASE_TAG: spec.name,
            TRAINING_SET_SHA256_TAG: snapshot["sha256"],
            TRAINING_WINDOW_TAG: f"{snapshot['window_start']}..{snapshot['window_end']}",
            **provenance,
        },
    )
