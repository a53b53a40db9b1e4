"""Registered pipeline stages. Importing this package registers the built-in ones."""

from tinkex_cookbook.pipeline.stages import distillation, dpo, rl, supervised  # noqa: F401
