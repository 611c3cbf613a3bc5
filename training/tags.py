"""The tags Assay writes in the model registry, named once.

Every registry Assay has written holds its versions' provenance, gates and release decisions under
these names: a value changed here orphans what was recorded under the old one. The two hash tags are
defined in training/artifacts.py, beside the hashing, because the serving runtime loads that file on
its own (serving/runtime.py says why); they are imported here, so that every reader imports one module.
"""

from training.artifacts import MODEL_SHA256_TAG, PAYLOAD_SHA256_TAG  # noqa: F401  (named here for the readers)

PREFIX = "assay."  # every tag below starts with it: a version's provenance is its tags under this prefix

# Provenance, set when a version is registered (training/train.py, from what assets/models.py sends).
USE_CASE_TAG = "assay.use_case"
FAMILY_TAG = "assay.family"
TRAINING_SET_SHA256_TAG = "assay.training_set_sha256"
TRAINING_WINDOW_TAG = "assay.training_window"  # "<first timestamp>..<last timestamp>"
FEATURE_MODEL_VERSIONS_TAG = "assay.feature_model_versions"  # JSON: dbt model -> its code version
GIT_SHA_TAG = "assay.git_sha"
DAGSTER_RUN_ID_TAG = "assay.dagster_run_id"
STARTED_BY_TAG = "assay.started_by"
PRIMARY_METRIC_TAG = "assay.primary_metric"
PRIMARY_VALUE_TAG = "assay.primary_value"

# Gates: the list a version must pass, each one's outcome, and the integrity check's findings.
GATES_TAG = "assay.gates"  # JSON list of gate names
GATE_TAG_PREFIX = "assay.gate."  # `assay.gate.<name>` = passed | failed
INTEGRITY_TAG = "assay.integrity"  # verified | mismatch
REGISTERED_SHA256_TAG = "assay.registered_sha256"
REGISTERED_MODEL_SHA256_TAG = "assay.registered_model_sha256"

# Release decisions.
PROMOTED_BECAUSE_TAG = "assay.promoted_because"
ROLLED_BACK_BECAUSE_TAG = "assay.rolled_back_because"
# On the registered model, not a version: `assay.witness.<log>` = {"entries": n, "hash": last}.
WITNESS_TAG_PREFIX = "assay.witness."


def gate_tag(gate: str) -> str:
    """The tag holding one gate's outcome on a model version."""
    return f"{GATE_TAG_PREFIX}{gate}"
