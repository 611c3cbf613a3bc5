"""What the orchestrator asks the training entrypoint to do: built from the spec for the model asset
(`training_job` in resources/training/trainer.py), carried as Pipes extras, read by training/train.py.

One dataclass for both ends, so a field cannot be written under one name and read under another.
Over Pipes it is plain JSON (`to_extras`, `from_extras`); `use_case` and `family` also label the
Kubernetes training pod (resources/training/pod.py reads them from the extras).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from training.tabular import FeatureSet


@dataclass(frozen=True)
class Champion:
    """The version serving now: a candidate is scored against it on the same holdout."""

    version: str
    uri: str
    model_sha256: str | None  # its recorded whole-model hash: it is loaded only if its files still match


@dataclass(frozen=True)
class TrainingJob:
    """Everything the training process is told; nothing else is read from Dagster."""

    use_case: str
    family: str
    snapshot: str  # the training-set Parquet file, in this state's snapshots folder
    snapshot_sha256: str
    features: FeatureSet
    timestamp: str
    slices: list[str]
    known_after_prediction: list[str]
    holdout_days: int
    gates: dict
    registered_model: str
    experiment: str
    champion: Champion | None
    provenance: dict[str, str]  # registry tags set on the registered version as they are
    seed: int = 13

    def to_extras(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> TrainingJob:
        fields = dict(extras)
        champion = fields.pop("champion", None)
        return cls(**{**fields, "features": FeatureSet.from_dict(fields["features"]),
                      "champion": Champion(**champion) if champion else None})
