"""How to reach things: warehouse, landing zone, dbt; see environments.py for the wiring."""
