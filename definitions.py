"""The code location: every use case in usecases/, built from its spec. Wiring only."""

import dagster as dg

from assay.settings import prepare_environment, usecases_dir
from assay.spec import load_specs
from assets.use_case import build_use_case
from automation.conditions import automation_sensor
from automation.interrupted_runs import build_interrupted_runs_sensor
from automation.landing import build_landing_sensor
from automation.retrain import build_retrain_sensor
from resources.environments import build_resources, dbt_project

layout = prepare_environment()
project = dbt_project()
specs = load_specs(usecases_dir())

defs = dg.Definitions(
    assets=[asset for spec in specs for asset in build_use_case(spec, project)],
    sensors=[*(build_landing_sensor(spec) for spec in specs), *(build_retrain_sensor(spec) for spec in specs),
             automation_sensor(), build_interrupted_runs_sensor()],
    resources=build_resources(layout),
    # One process per run, not per step: steps here are short, and each extra process costs ~3 s.
    executor=dg.in_process_executor,
)
