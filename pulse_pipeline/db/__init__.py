"""PULSE's database: the tables pulse_pipeline reads and writes, their migrations, and URL handling."""
