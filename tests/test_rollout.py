"""Progressive rollout: a new champion goes shadow, canary, full against the version serving, each
step gated on live figures; a failed step restores the incumbent; `assay rollback` by hand."""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta

import dagster as dg
import numpy as np
import pytest
import yaml

from assay.releases import history
from harness.replay import replay
from definitions import current_definitions
from harness.runs import materialize_window
from assay.settings import REPO_ROOT
from assay.spec import load_spec
from resources.deployment.rollout import LiveFigures, judge, takes_canary
from conftest import venv_bin
from resources.registry import PromotionRefused
from conftest import free_ports

STAGING = dg.AssetKey(["weather", "deployment_staging"])
MODEL = dg.AssetKey(["weather", "model_lightgbm"])
CHAMPION = dg.AssetKey(["weather", "champion"])
START = date(2013, 1, 1)


def _days(first: int, count: int) -> list[str]:
    return [(START + timedelta(days=first + i)).isoformat() for i in range(count)]


def _write_spec(folder, **release) -> None:
    spec = yaml.safe_load((REPO_ROOT / "usecases" / "weather.yaml").read_text())
    spec["release"].update({"strategy": ["shadow", "canary", "full"], "canary_weight": 20,
                            "agreement_tolerance": 3.0, "latency_p99_ms": 1000, **release})
    # Retrained on more days the model changes; this module tests the rollout, not the model gates.
    spec["gates"]["max_regression"] = 0.5
    (folder / "weather.yaml").write_text(yaml.safe_dump(spec))


def _definitions(specs, **release):
    _write_spec(specs, **release)
    return current_definitions()


def _checks(result, key):
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == key}


def _deploy(defs, instance):
    result = dg.materialize(list(defs.assets), resources=defs.resources, instance=instance, selection=[STAGING],
                            raise_on_error=False)
    return result, _checks(result, STAGING)


def _serving(defs) -> list[tuple[str, str]]:
    return [(s.name, s.version) for s in defs.resources["deployer"].server("staging").served()]


@pytest.fixture(scope="module")
def release(assay_home, instance, landing, weather_spec, tmp_path_factory):
    specs = tmp_path_factory.mktemp("specs")
    base = free_ports(6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(specs))
        patch.setenv("ASSAY_SERVING_PORTS", f"staging={base},production={base + 3}")
        defs = _definitions(specs)
        replay(weather_spec, landing, START, 14)
        assert all(r.success for r in materialize_window(defs, instance, weather_spec, _days(0, 10), through="champion"))
        yield defs, specs, patch
        for server in defs.resources["deployer"].servers().values():
            server.stop()


def _retrain_on_new_days(defs, instance, weather_spec, first: int, count: int) -> None:
    runs = materialize_window(defs, instance, weather_spec, _days(first, count), through="champion")
    assert all(r.success for r in runs), [(r.what, r.partition) for r in runs if not r.success]


def test_a_first_release_has_nothing_to_compare_and_says_so(release, instance):
    defs, _, _ = release
    result, checks = _deploy(defs, instance)
    assert result.success
    assert checks["rollout_shadow"].passed and "nothing served in staging yet" in checks["rollout_shadow"].description
    assert checks["rollout_canary"].passed
    assert _serving(defs) == [("weather", defs.resources["registry"].alias("weather").version)]


def test_a_candidate_that_disagrees_with_the_incumbent_in_shadow_is_rolled_back(release, instance, weather_spec,
                                                                                 assay_home):
    defs, specs, _ = release
    registry = defs.resources["registry"]
    incumbent = registry.alias("weather").version
    _retrain_on_new_days(defs, instance, weather_spec, 10, 2)  # two more real days: a different model
    candidate = registry.alias("weather").version
    assert candidate != incumbent

    # Any difference disagrees, and no outcome may vouch for the candidate instead.
    strict = _definitions(specs, min_agreement=1.0, agreement_tolerance=1e-9, min_labelled_rows=10**6)
    result, checks = _deploy(strict, instance)

    shadow = checks["rollout_shadow"]
    assert not shadow.passed and "agrees with the incumbent on" in shadow.description
    assert shadow.metadata["agreement"].value < 1.0
    assert "rollout_canary" not in checks  # a failed step ends the rollout
    assert _serving(defs) == [("weather", incumbent)]
    assert registry.alias("weather").version == incumbent
    with pytest.raises(PromotionRefused):
        registry.promote("weather", candidate, reason="again")
    events = [(e.event, e.version, e.passed) for e in history(assay_home.root, "weather")]
    assert ("shadow", candidate, False) in events and ("rolled_back", incumbent, None) in events
    assert checks["ready"].passed  # the restored incumbent serves


def test_a_candidate_that_passes_shadow_and_canary_takes_all_traffic(release, instance, weather_spec, assay_home):
    defs, specs, _ = release
    registry = defs.resources["registry"]
    incumbent = registry.alias("weather").version
    _retrain_on_new_days(defs, instance, weather_spec, 12, 2)
    candidate = registry.alias("weather").version
    assert candidate != incumbent

    result, checks = _deploy(_definitions(specs), instance)
    assert result.success, {k: c.description for k, c in checks.items() if not c.passed}
    shadow, canary = checks["rollout_shadow"], checks["rollout_canary"]
    assert shadow.metadata["candidate_requests"].value == shadow.metadata["incumbent_requests"].value > 0
    assert 0 < canary.metadata["candidate_requests"].value < canary.metadata["incumbent_requests"].value
    assert shadow.metadata["agreement"].value >= 0.8
    assert _serving(defs) == [("weather", candidate)]
    steps = [(e.event, e.version, e.from_version) for e in history(assay_home.root, "weather")][-3:]
    assert steps == [("shadow", candidate, incumbent), ("canary", candidate, incumbent),
                     ("deployed", candidate, incumbent)]


def test_assay_rollback_restores_and_serves_the_previous_champion(release, assay_home):
    defs, _, _ = release
    registry = defs.resources["registry"]
    current, previous = registry.alias("weather").version, registry.alias("weather", "previous_champion").version
    done = subprocess.run([venv_bin("assay"), "rollback", "weather", "--by", "ana@example.com", "--reason",
                           "complaints from the ops desk"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"staging: serving v{previous} (was v{current})" in done.stdout
    assert registry.alias("weather").version == previous
    assert _serving(defs) == [("weather", previous)]
    log = json.loads(subprocess.run([venv_bin("assay"), "releases", "weather", "--json"], capture_output=True,
                                    text=True, check=True).stdout)
    assert log[-1] | {"at": None, "prev": None, "hash": None} == {"use_case": "weather", "event": "rolled_back", "version": previous,
                                      "environment": "staging", "from_version": current, "by": "ana@example.com",
                                      "reason": "complaints from the ops desk", "at": None, "passed": None,
                                      "prev": None, "hash": None}
    # the registry witnesses the person's rollback too, so removing it from the log is found out
    assert registry.log_witnesses()["weather"]["releases"]["hash"] == log[-1]["hash"]
    again = subprocess.run([venv_bin("assay"), "rollback", "weather", "--by", "ana", "--reason", "twice"],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "no previous champion" in again.stderr


# --- the step gate on its own: each rule has a case that fails it ---------------------------------

SPEC = load_spec(REPO_ROOT / "usecases" / "flights.yaml")
LABELS = np.array([0, 1] * 100, dtype=float)


def _figures(version, rows, scores, errors=0, latency=5.0):
    return LiveFigures(version, len(rows), errors, tuple([latency] * (len(rows) - errors)), tuple(rows),
                       tuple(scores))


def _pair(candidate_scores=None, **candidate):
    rows = list(range(200))
    good = [0.2, 0.8] * 100
    return (_figures("1", rows, good),
            _figures("2", rows, candidate_scores if candidate_scores is not None else good, **candidate))


def test_a_candidate_as_good_as_the_incumbent_passes_the_shadow_step():
    verdict = judge("shadow", SPEC, *_pair(), LABELS)
    assert verdict.passed, verdict.description
    assert verdict.metadata["agreement"] == 1.0 and verdict.metadata["candidate_roc_auc"] == 1.0


def test_a_candidate_with_more_errors_than_the_incumbent_fails():
    verdict = judge("canary", SPEC, *_pair(errors=3), LABELS)
    assert not verdict.passed and "error rate 1.5% above" in verdict.description


def test_a_candidate_much_slower_than_the_incumbent_fails():
    verdict = judge("canary", SPEC, *_pair(latency=5.0 * SPEC.release.max_latency_ratio + 1), LABELS)
    assert not verdict.passed and "over 2.0x the incumbent's" in verdict.description


def test_a_candidate_whose_decisions_flip_fails_the_shadow_agreement_gate():
    verdict = judge("shadow", SPEC, *_pair(candidate_scores=[0.8, 0.2] * 100), LABELS)
    assert not verdict.passed and "agrees with the incumbent on 0.0% of rows" in verdict.description
    assert "live roc_auc 0.0000 worse" in verdict.description


def test_a_candidate_that_disagrees_but_is_more_accurate_on_labelled_rows_passes_the_shadow_step():
    incumbent = _figures("1", list(range(200)), [0.8, 0.2] * 100)  # decayed: every decision wrong
    candidate = _figures("2", list(range(200)), [0.2, 0.8] * 100)
    verdict = judge("shadow", SPEC, incumbent, candidate, LABELS)
    assert verdict.passed, verdict.description
    assert "agrees with the incumbent on 0.0% of rows (at least 80% required), not gated" in verdict.description


def test_too_few_labelled_rows_are_reported_not_gated():
    rows = list(range(20))
    verdict = judge("canary", SPEC, _figures("1", rows, [0.2, 0.8] * 10), _figures("2", rows, [0.8, 0.2] * 10),
                    LABELS)
    assert verdict.passed and "accuracy not gated: 20 labelled rows" in verdict.description


def test_the_canary_share_follows_the_weight_and_is_stable():
    picks = [takes_canary(row, 10, "flights:7") for row in range(5000)]
    assert 0.08 < np.mean(picks) < 0.12
    assert picks == [takes_canary(row, 10, "flights:7") for row in range(5000)]
