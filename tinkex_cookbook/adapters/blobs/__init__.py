"""Blob store adapters: in-memory (noop), local filesystem, and S3 (or any S3-compatible server)."""
