"""Alembic migrations for PULSE's database; they only ever add what is missing."""
