"""Every Dagster declaration of the code location; `definitions.py` assembles them. Nothing outside
this folder imports Dagster."""
