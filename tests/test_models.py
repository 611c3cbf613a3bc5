"""Candidates trained through Pipes, gated, registered in MLflow, and promoted (or not) to champion."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from harness.replay import replay
from assay.settings import state
from resources.snapshots import write_snapshot
from assets.monitoring import reference_frame
from definitions import current_definitions
from harness.runs import materialize_window
from resources.registry import PromotionRefused
from training.artifacts import ArtifactMismatch

DAYS = [(date(2013, 1, 1) + timedelta(days=i)).isoformat() for i in range(21)]
TRAINING_SET = dg.AssetKey(["flights", "training_set"])
LIGHTGBM = dg.AssetKey(["flights", "model_lightgbm"])
CHAMPION = dg.AssetKey(["flights", "champion"])


@pytest.fixture(scope="module")
def defs(assay_home):
    return current_definitions()


@pytest.fixture(scope="module")
def registry(defs):
    return defs.resources["registry"]


@pytest.fixture(scope="module")
def demo(defs, instance, landing, flights_spec):
    """The demo's window, built through the champion."""
    replay(flights_spec, landing, date(2013, 1, 1), len(DAYS))
    runs = materialize_window(defs, instance, flights_spec, DAYS, through="champion")
    assert all(r.success for r in runs), [(r.what, r.partition) for r in runs if not r.success]
    return instance.get_latest_materialization_event(TRAINING_SET).asset_materialization


def _materialize(defs, instance, selection):
    return dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
                          selection=selection, raise_on_error=False)


def _checks(result, key) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == key}


@pytest.fixture
def training_set_variant(demo, instance):
    """Point flights/training_set at an altered snapshot for one test, then restore the real one. The
    variant is written where the state keeps snapshots, since every stage finds one by its hash there."""

    def use(alter) -> None:
        frame = alter(pl.read_parquet(demo.metadata["snapshot"].value))
        path, digest = write_snapshot(frame, state().snapshots / "flights" / "training_set")
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=TRAINING_SET,
            metadata={"snapshot": dg.MetadataValue.path(str(path)),
                      "sha256": digest,
                      "window_start": demo.metadata["window_start"].value,
                      "window_end": demo.metadata["window_end"].value},
        ))

    yield use
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=TRAINING_SET, metadata=demo.metadata))


def test_the_demo_reaches_a_champion_with_its_provenance(demo, registry, instance):
    champion = registry.alias("flights")
    assert champion is not None
    tags = champion.tags
    assert tags["assay.training_set_sha256"] == demo.metadata["sha256"].value
    assert tags["assay.integrity"] == "verified"
    assert tags["assay.artifact_sha256"] == tags["assay.registered_sha256"]
    assert tags["assay.model_sha256"] == tags["assay.registered_model_sha256"]  # the whole logged model
    assert len(tags["assay.git_sha"]) in (40, 7) or tags["assay.git_sha"] == "unknown"
    for key in ("assay.dagster_run_id", "assay.started_by", "assay.training_window", "assay.feature_model_versions"):
        assert tags[key], key
    assert champion.failed_gates() == []
    record = instance.get_latest_materialization_event(CHAMPION).asset_materialization
    assert record.metadata["champion_version"].value == champion.version


def test_both_families_report_their_gates_and_plots(demo, instance, defs):
    for family in ("lightgbm", "torch"):
        key = dg.AssetKey(["flights", f"model_{family}"])
        metadata = instance.get_latest_materialization_event(key).asset_materialization.metadata
        assert metadata["roc_auc"].value > 0.6, family
        assert "data:image/png;base64" in metadata["plots"].value
        assert "| slice |" in metadata["slices"].value
        checks = {k.name for k in defs.resolve_assets_def(key).check_keys}
        assert checks == {"performance_floor", "no_regression", "slice_parity", "calibration", "leakage", "integrity"}


def test_a_model_trained_on_shuffled_labels_fails_the_floor_and_is_not_promoted(
    demo, defs, instance, registry, training_set_variant
):
    before = registry.alias("flights").version
    rng = np.random.default_rng(3)
    training_set_variant(lambda f: f.with_columns(pl.Series("is_late", rng.permutation(f["is_late"].to_numpy()))))

    result = _materialize(defs, instance, [LIGHTGBM, CHAMPION])

    assert not result.success
    floor = _checks(result, LIGHTGBM)["performance_floor"]
    assert not floor.passed and "below the floor" in floor.description
    assert CHAMPION not in {e.asset_key for e in result.get_asset_materialization_events() if e.asset_key}
    assert registry.alias("flights").version == before
    version = instance.get_latest_materialization_event(LIGHTGBM).asset_materialization.metadata["model_version"].value
    with pytest.raises(PromotionRefused, match="performance_floor"):
        registry.promote("flights", version, reason="trying anyway")
    assert registry.alias("flights").version == before


def _with_signal(frame: pl.DataFrame, noise: float, *, only=None, seed=11) -> pl.DataFrame:
    """Overwrite one feature with `label + noise`: a strong, known signal the model will use.

    `only` limits the signal to matching rows (elsewhere the column becomes pure noise)."""
    rng = np.random.default_rng(seed)
    labels = frame["is_late"].to_numpy().astype(float)
    signal = labels + rng.normal(0, noise, size=len(labels))
    if only is not None:
        mask = only(frame).to_numpy()
        signal = np.where(mask, signal, rng.normal(0.5, noise, size=len(labels)))
    return frame.with_columns(pl.Series("route_flights_28d", signal))


def test_a_weaker_challenger_fails_no_regression_against_the_champion(
    demo, defs, instance, registry, training_set_variant
):
    # A champion that learned a strong signal, then a challenger whose training rows lack it; both
    # are scored on the same holdout, where the signal is present.
    training_set_variant(lambda f: _with_signal(f, noise=0.6))
    promoted = _materialize(defs, instance, [LIGHTGBM, CHAMPION])
    assert promoted.success
    strong = registry.alias("flights")

    def weaker(frame: pl.DataFrame) -> pl.DataFrame:
        cutoff = frame["scheduled_departure"].max() - timedelta(days=7)
        strong_rows = _with_signal(frame, noise=0.6)
        return strong_rows.with_columns(
            pl.when(pl.col("scheduled_departure") > cutoff).then(pl.col("route_flights_28d"))
            .otherwise(pl.lit(0.5)).alias("route_flights_28d")
        )

    training_set_variant(weaker)
    result = _materialize(defs, instance, [LIGHTGBM, CHAMPION])

    gate = _checks(result, LIGHTGBM)["no_regression"]
    assert not gate.passed
    assert f"vs champion v{strong.version}" in gate.description
    assert gate.metadata["delta"].value < -0.01
    assert registry.alias("flights").version == strong.version


def test_a_model_good_overall_but_bad_at_one_origin_fails_slice_parity(demo, defs, instance, training_set_variant):
    training_set_variant(lambda f: _with_signal(f, noise=0.6, only=lambda x: x["origin"] != "EWR"))

    result = _materialize(defs, instance, [LIGHTGBM])

    gates = _checks(result, LIGHTGBM)
    assert gates["performance_floor"].passed
    parity = gates["slice_parity"]
    assert not parity.passed
    assert "origin" in parity.description and "EWR" in parity.description


def test_a_swapped_artifact_fails_integrity_and_cannot_be_promoted(demo, defs, instance, registry):
    """Tamper with a registered payload on the artifact store: the hash no longer matches what was
    trained, the version is marked, and the registry refuses to promote it."""
    result = _materialize(defs, instance, [LIGHTGBM])
    metadata = instance.get_latest_materialization_event(LIGHTGBM).asset_materialization.metadata
    version, trained = metadata["model_version"].value, metadata["artifact_sha256"].value
    assert _checks(result, LIGHTGBM)["integrity"].passed

    source = registry.client().get_model_version("flights", version).source  # models:/m-<id>
    model_id = source.rsplit("/", 1)[-1]
    payloads = [p for p in Path(registry.artifact_root).rglob("payload") if model_id in str(p) and p.is_dir()]
    assert len(payloads) == 1, payloads
    weights = next(p for p in payloads[0].iterdir() if p.name != "family.json")
    weights.write_bytes(weights.read_bytes() + b"\n")

    verified, registered, _ = registry.verify_artifact("flights", version, trained)

    assert not verified and registered != trained
    assert registry.version("flights", version).tags["assay.integrity"] == "mismatch"
    with pytest.raises(PromotionRefused, match="integrity"):
        registry.promote("flights", version, reason="swapped artifact")


def _stored_model(registry, name: str, version: str) -> Path:
    """The registered version's folder in the local artifact store (what every download copies)."""
    client = registry.client()
    model_id = client.get_model_version(name, version).source.rsplit("/", 1)[-1]
    return Path(client.get_logged_model(model_id).artifact_location.removeprefix("file://"))


def test_a_one_byte_change_to_the_logged_code_fails_integrity_and_the_champion_comparison_refuses_it(
    demo, defs, instance, registry, flights_spec
):
    """The payload is untouched, so only the whole-model hash can see this: the registry's integrity
    check fails the version, and training refuses to load the changed champion to compare with it,
    says so in the no-regression gate, and still trains the candidate that can replace it."""
    champion = registry.alias("flights")
    code = _stored_model(registry, "flights", champion.version) / "code" / "training" / "pyfunc.py"
    original = code.read_bytes()
    code.write_bytes(original + b"#")
    try:
        verified, registered, whole = registry.verify_artifact("flights", champion.version,
                                                               champion.tags["assay.artifact_sha256"])
        assert not verified and registered == champion.tags["assay.artifact_sha256"]
        assert whole != champion.tags["assay.model_sha256"]
        with pytest.raises(ArtifactMismatch, match="refusing to load"):
            registry.load_model("flights", champion.version)
        with pytest.raises(ArtifactMismatch, match="refusing to load"):  # monitoring scores it the same way
            reference_frame(flights_spec, registry, champion.version)
        result = _materialize(defs, instance, [LIGHTGBM])
        gate = _checks(result, LIGHTGBM)["no_regression"]
        refused = gate.metadata["champion_refused"].value
        assert f"models:/flights/{champion.version}: the model's files hash to" in refused
        assert "refusing to load" in refused and f"champion v{champion.version} not compared" in gate.description
    finally:
        code.write_bytes(original)
        registry.verify_artifact("flights", champion.version, champion.tags["assay.artifact_sha256"])
    assert registry.version("flights", champion.version).tags["assay.integrity"] == "verified"
