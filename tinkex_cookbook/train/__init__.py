"""Training domain: renderers, datum building, schedules, checkpoints. Speaks only to ports."""
