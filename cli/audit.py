"""`assay audit`: one model version's full lineage, from the deployment back to the landing files,
with every hash reachable recomputed and compared with what was recorded.

The report walks: deployment (environment, when, by which run, approvals, release-log events and
overrides of the version) -> model version (MLflow run, params, metrics, artifact sha256, plots) ->
every gate (Dagster asset check evaluations of the run that registered the version, and the
registry's tags) -> training-set snapshot -> feature models (dbt code versions, dbt tests) -> raw
partitions of the training window (data versions, row counts) -> landing files (sha256 now vs
recorded, quarantine history).

Each verified link says `verified`, `changed` or `missing`. A `changed` link fails the audit (exit
code 1); a landing file legitimately moved away (quarantined, cleaned up) is `missing`, not changed.
The model artifact link compares both the payload and the whole logged model (code/, python_model.pkl,
MLmodel) with their recorded hashes. The release log and the approvals are hash-chained
(assay/releases.py) and witnessed by the registry; `verify-log` recomputes the chains and compares them
with the witness.

Reads only: the Dagster instance, MLflow, the warehouse (shared lock), the state folder.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg

from assay import asset_keys
from assay.approvals import approvals
from assay.contract import content_hash, sha256_file
from assay.releases import history, log_path, verify_chain, verify_witness
from assay.settings import prepare_environment, usecases_dir
from assay.spec import UseCase, load_specs
from training.tags import (
    DAGSTER_RUN_ID_TAG,
    FAMILY_TAG,
    FEATURE_MODEL_VERSIONS_TAG,
    GATE_TAG_PREFIX,
    GATES_TAG,
    INTEGRITY_TAG,
    MODEL_SHA256_TAG,
    PAYLOAD_SHA256_TAG,
    PREFIX,
    ROLLED_BACK_BECAUSE_TAG,
    TRAINING_SET_SHA256_TAG,
    TRAINING_WINDOW_TAG,
    gate_tag,
)

SCHEMA_PATH = Path(__file__).with_name("audit_schema.json")
REPORT_VERSION = 1
STATUSES = ("verified", "changed", "missing")
THRESHOLD_KEYS = ("tolerance", "limits", "min_slice_size", "max_calibration_error", "max_plausible_roc_auc",
                  "budget_ms", "concurrency")


def _when(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds") if timestamp else None


def _value(entry):
    value = getattr(entry, "value", entry)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, dict)):
        return json.loads(json.dumps(value, default=str))
    return str(value)


def _metadata(metadata) -> dict:
    return {k: _value(v) for k, v in metadata.items() if k != "dagster/column_schema"}


def _link(kind: str, subject: str, expected: str | None, actual: str | None, status: str, detail: str) -> dict:
    assert status in STATUSES
    return {"kind": kind, "subject": subject, "expected": expected, "actual": actual, "status": status,
            "detail": detail}


# --- reads ------------------------------------------------------------------------------------------

def _spec(use_case: str) -> UseCase:
    specs = {s.name: s for s in load_specs(usecases_dir())}
    if use_case not in specs:
        raise ValueError(f"unknown use case {use_case!r}; known: {', '.join(sorted(specs))}")
    return specs[use_case]


def _check_evaluations(instance: dg.DagsterInstance, run_id: str | None, keys: set[dg.AssetKey] | None = None) -> list[dict]:
    if not run_id:
        return []
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if keys is not None and evaluation.asset_key not in keys:
            continue
        metadata = _metadata(evaluation.metadata)
        metadata.pop("description", None)
        found.append({
            "asset": evaluation.asset_key.to_user_string(), "check": evaluation.check_name,
            "result": "passed" if evaluation.passed else "failed", "description": evaluation.description or "",
            "evaluated": _when(entry.timestamp), "run_id": run_id, "partition": evaluation.partition,
            "threshold": {k: v for k, v in metadata.items() if k.startswith("limit") or k in THRESHOLD_KEYS},
            "measured": {k: v for k, v in metadata.items() if not (k.startswith("limit") or k in THRESHOLD_KEYS)},
        })
    return found


def _materializations(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str] | None = None,
                      limit: int = 200) -> list:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=limit, ascending=False).records
    return list(records)


def _resources():
    from resources.environments import build_resources

    layout = prepare_environment()
    resources = build_resources(layout)
    return layout, resources


def resolve_version(use_case: str, version: str | None, registry, deployer) -> tuple[str, str]:
    """The version to audit and why: asked for, served in staging, or the champion alias."""
    if version is not None:
        return str(version), "requested"
    served = deployer.incumbent(use_case, "staging")
    if served:
        return str(served), "served in staging"
    champion = registry.alias(use_case)
    if champion is None:
        raise ValueError(f"{use_case} serves nothing and has no champion: nothing to audit (pass --version)")
    return champion.version, "champion alias"


# --- sections ---------------------------------------------------------------------------------------

def _deployment(instance, spec: UseCase, version: str, layout, deployer) -> dict:
    events = [asdict(e) for e in history(layout.root, spec.name) if version in (e.version, e.from_version)]
    approved = [asdict(a) for a in approvals(layout.root / "approvals.jsonl")
                if a.use_case == spec.name and a.version == version]
    environments = []
    for environment in spec.release.environments:
        key = asset_keys.deployment(spec, environment)
        deployments = []
        for record in _materializations(instance, key, limit=50):
            metadata = _metadata(record.event_log_entry.asset_materialization.metadata)
            if version in (str(metadata.get("deployed_version")), str(metadata.get("serving_version"))):
                deployments.append({"at": _when(record.timestamp), "run_id": record.run_id,
                                    "deployed_version": str(metadata.get("deployed_version")),
                                    "serving_version": str(metadata.get("serving_version")),
                                    "rolled_back_to": str(metadata.get("rolled_back_to", "none")),
                                    "checks": _check_evaluations(instance, record.run_id, {key})})
        try:
            serving = deployer.incumbent(spec.name, environment)
        except Exception:  # noqa: BLE001 - a deployer that cannot be asked says nothing, the log still does
            serving = None
        environments.append({"environment": environment, "serving_version": serving,
                             "serves_this_version": serving == version, "deployments": deployments})
    return {"environments": environments, "approvals": approved, "release_events": events,
            "overrides": [e for e in events if e["event"] == "override"]}


def _model(registry, spec: UseCase, version: str) -> tuple[dict, dict]:
    client = registry.client()
    found = client.get_model_version(spec.name, version)
    tags = dict(found.tags)
    run = client.get_run(found.run_id) if found.run_id else None
    plots = [a.path for a in client.list_artifacts(found.run_id, "plots")] if run else []
    model = {
        "name": spec.name, "version": version, "family": tags.get(FAMILY_TAG),
        "created": _when(found.creation_timestamp / 1000) if found.creation_timestamp else None,
        "source": found.source, "mlflow_run_id": found.run_id,
        "params": dict(run.data.params) if run else {}, "metrics": dict(run.data.metrics) if run else {},
        "artifact_sha256": tags.get(PAYLOAD_SHA256_TAG), "plots": plots,
        "provenance": {k: v for k, v in sorted(tags.items()) if k.startswith(PREFIX)},
        "aliases": list(getattr(found, "aliases", []) or []),
    }
    return model, tags


def _gates(instance, spec: UseCase, version: str, tags: dict) -> list[dict]:
    run_id = tags.get(DAGSTER_RUN_ID_TAG)
    family = tags.get(FAMILY_TAG)
    candidate = asset_keys.model(spec, family)
    evaluations = _check_evaluations(instance, run_id, {candidate, asset_keys.champion(spec)})
    # One model asset run may register a version per family: keep the evaluations of this version's asset.
    required = json.loads(tags.get(GATES_TAG, "[]"))
    gates = []
    for evaluation in evaluations:
        registry_tag = tags.get(gate_tag(evaluation["check"]))
        if evaluation["check"] == "integrity":
            registry_tag = tags.get(INTEGRITY_TAG)
        gates.append({**evaluation, "registry_tag": registry_tag, "source": "dagster"})
    seen = {g["check"] for g in gates}
    recorded = {t.removeprefix(GATE_TAG_PREFIX) for t in tags if t.startswith(GATE_TAG_PREFIX)}
    for name in sorted(set(required) | recorded):
        if name not in seen:  # recorded in the registry only (e.g. post_deploy after a rollback)
            value = tags.get(gate_tag(name))
            gates.append({"asset": candidate.to_user_string(), "check": name,
                          "result": value if value in ("passed", "failed") else "not evaluated",
                          "description": tags.get(ROLLED_BACK_BECAUSE_TAG, "recorded in the registry"),
                          "evaluated": None, "run_id": None, "partition": None, "threshold": {}, "measured": {},
                          "registry_tag": value, "source": "registry"})
    return gates


def _training_set(instance, spec: UseCase, layout, tags: dict) -> tuple[dict, list[dict]]:
    sha = tags.get(TRAINING_SET_SHA256_TAG)
    key = asset_keys.training_set(spec)
    recorded = None
    for record in _materializations(instance, key, limit=500):
        metadata = _metadata(record.event_log_entry.asset_materialization.metadata)
        if metadata.get("sha256") == sha:
            recorded = (record, metadata)
            break
    path = layout.training_snapshot(spec.name, sha)
    section = {"sha256": sha, "path": str(path), "window": tags.get(TRAINING_WINDOW_TAG),
               "rows": None, "materialized": None, "run_id": None, "window_start": None, "window_end": None}
    if recorded:
        record, metadata = recorded
        section.update(rows=metadata.get("dagster/row_count"), materialized=_when(record.timestamp),
                       run_id=record.run_id, window_start=metadata.get("window_start"),
                       window_end=metadata.get("window_end"))
    if not path.exists():
        link = _link("training_snapshot", path.name, sha, None, "missing", f"no snapshot file at {path}")
    else:
        actual = sha256_file(path)
        named = path.stem
        ok = actual == sha == named
        link = _link("training_snapshot", path.name, sha, actual, "verified" if ok else "changed",
                     f"file sha256 equals its name and the version's {TRAINING_SET_SHA256_TAG}" if ok else
                     f"file sha256 {actual[:16]}… differs from its name {named[:16]}… / the version's tag {str(sha)[:16]}…")
    return section, [link]


def _model_artifact(registry, spec: UseCase, version: str, tags: dict) -> list[dict]:
    """The stored model against both recorded hashes: its payload (`assay.artifact_sha256`, what was
    trained) and every file of it (`assay.model_sha256`, what was logged: code/, python_model.pkl,
    MLmodel). Only hashed here, never loaded."""
    import mlflow

    from training.artifacts import model_sha256, payload_sha256

    subject = f"models:/{spec.name}/{version}"
    expected, expected_model = tags.get(PAYLOAD_SHA256_TAG), tags.get(MODEL_SHA256_TAG)
    registry.client()
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=subject, dst_path=scratch))
        except Exception as error:  # noqa: BLE001 - an artifact store that lost the model is a finding
            return [_link("model_artifact", subject, expected, None, "missing", f"could not download the model: {error}")]
        payloads = [p for p in local.rglob("payload") if p.is_dir()]
        if not payloads:
            return [_link("model_artifact", subject, expected, None, "missing", "the registered model has no payload folder")]
        actual, actual_model = payload_sha256(payloads[0]), model_sha256(local)
    if actual != expected:
        return [_link("model_artifact", subject, expected, actual, "changed",
                      f"payload sha256 {actual[:16]}… is not the trained {str(expected)[:16]}…")]
    if not expected_model:
        return [_link("model_artifact", subject, None, actual_model, "changed",
                      f"no {MODEL_SHA256_TAG} recorded: the code and python_model.pkl it would load cannot be verified")]
    if actual_model != expected_model:
        return [_link("model_artifact", subject, expected_model, actual_model, "changed",
                      f"the model's files hash to {actual_model[:16]}…, not the logged {expected_model[:16]}…: "
                      "its code, python_model.pkl or MLmodel changed")]
    return [_link("model_artifact", subject, expected_model, actual_model, "verified",
                  f"payload sha256 equals {PAYLOAD_SHA256_TAG} and every file of the model equals {MODEL_SHA256_TAG}")]


def _features(instance, spec: UseCase, tags: dict, days: list[str]) -> list[dict]:
    recorded = json.loads(tags.get(FEATURE_MODEL_VERSIONS_TAG, "{}"))
    models = []
    for model in spec.features.dbt_models:
        key = asset_keys.dbt_model(spec, model)
        records = _materializations(instance, key, days or None, limit=max(len(days), 1) * 4)
        latest: dict[str | None, object] = {}
        for record in records:  # newest first
            latest.setdefault(record.event_log_entry.asset_materialization.partition, record)
        code_versions = sorted({r.event_log_entry.asset_materialization.tags.get("dagster/code_version")
                                for r in latest.values()} - {None})
        runs = sorted({r.run_id for r in latest.values()})
        tests = [t for run in runs for t in _check_evaluations(instance, run, {key})]
        models.append({
            "model": model, "code_version": recorded.get(model), "code_versions_materialized": code_versions,
            "partitions": sorted(p for p in latest if p), "runs": runs,
            "tests": [{k: t[k] for k in ("check", "result", "evaluated", "run_id")} for t in tests],
            "tests_passed": sum(t["result"] == "passed" for t in tests), "tests_failed": sum(t["result"] == "failed" for t in tests),
        })
    return models


def window_days(spec: UseCase, start: str | None, end: str | None, window: str | None) -> list[str]:
    """Raw days the training window read: window_start's day through window_end's day."""
    if (not start or not end) and window and ".." in window:
        start, end = window.split("..", 1)
    if not start or not end:
        return []
    first, last = date.fromisoformat(start[:10]) - timedelta(days=1), date.fromisoformat(end[:10])
    days = []
    while first <= last:
        if spec.partitions.start <= first < spec.partitions.end:
            days.append(first.isoformat())
        first += timedelta(days=1)
    return days


def _stored_partition(warehouse, spec: UseCase, name: str, table, partition: str | None):
    import polars as pl

    from assay import sql
    from assay.contract import raw_table_sql

    columns = sql.identifiers(table.columns)
    where, args = ("WHERE _partition = ?", [date.fromisoformat(partition)]) if partition else ("", [])
    with warehouse.reader() as connection:
        try:
            frame = connection.execute(f"SELECT {columns} FROM {raw_table_sql(spec.name, name)} {where}", args).pl()
            lineage = connection.execute(
                f"SELECT min(_landing_file), min(_landing_sha256), min(_loaded_at) FROM "
                f"{raw_table_sql(spec.name, name)} {where}", args).fetchone()
        except Exception:  # noqa: BLE001 - a dropped table is a missing partition
            return None, (None, None, None)
    return (frame if frame.height else pl.DataFrame()), lineage


def _raw_and_landing(instance, spec: UseCase, days: list[str], warehouse, landing) -> tuple[list[dict], list[dict], list[dict]]:
    raws, files, links = [], [], []
    for name, table in spec.tables.items():
        key = asset_keys.raw(spec, name)
        for partition in (days if table.partitioned else [None]):
            records = _materializations(instance, key, [partition] if partition else None, limit=1)
            subject = key.to_user_string() + (f"[{partition}]" if partition else "")
            if not records:
                raws.append({"asset": key.to_user_string(), "partition": partition, "data_version": None,
                             "rows": None, "materialized": None, "run_id": None, "code_version": None,
                             "landing_file": None, "landing_sha256": None})
                links.append(_link("raw_partition", subject, None, None, "missing", "never materialized"))
                continue
            record = records[0]
            materialization = record.event_log_entry.asset_materialization
            metadata = _metadata(materialization.metadata)
            recorded = materialization.tags.get("dagster/data_version")
            raws.append({"asset": key.to_user_string(), "partition": partition, "data_version": recorded,
                         "rows": metadata.get("dagster/row_count"), "materialized": _when(record.timestamp),
                         "run_id": record.run_id, "code_version": materialization.tags.get("dagster/code_version"),
                         "landing_file": metadata.get("landing_file"), "landing_sha256": metadata.get("landing_sha256")})
            frame, (_, _, loaded_at) = _stored_partition(warehouse, spec, name, table, partition)
            if frame is None or frame.is_empty():
                links.append(_link("raw_partition", subject, recorded, None, "missing", "no rows stored in the warehouse"))
            else:
                actual = content_hash(frame, table)  # the very function ingest used for the data version
                ok = actual == recorded
                links.append(_link("raw_partition", subject, recorded, actual, "verified" if ok else "changed",
                                   f"{frame.height} stored rows hash to the recorded data version" if ok else
                                   f"{frame.height} stored rows hash to {actual[:16]}…, not the recorded "
                                   f"{str(recorded)[:16]}… of run {record.run_id[:8]}"))
            # This state's landing slot, not the recorded path: a copied state audits its own files.
            path = landing.path_for(spec.name, name, partition)
            expected = metadata.get("landing_sha256")
            quarantined = landing.quarantined(spec.name, name, partition)
            entry = {"table": name, "partition": partition, "path": str(path), "recorded_sha256": expected,
                     "sha256_now": None, "arrived": None, "loaded": str(loaded_at) if loaded_at else _when(record.timestamp),
                     "quarantine": quarantined}
            if path.exists():
                actual = sha256_file(path)
                entry.update(sha256_now=actual, arrived=_when(path.stat().st_mtime))
                ok = actual == expected
                links.append(_link("landing_file", str(path), expected, actual, "verified" if ok else "changed",
                                   "the file hashes as when it was loaded" if ok else
                                   f"the file now hashes to {actual[:16]}…, not the {str(expected)[:16]}… loaded"))
            else:
                why = (f"moved away; quarantined since: {quarantined[-1].get('quarantined_as')}" if quarantined
                       else "moved away from the landing zone")
                links.append(_link("landing_file", str(path), expected, None, "missing", why))
            files.append(entry)
    return raws, files, links


def log_verdicts(root: Path, registry) -> list[tuple[str, Path, object]]:
    """Each chained log's verdict: its own chain, then what the registry witnesses of every use case
    (assay/releases.py `verify_witness`): a log deleted or cut short with its head is found there."""
    witnesses = registry.log_witnesses()
    found = []
    for kind, path in (("release_log", log_path(root)), ("approval_log", Path(root) / "approvals.jsonl")):
        verdict = verify_chain(path)
        if verdict.status != "changed":
            for use_case, witnessed in sorted(witnesses.items()):
                promoted = witnessed.get("promoted", {}).get("versions", []) if kind == "release_log" else []
                disagreement = verify_witness(path, use_case, witnessed.get(path.stem), promoted)
                if disagreement is not None:
                    verdict = disagreement
                    break
        found.append((kind, path, verdict))
    return found


def _log_links(layout, registry) -> list[dict]:
    links = []
    for kind, path, verdict in log_verdicts(layout.root, registry):
        if verdict.status == "missing":
            continue  # nothing written yet, and nothing witnessed, is nothing to verify
        links.append(_link(kind, str(path), None, None, verdict.status,
                           verdict.detail + (f" (first break at entry {verdict.first_break})" if verdict.first_break else "")))
    return links


# --- the report -------------------------------------------------------------------------------------

def build_report(use_case: str, version: str | None = None, instance: dg.DagsterInstance | None = None) -> dict:
    began = time.perf_counter()
    layout, resources = _resources()
    registry, deployer = resources["registry"], resources["deployer"]
    spec = _spec(use_case)
    version, chosen = resolve_version(use_case, version, registry, deployer)
    own = instance is None
    instance = instance or dg.DagsterInstance.get()
    try:
        model, tags = _model(registry, spec, version)
        gates = _gates(instance, spec, version, tags)
        training_set, snapshot_links = _training_set(instance, spec, layout, tags)
        days = window_days(spec, training_set["window_start"], training_set["window_end"], training_set["window"])
        # Timestamps are UTC, partitions local days: a day either side may hold the window's edge rows.
        # The days read are those of the window that had raw data loaded.
        loaded = set()
        for name, table in spec.tables.items():
            if table.partitioned:
                loaded |= set(instance.get_materialized_partitions(asset_keys.raw(spec, name)))
        days = [d for d in days if d in loaded]
        features = _features(instance, spec, tags, days)
        raws, files, data_links = _raw_and_landing(instance, spec, days, resources["warehouse"], resources["landing"])
        deployment = _deployment(instance, spec, version, layout, deployer)
    finally:
        if own:
            instance.dispose()
    links = [*_log_links(layout, registry), *snapshot_links, *_model_artifact(registry, spec, version, tags), *data_links]
    counts = {s: sum(link["status"] == s for link in links) for s in STATUSES}
    return {
        "report_version": REPORT_VERSION,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "use_case": spec.name, "version": version, "version_chosen_by": chosen, "owner": spec.owner,
        "deployment": deployment, "model": model, "gates": gates, "training_set": training_set,
        "feature_models": features, "raw_partitions": raws, "landing_files": files,
        "verification": {"links": links, "counts": counts, "ok": counts["changed"] == 0,
                         "changed": [f"{link['kind']}: {link['subject']}" for link in links if link["status"] == "changed"],
                         "seconds": round(time.perf_counter() - began, 2)},
    }


def validate_report(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))


def render(report: dict, fmt: str) -> str:
    from cli import audit_render

    if fmt == "json":
        return json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"
    if fmt == "md":
        return audit_render.markdown(report)
    if fmt == "html":
        return audit_render.html(report)
    raise ValueError(f"unknown format {fmt!r}; one of html, md, json")


def audit_main(use_case: str, version: str | None = None, fmt: str = "html", output: str | None = None) -> int:
    """`assay audit <use-case> [--version N] [--format html|md|json] [--output PATH]`.

    Writes the report (to `output`, else `audit-<use case>-v<version>.<ext>` in the current folder)
    and prints the verification summary. Exit 0 when no link changed, 1 when one did."""
    if fmt not in ("html", "md", "json"):
        raise ValueError(f"unknown format {fmt!r}; one of html, md, json")
    report = build_report(use_case, None if version is None else str(version))
    text = render(report, fmt)
    target = Path(output) if output else Path(f"audit-{use_case}-v{report['version']}.{fmt}")
    if str(target) == "-":
        sys.stdout.write(text)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    counts = report["verification"]["counts"]
    out = sys.stderr if str(target) == "-" else sys.stdout
    print(f"{use_case} v{report['version']} ({report['version_chosen_by']}): {counts['verified']} links verified, "
          f"{counts['changed']} changed, {counts['missing']} missing" + ("" if str(target) == "-" else f"; report: {target}"),
          file=out)
    for changed in report["verification"]["changed"]:
        print(f"  CHANGED {changed}", file=out)
    return 0 if report["verification"]["ok"] else 1


def verify_log_main() -> int:
    """`assay audit verify-log`: recompute the release log's and the approvals' hash chains, and
    compare each with what the registry witnesses of it."""
    layout, resources = _resources()
    failed = False
    for _, path, verdict in log_verdicts(layout.root, resources["registry"]):
        print(f"{path.name}: {verdict.status}: {verdict.detail}")
        failed |= verdict.status == "changed"
    return 1 if failed else 0

