"""Shipped manifests (YAML), read with importlib.resources so they work from a wheel."""
