"""`assay`: what users do outside the Dagster UI.

    assay replay flights --start 2013-01-01 --days 14   land real files, one per table per day
    assay status --json                                 use cases, assets' latest state, gate results
    assay demo                                          replay a default window and build everything
    assay build weather [--start D --end D]             build what landed (no replay), with the demo's summary
    assay simulate flights --days 180                   replay day by day through sensors and automation
    assay serve stop|status                             the local model servers (deployments start them)
    assay approve flights --version 3 --by ana --reason "..."   approve a version for production
    assay rollback flights --by ana --reason "..."      restore the previous champion wherever it serves
    assay releases flights                              promotions, rollout steps, deployments, rollbacks
    assay audit flights [--version 3] [--format html|md|json]   lineage of the served model, every hash re-verified
    assay audit verify-log                              the hash-chained release and approval logs are intact
    assay ui                                            the Dagster UI over the same state
    assay dbt-parse                                     prepare the dbt manifest (done by make install)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date

from assay.settings import DBT_PROJECT_DIR, REPO_ROOT, prepare_environment, usecases_dir
from assay.spec import SpecError, UseCase, load_specs


def _spec(name: str) -> UseCase:
    specs = {s.name: s for s in load_specs(usecases_dir())}
    if name not in specs:
        raise SystemExit(f"unknown use case {name!r}; known: {', '.join(sorted(specs))}")
    return specs[name]


def _replayable(name: str, command: str) -> UseCase:
    """The use case, refused when its spec names no replay source: its files come from upstream."""
    spec = _spec(name)
    if spec.source is None:
        raise ValueError(f"{name} has no replay source (no `source:` in {usecases_dir() / (name + '.yaml')}): "
                         f"its files arrive from upstream in the landing zone, so there is nothing to {command}; "
                         f"build what landed with `assay build {name}`")
    return spec


def cmd_replay(args: argparse.Namespace) -> int:
    from harness.replay import replay
    from resources.landing_zone import LandingZone

    layout = prepare_environment()
    spec = _replayable(args.use_case, "replay")
    start = date.fromisoformat(args.start) if args.start else spec.partitions.start
    landing = LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))
    landed = replay(spec, landing, start, args.days)
    for item in landed:
        print(f"landed {item.path.relative_to(layout.root)} ({item.rows} rows)")
    print(f"{len(landed)} files landed for {spec.name} in {layout.landing}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cli.status import collect_status, render_status

    prepare_environment()
    report = collect_status()
    print(json.dumps(report, indent=2, default=str) if args.json else render_status(report))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

    prepare_environment()
    return run_demo(days=args.days)


def cmd_build(args: argparse.Namespace) -> int:
    from cli.demo import run_build

    prepare_environment()
    spec = _spec(args.use_case)
    return run_build(spec, date.fromisoformat(args.start) if args.start else None,
                     date.fromisoformat(args.end) if args.end else None)


def cmd_simulate(args: argparse.Namespace) -> int:
    import dagster as dg

    from cli.demo import output_to
    from definitions import current_definitions
    from harness.simulation import simulate
    from resources.landing_zone import LandingZone

    layout = prepare_environment()
    spec = _replayable(args.use_case, "simulate")
    start = date.fromisoformat(args.start) if args.start else spec.partitions.start
    defs = current_definitions()
    landing = LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))
    print(f"replaying {args.days} days of {spec.name} from {start} through sensors and automation ticks "
          f"(state in {layout.root})")
    terminal = os.fdopen(os.dup(1), "w", buffering=1)  # the timeline; the runs' output goes to the log
    print(f"the runs' console output: {layout.root / 'simulate.log'}", file=terminal)
    with dg.DagsterInstance.get() as instance, output_to(layout.root / "simulate.log"):
        timeline = simulate(defs, instance, spec, landing, start, args.days, echo=lambda line: print(line, file=terminal))
    retrains = [d for d in timeline if d.retrain.startswith("retrain")]
    served = [d for d in timeline if d.land_to_serve_seconds is not None]
    print(f"\n{len(timeline)} days, {sum(len(d.runs) for d in timeline)} runs, "
          f"{sum(1 for d in timeline if d.drift.startswith('drift:') and 'none' not in d.drift)} days with drift, "
          f"{len(retrains)} retrains, {sum(1 for d in timeline for r in d.releases if 'rolled_back' in r)} rollbacks")
    for d in served:
        print(f"land-to-serve on {d.day}: {d.land_to_serve_seconds:.0f} s, orchestration {d.orchestration_seconds:.0f} s")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from resources.environments import local_deployer

    layout = prepare_environment()
    servers = local_deployer(layout).servers()
    if args.action == "stop":
        stopped = [env for env, server in servers.items() if server.stop()]
        print(f"stopped the model server of {', '.join(stopped)}" if stopped else "no model server was running")
        return 0
    report = {env: {"url": server.url if server.pid() else None, "pid": server.pid(),
                    "served": [s.__dict__ for s in server.served()] if server.pid() else []}
              for env, server in servers.items()}
    print(json.dumps(report, indent=2))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from assay.approvals import ApprovalRefused, approve
    from resources.environments import build_resources

    layout = prepare_environment()
    _spec(args.use_case)
    registry = build_resources(layout)["registry"]
    try:
        approval = approve(layout.root / "approvals.jsonl", registry, args.use_case, args.environment, args.version,
                           args.by, args.reason)
    except ApprovalRefused as refusal:
        print(f"assay approve: {refusal}", file=sys.stderr)
        return 2
    print(f"recorded: {approval.by} approved {approval.use_case} v{approval.version} (sha256 "
          f"{approval.sha256[:12]}…) for {approval.environment} at {approval.at}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from resources.deployment.release import roll_back
    from resources.environments import build_resources
    from resources.registry import PromotionRefused

    layout = prepare_environment()
    spec = _spec(args.use_case)
    if not args.by.strip() or not args.reason.strip():
        raise ValueError("a rollback needs a person (--by) and a reason (--reason)")
    resources = build_resources(layout)
    registry, deployer = resources["registry"], resources["deployer"]
    current = registry.alias(args.use_case)
    try:
        rollback = roll_back(registry, deployer, args.use_case, dict.fromkeys(spec.release.environments), args.by,
                             args.reason)
    except PromotionRefused as refusal:
        print(f"assay rollback: {refusal}", file=sys.stderr)
        return 2
    print(f"{args.use_case}: champion is v{rollback.champion.version} again "
          f"(was v{current.version if current else '?'})")
    for restored in rollback.restored:
        print(f"{restored.environment}: serving v{restored.version} (was v{restored.replaced})")
    return 0


def cmd_releases(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from assay.releases import history

    layout = prepare_environment()
    events = history(layout.root, args.use_case)
    if args.json:
        print(json.dumps([asdict(e) for e in events], indent=2))
        return 0
    for e in events:
        where = f" in {e.environment}" if e.environment else ""
        verdict = "" if e.passed is None else (" passed" if e.passed else " FAILED")
        print(f"{e.at}  {e.use_case} v{e.version} {e.event}{verdict}{where} (from v{e.from_version}) by {e.by}: "
              f"{e.reason}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from cli.audit import audit_main, verify_log_main

    prepare_environment()
    if args.use_case == "verify-log":
        return verify_log_main()
    _spec(args.use_case)
    return audit_main(args.use_case, args.version, args.format, args.output)


def cmd_ui(args: argparse.Namespace) -> int:
    prepare_environment()
    command = [os.path.join(os.path.dirname(sys.executable), "dagster"), "dev", "-w", "workspace.yaml",
               "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (state in {os.environ['DAGSTER_HOME']})")
    return subprocess.call(command, cwd=REPO_ROOT)


def cmd_dbt_parse(args: argparse.Namespace) -> int:
    prepare_environment()
    dbt = os.path.join(os.path.dirname(sys.executable), "dbt")
    return subprocess.call(
        [dbt, "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    )


def _replay_window(command: argparse.ArgumentParser, days: int) -> None:
    """The use case and the window of its replayed days, as `replay` and `simulate` take them."""
    command.add_argument("use_case")
    command.add_argument("--start", help="first day, YYYY-MM-DD (default: the use case's first partition)")
    command.add_argument("--days", type=int, default=days)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="assay", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="land a window of real daily files for a use case")
    _replay_window(replay, days=14)
    replay.set_defaults(run=cmd_replay)

    status = commands.add_parser("status", help="use cases, their assets' latest state and gate results")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    demo = commands.add_parser("demo", help="replay a default window and materialize the whole graph")
    demo.add_argument("--days", type=int, default=21)
    demo.set_defaults(run=cmd_demo)

    build = commands.add_parser("build", help="materialize what landed: raw days, features of the days that "
                                "passed their gates, training set, models, champion, staging")
    build.add_argument("use_case")
    build.add_argument("--start", help="first day, YYYY-MM-DD (default: the first day with a landing file)")
    build.add_argument("--end", help="last day, inclusive (default: the last day with a landing file)")
    build.set_defaults(run=cmd_build)

    simulate = commands.add_parser("simulate", help="replay days through the sensors and automation, with a timeline")
    _replay_window(simulate, days=60)
    simulate.set_defaults(run=cmd_simulate)

    serve = commands.add_parser("serve", help="the local model servers (one per deployment environment)")
    serve.add_argument("action", choices=["stop", "status"])
    serve.set_defaults(run=cmd_serve)

    approve = commands.add_parser("approve", help="record an approval of a model version for an environment")
    approve.add_argument("use_case")
    approve.add_argument("--environment", default="production")
    approve.add_argument("--version", required=True)
    approve.add_argument("--by", required=True, help="who approves")
    approve.add_argument("--reason", required=True, help="why")
    approve.set_defaults(run=cmd_approve)

    rollback = commands.add_parser("rollback", help="restore the previous champion and serve it again")
    rollback.add_argument("use_case")
    rollback.add_argument("--by", required=True, help="who rolls back")
    rollback.add_argument("--reason", required=True, help="why")
    rollback.set_defaults(run=cmd_rollback)

    releases = commands.add_parser("releases", help="the release log of a use case (or all)")
    releases.add_argument("use_case", nargs="?")
    releases.add_argument("--json", action="store_true")
    releases.set_defaults(run=cmd_releases)

    audit = commands.add_parser("audit", help="an auditor's report of a model version, or `verify-log`")
    audit.add_argument("use_case", help="the use case, or verify-log to check the hash-chained logs")
    audit.add_argument("--version", help="a model version (default: the one serving in staging, else the champion)")
    audit.add_argument("--format", choices=["html", "md", "json"], default="html")
    audit.add_argument("--output", help="where to write it (default audit-<use case>-v<N>.<ext>; - for stdout)")
    audit.set_defaults(run=cmd_audit)

    ui = commands.add_parser("ui", help="start the Dagster webserver and daemon over the same state")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(run=cmd_ui)

    parse = commands.add_parser("dbt-parse", help="prepare the dbt manifest")
    parse.set_defaults(run=cmd_dbt_parse)
    return root


# Commands that read or start runs: each first fails the runs whose process was killed.
RUN_COMMANDS = ("demo", "build", "simulate", "status", "ui", "audit")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command in RUN_COMMANDS:
            from assay.interrupted_runs import fail_interrupted_runs_at_start

            prepare_environment()
            fail_interrupted_runs_at_start()  # a run killed with -9 is failed, not left STARTED forever
        return args.run(args)
    except (SpecError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"assay {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
