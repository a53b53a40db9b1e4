"""Adapters for the llm port(s)."""
