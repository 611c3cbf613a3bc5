"""The resources each environment wires, one implementation per role behind each key."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from assay.settings import DBT_PROJECT_DIR, StateLayout, environment, mlflow_tracking_uri
from resources.landing_zone import LandingZone
from resources.registry import ModelRegistry
from resources.serving import LocalModelServer
from resources.trainer import KubernetesTrainer, LocalTrainer
from resources.warehouse import Warehouse


def dbt_project() -> DbtProject:
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"{project.manifest_path} is missing: the dbt manifest is prepared at setup "
            "(`make install` or `assay dbt-parse`), never at import"
        )
    return project


def local_model_server(layout: StateLayout) -> LocalModelServer:
    port = int(os.environ.get("ASSAY_SERVING_PORT", "8080"))  # grpc and metrics take the next two
    return LocalModelServer(root=str(layout.serving), http_port=port, grpc_port=port + 1, metrics_port=port + 2)


def build_resources(layout: StateLayout) -> dict[str, object]:
    # Both environments (ASSAY_ENV) share the warehouse, landing zone and dbt: at scale the state
    # folder is the code location's volume (platform/k8s). Training is where they differ.
    trainer = KubernetesTrainer() if environment() == "kubernetes" else LocalTrainer()
    return {
        "trainer": trainer,
        "model_server": local_model_server(layout),
        "registry": ModelRegistry(tracking_uri=mlflow_tracking_uri(layout), artifact_root=str(layout.mlflow / "artifacts")),
        "landing": LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine)),
        "warehouse": Warehouse(path=str(layout.warehouse)),
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=str(Path(sys.executable).parent / "dbt"),
        ),
    }
