"""Datasets shipped with the package (see docs/datasets.md for sources and licenses)."""
