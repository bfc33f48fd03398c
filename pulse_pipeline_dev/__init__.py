"""The local demo and benchmark of pulse_pipeline: a simulated AWS, never used in production."""
