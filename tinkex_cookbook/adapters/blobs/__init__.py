"""Blob store adapters: in-memory (noop) and local-filesystem."""
