"""Reliability tests: crash-anywhere resume, faults at the edges, bad input, secrets, concurrency."""
