"""Monitoring without Dagster: feature and prediction drift, live performance, retrain decisions.

Pure functions over polars frames and plain values, so a sensor or an asset can call them and a test
can check every threshold with real data and no running platform.
"""
