"""`assay`: what users do outside the Dagster UI.

    assay replay flights --start 2013-01-01 --days 14   land real files, one per table per day
    assay status --json                                 use cases, assets' latest state, gate results
    assay demo                                          replay a default window and build everything
    assay serve start|stop|status                      serve the champions (MLServer, V2 protocol)
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


def cmd_replay(args: argparse.Namespace) -> int:
    from assay.replay import replay
    from resources.landing_zone import LandingZone

    layout = prepare_environment()
    spec = _spec(args.use_case)
    start = date.fromisoformat(args.start) if args.start else spec.partitions.start
    landing = LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine))
    landed = replay(spec, landing, start, args.days)
    for item in landed:
        print(f"landed {item.path.relative_to(layout.root)} ({item.rows} rows)")
    print(f"{len(landed)} files landed for {spec.name} in {layout.landing}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from assay.status import collect_status, render_status

    prepare_environment()
    report = collect_status()
    print(json.dumps(report, indent=2, default=str) if args.json else render_status(report))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from assay.demo import run_demo

    prepare_environment()
    return run_demo(days=args.days)


def cmd_serve(args: argparse.Namespace) -> int:
    from assay.settings import mlflow_tracking_uri
    from resources.environments import local_model_server
    from resources.registry import ModelRegistry

    layout = prepare_environment()
    server = local_model_server(layout)
    if args.action == "stop":
        print("stopped the model server" if server.stop() else "no model server was running")
        return 0
    if args.action == "status":
        pid = server.pid()
        print(json.dumps({"url": server.url if pid else None, "pid": pid,
                          "served": [s.__dict__ for s in server.served()] if pid else []}, indent=2))
        return 0
    registry = ModelRegistry(tracking_uri=mlflow_tracking_uri(layout))
    champions = [(s.name, v.version) for s in load_specs(usecases_dir()) if (v := registry.alias(s.name))]
    if not champions:
        raise ValueError("no use case has a champion yet: run `make demo` first")
    for served in server.serve(registry, champions):
        print(f"serving {served.name} v{served.version} at {served.url}/v2/models/{served.name}/infer")
    return 0


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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="assay", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="land a window of real daily files for a use case")
    replay.add_argument("use_case")
    replay.add_argument("--start", help="first day, YYYY-MM-DD (default: the use case's first partition)")
    replay.add_argument("--days", type=int, default=14)
    replay.set_defaults(run=cmd_replay)

    status = commands.add_parser("status", help="use cases, their assets' latest state and gate results")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    demo = commands.add_parser("demo", help="replay a default window and materialize the whole graph")
    demo.add_argument("--days", type=int, default=21)
    demo.set_defaults(run=cmd_demo)

    serve = commands.add_parser("serve", help="serve every use case's champion with MLServer on loopback")
    serve.add_argument("action", choices=["start", "stop", "status"])
    serve.set_defaults(run=cmd_serve)

    ui = commands.add_parser("ui", help="start the Dagster webserver and daemon over the same state")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(run=cmd_ui)

    parse = commands.add_parser("dbt-parse", help="prepare the dbt manifest")
    parse.set_defaults(run=cmd_dbt_parse)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (SpecError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"assay {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
