"""`assay audit`: a model version's lineage back to the landing files, every reachable hash
recomputed; one tamper per link kind flips exactly that link to changed and fails the audit."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import jsonschema
import pytest

from cli import audit
from assay.approvals import approve, record_approval
from assay.releases import ReleaseEvent, head_path, log_path, record, record_override, verify_chain
from harness.replay import replay
from harness.runs import materialize_window
from conftest import weather_platform

DAYS = [(date(2013, 1, 1) + timedelta(days=i)).isoformat() for i in range(10)]
TAMPERED_DAY = DAYS[4]


@pytest.fixture(scope="module")
def built(assay_home, instance, landing, weather_spec, tmp_path_factory):
    """The weather use case replayed for ten days and built through its staging deployment."""
    def edit(spec):
        spec["release"]["latency_p99_ms"] = 2000  # this module audits what ran, not how fast on a busy CI box

    with weather_platform(tmp_path_factory.mktemp("audit"), edit) as (defs, _):
        replay(weather_spec, landing, date(2013, 1, 1), len(DAYS))
        runs = materialize_window(defs, instance, weather_spec, DAYS, through="deployment")
        assert all(r.success for r in runs), [(r.what, r.partition) for r in runs if not r.success]
        yield defs


def _report(instance, version=None) -> dict:
    return audit.build_report("weather", version, instance=instance)


def _changed(report) -> list[tuple[str, str]]:
    return [(link["kind"], link["subject"]) for link in report["verification"]["links"] if link["status"] == "changed"]


def _stored_champion(registry) -> tuple[str, Path]:
    """The champion's version and the folder the registry stores its logged model in."""
    version = registry.alias("weather").version
    client = registry.client()
    model_id = client.get_model_version("weather", version).source.split("/")[-1]
    return version, Path(client.get_logged_model(model_id).artifact_location.removeprefix("file://"))


@contextmanager
def _restoring(path: Path):
    original = path.read_bytes()
    try:
        yield path
    finally:
        path.write_bytes(original)


def test_a_report_for_the_champion_verifies_every_link_validates_and_draws_its_lineage(built, instance, tmp_path):
    began = time.perf_counter()
    code = audit.audit_main("weather", fmt="html", output=str(tmp_path / "audit.html"))
    seconds = time.perf_counter() - began
    assert code == 0
    report = _report(instance)
    champion = built.resources["registry"].alias("weather")
    assert report["version"] == champion.version and report["version_chosen_by"] == "served in staging"

    links = report["verification"]["links"]
    assert {link["status"] for link in links} == {"verified"}, [link for link in links if link["status"] != "verified"]
    kinds = [link["kind"] for link in links]
    assert {"release_log", "training_snapshot", "model_artifact", "raw_partition", "landing_file"} <= set(kinds)
    assert kinds.count("raw_partition") == kinds.count("landing_file") == len(DAYS)

    jsonschema.validate(report, json.loads(audit.SCHEMA_PATH.read_text()))
    assert report["training_set"]["sha256"] == champion.tags["assay.training_set_sha256"]
    assert report["training_set"]["rows"] > 0
    assert report["model"]["artifact_sha256"] == champion.tags["assay.artifact_sha256"]
    assert report["model"]["metrics"]["rmse"] > 0 and report["model"]["params"]["family"] == "lightgbm"
    assert "plots/residuals.png" in report["model"]["plots"]
    gates = {g["check"]: g for g in report["gates"]}
    assert {"performance_floor", "no_regression", "slice_parity", "leakage", "integrity", "passed_every_gate"} <= set(gates)
    assert gates["performance_floor"]["threshold"] == {"limit_rmse": 4.0, "limit_mae": 3.0}
    assert gates["performance_floor"]["measured"]["rmse"] > 0 and gates["performance_floor"]["registry_tag"] == "passed"
    assert all(g["evaluated"] for g in gates.values())
    features = report["feature_models"][0]
    assert features["code_version"] in features["code_versions_materialized"]
    assert features["tests_passed"] > 0 and features["tests_failed"] == 0
    assert [r["partition"] for r in report["raw_partitions"]] == DAYS
    assert all(r["rows"] and r["data_version"] for r in report["raw_partitions"])
    assert report["deployment"]["release_events"][0]["event"] == "promoted"
    staging = next(e for e in report["deployment"]["environments"] if e["environment"] == "staging")
    deployed = staging["deployments"][-1]
    assert staging["serves_this_version"] and deployed["deployed_version"] == report["version"]
    assert deployed["run_id"] and deployed["at"]
    assert {c["check"]: c["result"] for c in deployed["checks"]}["smoke_equals_offline"] == "passed"

    page = (tmp_path / "audit.html").read_text()
    assert "<svg" in page and "<script" not in page and "<link" not in page and 'src="http' not in page
    assert report["training_set"]["sha256"][:10] in page
    markdown = audit.render(report, "md")
    assert "## Landing files" in markdown and "VERIFIED" in markdown
    sizes = {fmt: len(audit.render(report, fmt).encode()) for fmt in ("html", "json")}
    print(f"\naudit of the champion: {seconds:.1f} s (build + verify + render); sizes {sizes}")


def test_an_override_shows_in_the_report_with_its_person_and_reason(built, instance, assay_home, tmp_path):
    version = built.resources["registry"].alias("weather").version
    record_override(assay_home.root, "weather", version, by="ana@example.com", reason="latency gate waived for a day",
                    environment="staging")
    approve(assay_home.root / "approvals.jsonl", built.resources["registry"], "weather", "production", version,
            "bo@example.com", "green in staging")
    report = _report(instance)
    overrides = report["deployment"]["overrides"]
    assert [(o["by"], o["reason"]) for o in overrides] == [("ana@example.com", "latency gate waived for a day")]
    assert [(a["by"], a["reason"]) for a in report["deployment"]["approvals"]] == [("bo@example.com", "green in staging")]
    assert report["verification"]["ok"]
    assert audit.audit_main("weather", fmt="md", output=str(tmp_path / "audit.md")) == 0
    text = (tmp_path / "audit.md").read_text()
    assert "ana@example.com" in text and "latency gate waived for a day" in text
    assert audit.verify_log_main() == 0


def test_a_changed_raw_row_in_the_warehouse_flips_only_that_partition(built, instance, warehouse, tmp_path):
    where = "_partition = ? AND hour = 12 AND origin = 'JFK'"
    day = date.fromisoformat(TAMPERED_DAY)
    with warehouse.writer() as connection:
        (original,) = connection.execute(f"SELECT temp FROM weather.raw_weather WHERE {where}", [day]).fetchone()
        connection.execute(f"UPDATE weather.raw_weather SET temp = -29.5 WHERE {where}", [day])
    try:
        report = _report(instance)
        assert _changed(report) == [("raw_partition", f"weather/raw_weather[{TAMPERED_DAY}]")]
        assert audit.audit_main("weather", fmt="json", output=str(tmp_path / "audit.json")) == 1
        assert json.loads((tmp_path / "audit.json").read_text())["verification"]["changed"] == [
            f"raw_partition: weather/raw_weather[{TAMPERED_DAY}]"]
    finally:
        with warehouse.writer() as connection:
            connection.execute(f"UPDATE weather.raw_weather SET temp = ? WHERE {where}", [original, day])
    assert _changed(_report(instance)) == []


def test_an_overwritten_training_snapshot_flips_only_the_snapshot_link(built, instance):
    path = Path(_report(instance)["training_set"]["path"])
    with _restoring(path):
        path.write_bytes(path.read_bytes() + b"\0")
        report = _report(instance)
        assert _changed(report) == [("training_snapshot", path.name)]
        assert not report["verification"]["ok"]


def test_a_byte_appended_to_the_model_payload_flips_only_the_model_artifact_link(built, instance):
    version, stored = _stored_champion(built.resources["registry"])
    payload = next(p for p in stored.rglob("payload") if p.is_dir())
    target = sorted(p for p in payload.rglob("*") if p.is_file())[0]
    with _restoring(target):
        with target.open("ab") as handle:
            handle.write(b"x")
        report = _report(instance)
        assert _changed(report) == [("model_artifact", f"models:/weather/{version}")]


def test_a_one_byte_change_to_the_logged_code_flips_only_the_model_artifact_link(built, instance):
    """The payload is untouched: only the whole-model hash (assay.model_sha256) sees an edited code/ file."""
    version, stored = _stored_champion(built.resources["registry"])
    with _restoring(stored / "code" / "training" / "pyfunc.py") as code:
        code.write_bytes(code.read_bytes().replace(b"return", b"return ", 1))
        report = _report(instance)
        assert _changed(report) == [("model_artifact", f"models:/weather/{version}")]
        link = next(link for link in report["verification"]["links"] if link["kind"] == "model_artifact")
        assert "code, python_model.pkl or MLmodel changed" in link["detail"]
    assert _changed(_report(instance)) == []


def test_a_landing_file_moved_away_is_missing_not_changed(built, instance, landing):
    path = landing.path_for("weather", "weather", DAYS[0])
    aside = path.with_name("moved-away.csv.bak")
    path.rename(aside)
    try:
        report = _report(instance)
        link = next(link for link in report["verification"]["links"] if link["subject"] == str(path))
        assert link["status"] == "missing" and report["verification"]["ok"]
    finally:
        aside.rename(path)


def test_an_edited_audit_log_entry_flips_the_release_log_link_and_fails_verify_log(built, instance, assay_home):
    record(assay_home.root, ReleaseEvent("weather", "deployed", "1", "staging", by="run test", reason="first"))
    record(assay_home.root, ReleaseEvent("weather", "deployed", "1", "staging", by="run test", reason="second"))
    path = log_path(assay_home.root)
    assert verify_chain(path).status == "verified" and audit.verify_log_main() == 0
    with _restoring(path):
        lines = path.read_text().splitlines()
        edited = json.loads(lines[1])
        edited["by"] = "someone else"
        lines[1] = json.dumps(edited, sort_keys=True)
        path.write_text("\n".join(lines) + "\n")
        verdict = verify_chain(path)
        assert (verdict.status, verdict.first_break) == ("changed", 2) and "edited" in verdict.detail
        assert audit.verify_log_main() == 1
        assert _changed(_report(instance)) == [("release_log", str(path))]
    assert audit.verify_log_main() == 0


def test_a_removed_audit_log_entry_flips_the_release_log_link_and_fails_verify_log(built, instance, assay_home):
    record(assay_home.root, ReleaseEvent("weather", "deployed", "1", "staging", by="run test", reason="third"))
    path = log_path(assay_home.root)
    with _restoring(path):
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # the second entry removed
        verdict = verify_chain(path)
        assert (verdict.status, verdict.first_break) == ("changed", 2) and "removed" in verdict.detail
        assert audit.verify_log_main() == 1
        assert _changed(_report(instance)) == [("release_log", str(path))]
        path.write_text("\n".join(lines[:-1]) + "\n")  # the last entry removed: the head still counts it
        assert verify_chain(path).status == "changed" and audit.verify_log_main() == 1
    approvals = assay_home.root / "approvals.jsonl"
    for by in ("cy@example.com", "di@example.com"):
        record_approval(approvals, "weather", "production", "1", by, "approved for the test", sha256="1" * 64)
    with _restoring(approvals):
        approvals.write_text(approvals.read_text().splitlines()[1] + "\n")  # the first approval removed
        assert _changed(_report(instance)) == [("approval_log", str(approvals))]
        assert audit.verify_log_main() == 1
    assert audit.verify_log_main() == 0


@contextmanager
def _restoring_log(path: Path):
    """Put a log and its head file back as they were, whatever the test did to them."""
    saved = {p: p.read_bytes() for p in (path, head_path(path)) if p.exists()}
    try:
        yield path
    finally:
        for p in (path, head_path(path)):
            p.unlink(missing_ok=True)
        for p, data in saved.items():
            p.write_bytes(data)


def _rewrite(path: Path, entries: list[dict], head: bool = True) -> None:
    """Write `entries` as the whole log, and (a careful forger) a head file that agrees with them."""
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
    head_path(path).unlink(missing_ok=True)
    if head:
        head_path(path).write_text(json.dumps({"hash": entries[-1]["hash"], "entries": len(entries)}) + "\n")


def _entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_release_log_cut_short_with_its_head_rewritten_is_caught_by_the_registry_witness(built, instance,
                                                                                          assay_home):
    registry = built.resources["registry"]
    record(assay_home.root, ReleaseEvent("weather", "deployed", "1", "staging", by="run test", reason="witnessed"),
           witness=registry)
    path = log_path(assay_home.root)
    assert audit.verify_log_main() == 0
    with _restoring_log(path):
        _rewrite(path, _entries(path)[:-1])  # the last entry removed, the head made to agree
        assert verify_chain(path).status == "verified"  # the chain alone cannot tell
        assert audit.verify_log_main() == 1
        assert _changed(_report(instance)) == [("release_log", str(path))]
    assert audit.verify_log_main() == 0


def test_a_deleted_release_log_of_a_use_case_with_releases_is_reported(built, instance, assay_home, capsys):
    path = log_path(assay_home.root)
    with _restoring_log(path):
        path.unlink()
        head_path(path).unlink()
        assert verify_chain(path).status == "missing"
        assert audit.verify_log_main() == 1
        assert "releases.jsonl: changed: the log is missing but the registry witnesses" in capsys.readouterr().out
        assert _changed(_report(instance)) == [("release_log", str(path))]
    assert audit.verify_log_main() == 0


def test_release_log_entries_stripped_of_their_chain_fields_are_reported_not_legacy(built, instance, assay_home):
    path = log_path(assay_home.root)
    with _restoring_log(path):
        stripped = [{k: v for k, v in e.items() if k not in ("prev", "hash")} for e in _entries(path)]
        path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in stripped))
        head_path(path).unlink()
        assert verify_chain(path).legacy == len(stripped)  # alone, they read as entries from before the chain
        assert audit.verify_log_main() == 1
        assert _changed(_report(instance)) == [("release_log", str(path))]


def test_legacy_entries_are_accepted_only_before_the_first_chained_entry(tmp_path):
    path = tmp_path / "releases.jsonl"
    legacy = {"use_case": "weather", "event": "promoted", "version": "1", "by": "old", "reason": "before the chain"}
    path.write_text(json.dumps(legacy) + "\n")
    record(tmp_path, ReleaseEvent("weather", "deployed", "1", "staging", by="run test", reason="chained"))
    verdict = verify_chain(path)
    assert (verdict.status, verdict.legacy) == ("verified", 1)
    with path.open("a") as log:
        log.write(json.dumps({**legacy, "reason": "after the chain began"}) + "\n")
    verdict = verify_chain(path)
    assert (verdict.status, verdict.first_break) == ("changed", 3)


def test_an_approval_log_cut_short_with_its_head_rewritten_is_caught_by_the_registry_witness(built, instance,
                                                                                            assay_home):
    registry = built.resources["registry"]
    version = registry.alias("weather").version
    approvals = assay_home.root / "approvals.jsonl"
    approve(approvals, registry, "weather", "staging", version, "fa@example.com", "witnessed approval")
    assert audit.verify_log_main() == 0
    with _restoring_log(approvals):
        _rewrite(approvals, _entries(approvals)[:-1])
        assert verify_chain(approvals).status == "verified"
        assert audit.verify_log_main() == 1
        assert _changed(_report(instance)) == [("approval_log", str(approvals))]
    assert audit.verify_log_main() == 0
