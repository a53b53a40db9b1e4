"""Adapters for the embeddings port(s)."""
