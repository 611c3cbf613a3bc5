"""Deployment assets: staging follows the champion, production needs an approval, a failed
post-deploy gate rolls back to the previous champion."""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta

import dagster as dg
import pytest
import yaml

from assay.approvals import record_approval
from assay.releases import history
from harness.replay import replay
from definitions import current_definitions
from harness.runs import materialize_window
from assay.settings import REPO_ROOT
from conftest import venv_bin
from resources.registry import PromotionRefused
from conftest import free_ports

STAGING = dg.AssetKey(["weather", "deployment_staging"])
PRODUCTION = dg.AssetKey(["weather", "deployment_production"])
MODEL = dg.AssetKey(["weather", "model_lightgbm"])
CHAMPION = dg.AssetKey(["weather", "champion"])


def _write_spec(folder, **release) -> None:
    spec = yaml.safe_load((REPO_ROOT / "usecases" / "weather.yaml").read_text())
    spec["release"].update({"environments": ["staging", "production"], **release})
    (folder / "weather.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture(scope="module")
def setup(assay_home, instance, landing, weather_spec, tmp_path_factory):
    specs = tmp_path_factory.mktemp("specs")
    _write_spec(specs, latency_p99_ms=1000)
    base = free_ports(6)  # three ports per environment's server
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(specs))
        patch.setenv("ASSAY_SERVING_PORTS", f"staging={base},production={base + 3}")
        defs = current_definitions()
        days = [(date(2013, 1, 1) + timedelta(days=i)).isoformat() for i in range(10)]
        replay(weather_spec, landing, date(2013, 1, 1), len(days))
        runs = materialize_window(defs, instance, weather_spec, days, through="champion")
        assert all(r.success for r in runs)
        yield defs, specs
        for server in defs.resources["deployer"].servers().values():
            server.stop()


def _materialize(defs, instance, selection):
    return dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
                          selection=selection, raise_on_error=False)


def _checks(result, key):
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == key}


def test_staging_serves_the_champion_and_passes_every_post_deploy_gate(setup, instance):
    defs, _ = setup
    result = _materialize(defs, instance, [STAGING])
    assert result.success
    checks = _checks(result, STAGING)
    assert set(checks) == {"ready", "smoke_equals_offline", "latency_p99", "rejects_malformed"}
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}
    champion = defs.resources["registry"].alias("weather")
    served = defs.resources["deployer"].server("staging").served()
    assert [(s.name, s.version) for s in served] == [("weather", champion.version)]

    report = json.loads(subprocess.run([venv_bin("assay"), "status", "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    assert report["serving"]["staging"]["served"] == [{"name": "weather", "version": champion.version}]
    assert report["serving"]["staging"]["url"].startswith("http://127.0.0.1:")


def test_production_without_an_approval_fails_its_gate_and_deploys_nothing(setup, instance):
    defs, _ = setup
    result = _materialize(defs, instance, [PRODUCTION])
    approval = _checks(result, PRODUCTION)["approval"]
    assert not approval.passed and "no recorded approval" in approval.description
    assert PRODUCTION not in {e.asset_key for e in result.get_asset_materialization_events()}
    assert defs.resources["deployer"].server("production").pid() is None


def test_an_approval_of_the_same_version_number_but_another_artifact_does_not_open_production(setup, instance,
                                                                                            assay_home):
    """An approval names the artifact's sha256: one recorded for another artifact under this number
    (a rebuilt registry, a replaced model) is no approval of what the registry holds now."""
    defs, _ = setup
    version = defs.resources["registry"].alias("weather").version
    record_approval(assay_home.root / "approvals.jsonl", "weather", "production", version, "eve@example.com",
                    "approved another artifact", sha256="0" * 64)
    result = _materialize(defs, instance, [PRODUCTION])
    approval = _checks(result, PRODUCTION)["approval"]
    assert not approval.passed and "no recorded approval" in approval.description
    assert defs.resources["deployer"].server("production").pid() is None


def test_production_deploys_once_a_person_approves_with_a_reason(setup, instance, assay_home):
    defs, _ = setup
    version = defs.resources["registry"].alias("weather").version
    subprocess.run([venv_bin("assay"), "approve", "weather", "--environment", "production", "--version", version,
                    "--by", "ana@example.com", "--reason", "staging gates green for a week"], check=True)
    result = _materialize(defs, instance, [PRODUCTION])
    approval = _checks(result, PRODUCTION)["approval"]
    assert approval.passed and "ana@example.com" in approval.description
    assert result.success
    assert defs.resources["deployer"].server("production").pid() is not None


def test_a_version_failing_a_post_deploy_gate_is_rolled_back_and_never_promoted_again(setup, instance):
    defs, specs = setup
    registry = defs.resources["registry"]
    first = registry.alias("weather").version
    assert _materialize(defs, instance, [MODEL, CHAMPION]).success  # retrain: a new, equally good version
    second = registry.alias("weather").version
    assert second != first

    _write_spec(specs, latency_p99_ms=0.001)  # a budget no server meets
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(specs))
        strict = current_definitions()
    result = _materialize(strict, instance, [STAGING])

    assert not _checks(result, STAGING)["latency_p99"].passed
    record = instance.get_latest_materialization_event(STAGING).asset_materialization
    assert record.metadata["rolled_back_to"].value == first
    assert registry.alias("weather").version == first
    served = defs.resources["deployer"].server("staging").served()
    assert [(s.name, s.version) for s in served] == [("weather", first)]
    with pytest.raises(PromotionRefused, match="post_deploy"):
        registry.promote("weather", second, reason="try again")


def test_approving_a_version_the_registry_does_not_hold_is_refused_and_records_nothing(setup, assay_home):
    approvals = assay_home.root / "approvals.jsonl"
    before = approvals.read_bytes() if approvals.exists() else b""
    refused = subprocess.run([venv_bin("assay"), "approve", "weather", "--environment", "production", "--version",
                              "999", "--by", "ana@example.com", "--reason", "looks fine"], capture_output=True, text=True)
    assert refused.returncode == 2 and "weather has no registered version '999'" in refused.stderr
    assert (approvals.read_bytes() if approvals.exists() else b"") == before


def test_a_failed_post_deploy_gate_with_no_previous_champion_bars_the_version_and_serves_nothing(setup, instance,
                                                                                                assay_home):
    """The champion serving staging has no former champion to return to (the rollback above used it):
    a failed gate must not leave it serving."""
    defs, specs = setup
    registry = defs.resources["registry"]
    champion = registry.alias("weather")
    assert registry.alias("weather", "previous_champion") is None
    _write_spec(specs, latency_p99_ms=0.001)  # a budget no server meets
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(specs))
        strict = current_definitions()
    before = instance.get_latest_materialization_event(STAGING)
    result = _materialize(strict, instance, [STAGING])

    assert not _checks(result, STAGING)["latency_p99"].passed
    assert defs.resources["deployer"].server("staging").pid() is None
    assert defs.resources["deployer"].incumbent("weather", "staging") is None
    assert registry.alias("weather") is None
    with pytest.raises(PromotionRefused, match="post_deploy"):
        registry.promote("weather", champion.version, reason="try again")
    assert instance.get_latest_materialization_event(STAGING).run_id == before.run_id  # nothing deployed
    withdrawn = [e for e in history(assay_home.root, "weather") if e.event == "withdrawn"]
    assert [(e.version, e.environment) for e in withdrawn] == [(champion.version, "staging")]
