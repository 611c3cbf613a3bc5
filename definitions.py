"""The code location: every use case in usecases/, built from its spec. Wiring only.

Importing this file builds nothing and touches no state. Dagster calls `defs` when it loads the location
(code server, `dagster dev`, `dagster asset materialize -f`), and that call prepares the environment; the
CLI, tests and benchmarks call `current_definitions()`, or `build_definitions(...)` for a state of their own.
"""

import functools
from collections.abc import Sequence

import dagster as dg

from assay.settings import StateLayout, prepare_environment, usecases_dir
from assay.spec import UseCase, load_specs
from assets.use_case import build_use_case
from automation.conditions import automation_sensor
from automation.interrupted_runs import build_interrupted_runs_sensor
from automation.landing import build_landing_sensor
from automation.retrain import build_retrain_sensor
from resources.environments import build_resources, dbt_project


def build_definitions(layout: StateLayout, specs: Sequence[UseCase]) -> dg.Definitions:
    """The assets and sensors of `specs`, with the resources of the state folder `layout`."""
    project = dbt_project()
    return dg.Definitions(
        assets=[asset for spec in specs for asset in build_use_case(spec, project)],
        sensors=[*(build_landing_sensor(spec) for spec in specs), *(build_retrain_sensor(spec) for spec in specs),
                 automation_sensor(), build_interrupted_runs_sensor()],
        resources=build_resources(layout),
        # One process per run, not per step: steps here are short, and each extra process costs ~3 s.
        executor=dg.in_process_executor,
    )


def current_definitions() -> dg.Definitions:
    """The code location for the state folder and specs this process's environment names (ASSAY_HOME,
    ASSAY_USECASES_DIR), preparing that environment first: runs started here and from the UI share one state."""
    return build_definitions(prepare_environment(), load_specs(usecases_dir()))


@dg.definitions
@functools.cache  # Dagster calls it twice per load (to find the location, then to build it): build once
def defs() -> dg.Definitions:
    return current_definitions()
