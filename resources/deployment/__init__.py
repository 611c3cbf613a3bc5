"""Where a release is served: the interface (`deployer.py`), local MLServer processes (`local.py`, which runs
`model_server.py`) and Seldon on Kubernetes (`seldon/`); and the release on top of any of them
(`release.py`: rollout steps, post-deploy gates, the rollback; `rollout.py`: a step's replayed traffic and
its verdict)."""
