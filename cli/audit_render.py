"""Rendering of an audit report (cli/audit.py) as Markdown or as one self-contained HTML page.

The HTML page needs nothing but itself: inline CSS, no script, and the lineage drawn as an inline
SVG graph (landing files -> raw partitions -> feature models -> training set -> model version ->
deployments), each node coloured by its verification status.
"""

from __future__ import annotations

import json
from html import escape

COLOURS = {"verified": "#2e7d32", "changed": "#c62828", "missing": "#9e9e9e", None: "#455a64"}


def _status_by_subject(report: dict) -> dict[str, str]:
    return {link["subject"]: link["status"] for link in report["verification"]["links"]}


def _short(value, n: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= n else text[:n] + "…"


# --- lineage graph ---------------------------------------------------------------------------------

def lineage_nodes(report: dict) -> tuple[list[list[dict]], list[tuple[str, str]]]:
    """Columns of nodes (left to right) and edges between node ids."""
    status = _status_by_subject(report)
    links = report["verification"]["links"]
    artifact = next((link["status"] for link in links if link["kind"] == "model_artifact"), None)
    snapshot = next((link["status"] for link in links if link["kind"] == "training_snapshot"), None)
    files, raws, edges = [], [], []
    for i, entry in enumerate(report["landing_files"]):
        label = f"{entry['table']} {entry['partition'] or ''}".strip()
        files.append({"id": f"f{i}", "label": label, "status": status.get(entry["path"]), "title": entry["path"]})
    for i, raw in enumerate(report["raw_partitions"]):
        subject = raw["asset"] + (f"[{raw['partition']}]" if raw["partition"] else "")
        raws.append({"id": f"r{i}", "label": f"{raw['asset'].split('/')[-1]} {raw['partition'] or ''}".strip(),
                     "status": status.get(subject), "title": f"data version {raw['data_version']}"})
        if i < len(files):
            edges.append((f"f{i}", f"r{i}"))
    features = [{"id": f"m{i}", "label": f["model"], "status": None, "title": f"code version {f['code_version']}"}
                for i, f in enumerate(report["feature_models"])]
    edges += [(r["id"], m["id"]) for r in raws for m in features]
    ts = report["training_set"]
    training = [{"id": "t", "label": f"training set {_short(ts['sha256'], 10)}", "status": snapshot,
                 "title": ts["path"]}]
    edges += [(m["id"], "t") for m in features] or [(r["id"], "t") for r in raws]
    model = report["model"]
    models = [{"id": "v", "label": f"{model['name']} v{model['version']} ({model['family']})", "status": artifact,
               "title": model["source"]}]
    edges.append(("t", "v"))
    deployments = []
    for i, env in enumerate(report["deployment"]["environments"]):
        deployments.append({"id": f"d{i}", "label": f"{env['environment']}: "
                            + (f"serving v{env['serving_version']}" if env["serving_version"] else "nothing served"),
                            "status": None, "title": env["environment"]})
        edges.append(("v", f"d{i}"))
    return [c for c in (files, raws, features, training, models, deployments) if c], edges


def svg(report: dict) -> str:
    columns, edges = lineage_nodes(report)
    width, height, gap, col_gap = 190, 22, 6, 40
    rows = max(len(c) for c in columns)
    total_h = rows * (height + gap) + 20
    total_w = len(columns) * (width + col_gap) + 10
    at: dict[str, tuple[float, float]] = {}
    parts = []
    for c, column in enumerate(columns):
        offset = (total_h - len(column) * (height + gap)) / 2
        for r, node in enumerate(column):
            x, y = 5 + c * (width + col_gap), offset + r * (height + gap)
            at[node["id"]] = (x, y)
            colour = COLOURS.get(node["status"], COLOURS[None])
            parts.append(
                f'<g class="node {node["status"] or "info"}"><title>{escape(str(node["title"]))} '
                f'({node["status"] or "not a verified link"})</title>'
                f'<rect x="{x:.0f}" y="{y:.0f}" width="{width}" height="{height}" rx="4" fill="{colour}"/>'
                f'<text x="{x + 6:.0f}" y="{y + 15:.0f}">{escape(_short(node["label"], 28))}</text></g>')
    lines = []
    for a, b in edges:
        if a in at and b in at:
            (x1, y1), (x2, y2) = at[a], at[b]
            lines.append(f'<path d="M{x1 + width:.0f},{y1 + height / 2:.0f} C{x1 + width + col_gap / 2:.0f},'
                         f'{y1 + height / 2:.0f} {x2 - col_gap / 2:.0f},{y2 + height / 2:.0f} {x2:.0f},{y2 + height / 2:.0f}"/>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{total_w}" height="{total_h:.0f}" '
            f'viewBox="0 0 {total_w} {total_h:.0f}" role="img" aria-label="lineage">'
            f'<g class="edges" fill="none" stroke="#90a4ae" stroke-width="1">{"".join(lines)}</g>'
            f'<g font-family="sans-serif" font-size="11" fill="#fff">{"".join(parts)}</g></svg>')


# --- tables ------------------------------------------------------------------------------------------

def _cell(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else str(value)


def _sections(report: dict) -> list[tuple[str, list[str], list[list]]]:
    d, m, ts = report["deployment"], report["model"], report["training_set"]
    v = report["verification"]
    return [
        ("Verification", ["kind", "subject", "status", "expected", "actual", "detail"],
         [[link["kind"], link["subject"], link["status"].upper() if link["status"] == "changed" else link["status"],
           _short(link["expected"], 16), _short(link["actual"], 16), link["detail"]] for link in v["links"]]),
        ("Deployment", ["environment", "serving now", "serves this version", "deployments (at, run, rolled back to)"],
         [[e["environment"], e["serving_version"], e["serves_this_version"],
           "; ".join(f"{x['at']} run {x['run_id'][:8]} → {x['rolled_back_to']}" for x in e["deployments"])]
          for e in d["environments"]]),
        ("Approvals", ["at", "environment", "by", "reason"],
         [[a["at"], a["environment"], a["by"], a["reason"]] for a in d["approvals"]]),
        ("Overrides", ["at", "environment", "by", "reason"],
         [[o["at"], o["environment"], o["by"], o["reason"]] for o in d["overrides"]]),
        ("Release log (this version)", ["at", "event", "environment", "from", "by", "reason", "passed"],
         [[e["at"], e["event"], e["environment"], e["from_version"], e["by"], e["reason"], e["passed"]]
          for e in d["release_events"]]),
        ("Model version", ["field", "value"],
         [["name / version", f"{m['name']} v{m['version']} ({m['family']})"], ["created", m["created"]],
          ["MLflow run", m["mlflow_run_id"]], ["source", m["source"]], ["artifact sha256", m["artifact_sha256"]],
          ["plots", ", ".join(m["plots"])], ["metrics", m["metrics"]], ["params", m["params"]],
          *[[k, val] for k, val in m["provenance"].items()]]),
        ("Gates", ["asset", "gate", "result", "threshold", "measured", "evaluated", "registry tag", "description"],
         [[g["asset"], g["check"], g["result"], g["threshold"], g["measured"], g["evaluated"], g["registry_tag"],
           g["description"]] for g in report["gates"]]),
        ("Training set", ["sha256", "window", "rows", "materialized", "run", "path"],
         [[ts["sha256"], ts["window"], ts["rows"], ts["materialized"], ts["run_id"], ts["path"]]]),
        ("Feature models", ["model", "code version (recorded)", "code versions materialized", "partitions",
                            "dbt tests passed", "dbt tests failed"],
         [[f["model"], f["code_version"], ", ".join(f["code_versions_materialized"]), len(f["partitions"]),
           f["tests_passed"], f["tests_failed"]] for f in report["feature_models"]]),
        ("Raw partitions", ["asset", "partition", "data version", "rows", "materialized", "run", "contract version"],
         [[r["asset"], r["partition"], r["data_version"], r["rows"], r["materialized"], _short(r["run_id"], 8),
           r["code_version"]] for r in report["raw_partitions"]]),
        ("Landing files", ["path", "recorded sha256", "sha256 now", "arrived", "loaded", "quarantine history"],
         [[f["path"], _short(f["recorded_sha256"], 16), _short(f["sha256_now"], 16), f["arrived"], f["loaded"],
           "; ".join(f"{q.get('quarantined_at')}: {q.get('reason', q.get('error', ''))}" for q in f["quarantine"])]
          for f in report["landing_files"]]),
    ]


def _headline(report: dict) -> str:
    c = report["verification"]["counts"]
    verdict = "VERIFIED" if report["verification"]["ok"] else "CHANGED: " + "; ".join(report["verification"]["changed"])
    return (f"{report['use_case']} v{report['version']} ({report['version_chosen_by']}): {verdict} — "
            f"{c['verified']} verified, {c['changed']} changed, {c['missing']} missing")


def markdown(report: dict) -> str:
    def md(value) -> str:
        return _cell(value).replace("|", "\\|").replace("\n", " ")

    out = [f"# Audit of {report['use_case']} v{report['version']}", "", f"Generated {report['generated']}; "
           f"owner {report['owner']}.", "", f"**{_headline(report)}**", "",
           "Lineage: landing files → raw partitions → feature models → training set → model version → deployments.", ""]
    for title, header, rows in _sections(report):
        out += [f"## {title}", ""]
        if not rows:
            out += ["(none)", ""]
            continue
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(md(v) for v in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.5em}
table{border-collapse:collapse;margin-bottom:1.5em;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 6px;
vertical-align:top;text-align:left;max-width:40em;overflow-wrap:anywhere}th{background:#eceff1}
.verdict{padding:.5em 1em;border-radius:4px;color:#fff;display:inline-block}.ok{background:#2e7d32}
.bad{background:#c62828}.changed,.CHANGED{color:#c62828;font-weight:bold}.missing{color:#757575}
.verified{color:#2e7d32}.lineage{border:1px solid #ddd;margin:1em 0}"""


def html(report: dict) -> str:
    body = [f"<h1>Audit of {escape(report['use_case'])} v{escape(report['version'])}</h1>",
            f"<p>Generated {escape(report['generated'])}; owner {escape(report['owner'])}.</p>",
            f'<p class="verdict {"ok" if report["verification"]["ok"] else "bad"}">{escape(_headline(report))}</p>',
            "<h2>Lineage</h2>", svg(report)]
    for title, header, rows in _sections(report):
        body.append(f"<h2>{escape(title)}</h2>")
        if not rows:
            body.append("<p>(none)</p>")
            continue
        cells = "".join(f"<th>{escape(h)}</th>" for h in header)
        trs = []
        for row in rows:
            tds = []
            for value in row:
                text = _cell(value)
                cls = f' class="{escape(text)}"' if text in ("verified", "missing", "CHANGED", "passed", "failed") else ""
                tds.append(f"<td{cls}>{escape(text)}</td>")
            trs.append("<tr>" + "".join(tds) + "</tr>")
        body.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(trs)}</tbody></table>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Audit {escape(report['use_case'])} v{escape(report['version'])}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
