"""The shipped evaluators; each module registers one under its name in ``EVALUATORS``."""
