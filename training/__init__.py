"""Model training for tabular use cases: two model families behind one interface, and their plots.

Runs inside the training process (a Pipes subprocess or pod), so nothing here imports Dagster.
"""
