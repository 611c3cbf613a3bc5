"""Where training runs: one interface, one implementation per environment.

Both run the same entrypoint (`python -m training.train`) through Dagster Pipes and hand back the
same results; only the place differs (a local subprocess, or a GPU pod on Kubernetes).
"""

from __future__ import annotations

import sys

import dagster as dg

from assay.settings import REPO_ROOT

ENTRYPOINT = ["-m", "training.train"]


class Trainer(dg.ConfigurableResource):
    """Runs the training entrypoint for an asset and returns the Pipes invocation."""

    def train(self, context: dg.AssetExecutionContext, extras: dict, tracking_uri: str):
        raise NotImplementedError


class LocalTrainer(Trainer):
    """The embedded default: a subprocess on this machine, with this environment's Python."""

    def train(self, context, extras, tracking_uri):
        return dg.PipesSubprocessClient(cwd=str(REPO_ROOT)).run(
            context=context, command=[sys.executable, *ENTRYPOINT], extras=extras,
            env={"MLFLOW_TRACKING_URI": tracking_uri},
        )


class KubernetesTrainer(Trainer):
    """A pod of the training image on the GPU node pool (see platform/k8s and platform/README.md)."""

    def train(self, context, extras, tracking_uri):
        # The pod reads MLFLOW_TRACKING_URI from its Kubernetes Secret: credentials never travel in
        # the Pipes context, which is a plain env var readable by anyone who can read pods.
        from resources.training_pod import (
            TRAINING_COMMAND, TrainingPodSettings, kubernetes_trainer_client, run_kubernetes_training,
        )

        settings = TrainingPodSettings.from_env()
        return run_kubernetes_training(kubernetes_trainer_client(settings), settings, context,
                                       command=TRAINING_COMMAND, extras=extras)
