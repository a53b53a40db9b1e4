"""Adapters for the hub port(s)."""
