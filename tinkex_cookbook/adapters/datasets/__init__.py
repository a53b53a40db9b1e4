"""Dataset store adapters: in-memory lists and local JSON/JSONL files."""
