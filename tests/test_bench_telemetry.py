"""The telemetry bench runs: both ways produce the same files, and appending writes each byte once."""

from __future__ import annotations

from pathlib import Path

from bench.telemetry import CountingStore, drive, table
from tinkex_cookbook.run_folder import CHECKPOINTS, METRICS, RunFolder


def test_the_bench_prints_both_ways_side_by_side() -> None:
    lines = table([40, 60], save_every=20, old_max=40)
    assert len(lines) == 4 and lines[2].split()[0] == "40" and "skipped" in lines[3]


def test_appending_writes_each_byte_once_and_the_same_files_as_rewriting(tmp_path: Path) -> None:
    new, old = CountingStore(tmp_path / "new"), CountingStore(tmp_path / "old")
    _, written, produced = drive(new, 100, 20, old=False)
    _, old_written, old_produced = drive(old, 100, 20, old=True)
    assert written == produced and old_written > 3 * old_produced
    for name in (METRICS, CHECKPOINTS):
        assert RunFolder(new, "run").read(name) == RunFolder(old, "run").read(name)
