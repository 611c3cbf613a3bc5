"""Where training runs: one interface, one implementation per environment.

Both run the same entrypoint (`python -m training.train`) through Dagster Pipes and hand back the
same results; only the place differs (a local subprocess, or a GPU pod on Kubernetes).
"""

from __future__ import annotations

import dagster as dg

# The entrypoint every trainer runs, a dagster-pipes program (training/train.py).
ENTRYPOINT = ["-m", "training.train"]


class Trainer(dg.ConfigurableResource):
    """Runs the training entrypoint for an asset and returns the Pipes invocation."""

    def train(self, context: dg.AssetExecutionContext, extras: dict, tracking_uri: str):
        raise NotImplementedError
