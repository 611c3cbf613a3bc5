"""Where training runs: the interface (`trainer.py`), a local subprocess (`local.py`) and a Kubernetes pod
(`kubernetes.py`, whose pod `pod.py` builds)."""
