"""A run folder's append-only files (``metrics.jsonl``, ``run.log``) damaged from outside: a resume cuts a damaged
end with a warning and refuses a damaged middle, naming the file and line; browsing never crashes on one bad folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.faults import TIMING, local_blobs
from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.cli_runs import runs_app
from tinkex_cookbook.errors import BlobStoreError
from tinkex_cookbook.line_files import Kind, parse_lines
from tinkex_cookbook.runtime import RunResult

CONFIG = {"save_every": 2, "num_epochs": 2, "eval_every": 0, "log_path": "run"}
"""Eight noop steps, a checkpoint every two."""
DAMAGED_LINES = {
    "not UTF-8": b"\xff\xfe{}",
    "garbage": b"garbage",
    "an array": b"[1,2]",
    "deep nesting": b"[" * 100_000,
    "a 5000-digit number": b'{"step": ' + b"7" * 5000 + b"}",
    "NUL bytes": b"\x00" * 64,
}
runner = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run's folder, to copy from."""
    root = tmp_path_factory.mktemp("finished")
    Runtime.run(SlBasic, CONFIG, manifest="test", ports=local_blobs(root))
    return root / "run"


def stopped_at_step_4(finished: Path, root: Path) -> Path:
    """A copy of the finished run as a run killed after its step-4 checkpoint leaves it: metric rows and log
    lines to step 8, checkpoint records to step 4."""
    folder = root / "run"
    shutil.copytree(finished, folder)
    records = (folder / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "checkpoints.jsonl").write_bytes(b"".join(records[:2]))
    return folder


def resume(root: Path) -> RunResult:
    return Runtime.run(SlBasic, CONFIG, manifest="test", ports=local_blobs(root))


def rows(folder: Path) -> list[dict[str, object]]:
    """Every line strictly parsed: bytes, UTF-8 and JSON objects, or the test fails."""
    lines = (folder / "metrics.jsonl").read_bytes().decode("utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", DAMAGED_LINES, ids=list(DAMAGED_LINES))
def test_a_damaged_end_of_metrics_is_cut_with_a_warning_and_the_run_resumes(
    finished: Path, tmp_path: Path, damage: str
) -> None:
    folder = stopped_at_step_4(finished, tmp_path)
    bad = DAMAGED_LINES[damage] + b"\n"
    with (folder / "metrics.jsonl").open("ab") as handle:
        handle.write(bad + bad + b'{"torn": ')  # two damaged lines, then a torn tail
    result = resume(tmp_path)
    assert rows(folder) == rows(finished)
    warnings = [e.data["message"] for e in result.events if e.name == "workflow.warning"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{folder / 'metrics.jsonl'}: cut 2 damaged lines at its end "
                                  f"({2 * len(bad) + 9} bytes) after line 10")
    assert f"warning: {warnings[0]}" in (folder / "run.log").read_text()


@pytest.mark.parametrize("torn", [b'{"event": "train.st', b"\x00" * 4096], ids=["a cut row", "NUL bytes"])
def test_a_torn_end_is_cut_even_when_the_resume_appends_no_row(finished: Path, tmp_path: Path, torn: bytes) -> None:
    """A run stopped after its last step's checkpoint, before its final record: resuming writes no metric row,
    so the torn end is cut by the resume itself, not left for an append that never comes."""
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    records = (folder / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "checkpoints.jsonl").write_bytes(b"".join(records[:-1]))
    with (folder / "metrics.jsonl").open("ab") as handle:
        handle.write(torn)
    result = resume(tmp_path)
    assert rows(folder) == rows(finished)
    assert not [e for e in result.events if e.name == "workflow.warning"]


def test_a_damaged_end_of_run_log_is_cut_with_a_warning(finished: Path, tmp_path: Path) -> None:
    folder = stopped_at_step_4(finished, tmp_path)
    kept = (folder / "run.log").read_bytes()
    with (folder / "run.log").open("ab") as handle:
        handle.write(b"\xc3\x28 not UTF-8\n")
    result = resume(tmp_path)
    log = (folder / "run.log").read_bytes()
    assert log.startswith(kept) and b"\xc3\x28" not in log
    log.decode("utf-8")
    warning = next(e.data["message"] for e in result.events if e.name == "workflow.warning")
    assert warning.startswith(f"{folder / 'run.log'}: cut 1 damaged line at its end (13 bytes)")
    assert f"line {len(kept.splitlines()) + 1} is not UTF-8 text" in warning


@pytest.mark.parametrize("name", ["metrics.jsonl", "run.log"])
@pytest.mark.parametrize("damage", ["not UTF-8", "garbage", "an array", "deep nesting"])
def test_a_damaged_middle_stops_the_resume_naming_file_line_and_fix_and_changes_nothing(
    finished: Path, tmp_path: Path, name: str, damage: str
) -> None:
    folder = stopped_at_step_4(finished, tmp_path)
    lines = (folder / name).read_bytes().splitlines(keepends=True)
    lines[2] = DAMAGED_LINES[damage] + b"\n"
    (folder / name).write_bytes(b"".join(lines))
    if name == "run.log" and damage != "not UTF-8":
        resume(tmp_path)  # any UTF-8 text is a log line
        return
    before = files(folder)
    with pytest.raises(BlobStoreError) as raised:
        resume(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{folder / name} line 3 ")
    assert "whole lines follow it" in message and "restore the file from a copy, or delete line 3" in message
    assert files(folder) == before


def test_metric_rows_of_a_clean_resume_are_untouched(finished: Path, tmp_path: Path) -> None:
    folder = stopped_at_step_4(finished, tmp_path)
    result = resume(tmp_path)
    assert rows(folder) == rows(finished)
    assert "workflow.warning" not in [e.name for e in result.events]


@pytest.fixture
def browsed(finished: Path, tmp_path: Path) -> Iterator[Path]:
    """Four copies of the finished run: good, a damaged end (deep nesting), a damaged middle (not UTF-8) in
    metrics.jsonl, and one in run.log."""
    for name in ("good", "tail", "middle", "log_middle"):
        shutil.copytree(finished, tmp_path / name)
    with (tmp_path / "tail" / "metrics.jsonl").open("ab") as handle:
        handle.write(DAMAGED_LINES["deep nesting"] + b"\n")
    for name, file in (("middle", "metrics.jsonl"), ("log_middle", "run.log")):
        lines = (tmp_path / name / file).read_bytes().splitlines(keepends=True)
        lines[1] = b"\xff\xfe\n"
        (tmp_path / name / file).write_bytes(b"".join(lines))
    yield tmp_path


def test_runs_list_skips_a_damaged_folder_and_says_which_and_why(browsed: Path) -> None:
    result = runner.invoke(runs_app, ["list", "--root", str(browsed)])
    assert result.exit_code == 0, result.output
    listed = sorted(line.split()[0] for line in result.stdout.splitlines()[1:])
    assert listed == ["good", "tail"]
    err = result.stderr.splitlines()
    assert f"skipped middle: {browsed / 'middle' / 'metrics.jsonl'} line 2 is not UTF-8 text" in "\n".join(err)
    assert f"skipped log_middle: {browsed / 'log_middle' / 'run.log'} line 2 is not UTF-8 text" in "\n".join(err)
    assert any(line.startswith(f"note: tail: {browsed / 'tail' / 'metrics.jsonl'}: ignored 1 damaged line")
               and "nests arrays or objects too deeply" in line for line in err)
    assert "Traceback" not in result.output


def test_runs_list_survives_a_lock_it_cannot_read(browsed: Path) -> None:
    (browsed / "good" / "run.lock").write_text('{"owner": "x", "host": "h", "pid": 1, "started": 0, '
                                                '"heartbeat": 1e999}')  # an infinite heartbeat: no date
    result = runner.invoke(runs_app, ["list", "--root", str(browsed)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert sorted(line.split()[0] for line in result.stdout.splitlines()[1:]) == ["good", "tail"]


@pytest.mark.parametrize("command", [["show"], ["plot"], ["compare", "good"]])
def test_show_plot_and_compare_of_a_damaged_folder_are_one_line_errors(browsed: Path, command: list[str]) -> None:
    result = runner.invoke(runs_app, [*command, "middle", "--root", str(browsed)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {browsed / 'middle' / 'metrics.jsonl'} line 2 is not UTF-8 text")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_show_of_a_folder_with_a_damaged_end_shows_it_with_a_note(browsed: Path) -> None:
    result = runner.invoke(runs_app, ["show", "tail", "--root", str(browsed)])
    assert result.exit_code == 0 and "last metrics (train.step, step 8)" in result.stdout
    assert result.stderr.startswith(f"note: {browsed / 'tail' / 'metrics.jsonl'}: ignored 1 damaged line")


good_row = st.dictionaries(st.sampled_from("abc"), st.integers(-5, 5), max_size=2).map(
    lambda row: json.dumps(row).encode())
bad_row = st.sampled_from(list(DAMAGED_LINES.values()))


@given(st.lists(st.tuples(st.booleans(), good_row, bad_row), max_size=12), st.binary(max_size=8))
def test_damage_is_a_tail_when_no_whole_row_follows_it_else_a_middle(
    lines: list[tuple[bool, bytes, bytes]], torn: bytes
) -> None:
    data = b"".join((good if is_good else bad) + b"\n" for is_good, good, bad in lines) + torn.replace(b"\n", b"")
    found = parse_lines(data, Kind.ROWS, "m.jsonl")
    goods = [n for n, (is_good, _, _) in enumerate(lines, 1) if is_good]
    bads = [n for n, (is_good, _, _) in enumerate(lines, 1) if not is_good]
    assert found.items == [json.loads(good) for is_good, good, _ in lines if is_good]
    assert [b.number for b in found.middle] == [n for n in bads if goods and n < goods[-1]]
    assert [b.number for b in found.tail] == [n for n in bads if not goods or n > goods[-1]]
    assert (found.middle_error() is None) == (not found.middle)
    kept = data[: found.good_bytes]
    cut = parse_lines(kept, Kind.ROWS, "m.jsonl")  # what a resume keeps: the same rows, no damaged end
    assert cut.items == found.items and cut.middle == found.middle and not cut.tail


def test_show_of_a_folder_whose_spec_cannot_be_read_names_it(browsed: Path) -> None:
    (browsed / "good" / "spec.json").write_bytes(DAMAGED_LINES["deep nesting"])
    result = runner.invoke(runs_app, ["show", "good", "--root", str(browsed)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "unreadable: spec.json nests arrays or objects too deeply to read" in result.stdout
