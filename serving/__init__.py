"""Code that runs inside the model server (MLServer), not in Dagster."""
