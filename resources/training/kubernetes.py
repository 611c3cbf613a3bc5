"""The Kubernetes trainer: the same entrypoint as a pod of the training image (resources/training/pod.py
builds the pod; platform/k8s and platform/README.md describe the cluster side)."""

from __future__ import annotations

from resources.training.trainer import Trainer


class KubernetesTrainer(Trainer):
    """A pod of the training image on the GPU node pool (see platform/k8s and platform/README.md)."""

    def train(self, context, extras, tracking_uri):
        # The pod reads MLFLOW_TRACKING_URI from its Kubernetes Secret: credentials never travel in
        # the Pipes context, which is a plain env var readable by anyone who can read pods.
        from resources.training.pod import (
            TRAINING_COMMAND, TrainingPodSettings, kubernetes_trainer_client, run_kubernetes_training,
        )

        settings = TrainingPodSettings.from_env()
        return run_kubernetes_training(kubernetes_trainer_client(settings), settings, context,
                                       command=TRAINING_COMMAND, extras=extras)
