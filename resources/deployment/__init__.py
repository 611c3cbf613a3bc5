"""Where a release is served: the interface (`deployer.py`), local MLServer processes (`local.py`, which runs
`model_server.py`) and Seldon on Kubernetes (`seldon/`)."""
