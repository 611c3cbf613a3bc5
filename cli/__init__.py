"""The `assay` command (`main.py`) and what its commands do: the demo and build (`demo.py`), status
(`status.py`) and the audit (`audit.py`, rendered by `audit_render.py`)."""
