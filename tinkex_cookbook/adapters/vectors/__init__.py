"""Adapters for the vectors port(s)."""
