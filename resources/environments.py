"""The resources each environment wires, one implementation per role behind each key."""

from __future__ import annotations

import os

from dagster_dbt import DbtProject

from assay.settings import DBT_PROJECT_DIR, StateLayout, environment, mlflow_tracking_uri
from resources.dbt import installed_dbt
from resources.landing_zone import LandingZone
from resources.registry import ModelRegistry
from resources.deployment.local import DEFAULT_PORTS, LocalDeployer
from resources.deployment.seldon.deployer import SeldonDeployer
from resources.training.kubernetes import KubernetesTrainer
from resources.training.local import LocalTrainer
from resources.warehouse import Warehouse


def dbt_project() -> DbtProject:
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"{project.manifest_path} is missing: the dbt manifest is prepared at setup "
            "(`make install` or `assay dbt-parse`), never at import"
        )
    return project


def local_deployer(layout: StateLayout) -> LocalDeployer:
    """Each environment's MLServer port; ASSAY_SERVING_PORTS=staging=8080,production=8090 overrides."""
    ports = dict(DEFAULT_PORTS)
    for item in filter(None, os.environ.get("ASSAY_SERVING_PORTS", "").split(",")):
        environment, _, port = item.partition("=")
        ports[environment.strip()] = int(port)
    return LocalDeployer(root=str(layout.serving), ports=ports)


def build_resources(layout: StateLayout) -> dict[str, object]:
    # Both environments (ASSAY_ENV) share the warehouse, landing zone and dbt: at scale the state
    # folder is the code location's volume (platform/k8s). Training and serving are where they differ.
    on_kubernetes = environment() == "kubernetes"
    return {
        "trainer": KubernetesTrainer() if on_kubernetes else LocalTrainer(),
        # Seldon on Kubernetes (ASSAY_SELDON_* variables), MLServer processes on loopback locally.
        "deployer": SeldonDeployer.from_environment() if on_kubernetes else local_deployer(layout),
        "registry": ModelRegistry(tracking_uri=mlflow_tracking_uri(layout), artifact_root=str(layout.mlflow / "artifacts")),
        "landing": LandingZone(root=str(layout.landing), quarantine_root=str(layout.quarantine)),
        "warehouse": Warehouse(path=str(layout.warehouse)),
        "dbt": installed_dbt(),
    }
