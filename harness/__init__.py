"""Runs the code location in process, as the demo, `assay build`, the simulation, benchmarks and tests do:
materialize stages (`runs.py`), land replayed days (`replay.py`), tick sensors (`ticks.py`) and replay a
stretch of days through them (`simulation.py`)."""
