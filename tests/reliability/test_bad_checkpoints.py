"""Damaged checkpoints: resuming says which file, which line and what to do, and damages nothing.

A real run (on `test`, and on `local` with a tiny torch model) stops part-way or finishes; then
its ``checkpoints.jsonl`` is damaged as hypothesis chooses (a torn last line, a garbage line,
a missing field, a wrong type, an unknown field, bytes that are not UTF-8, an empty file) or its
newest saved state is (truncated, random bytes, empty, another torch file, gone), and the run is
started again with the same ``log_path``.

Decision, documented in ``tinkex_cookbook.train.checkpoints``: records are appended one line at a
time, so a last line cut off before its newline is what a crash mid-append leaves: that record was
never finished, and the run resumes from the one before it, ending exactly as an undamaged run. Any
other damage is an error, not a silent fall back to the last intact checkpoint: a complete line was
written whole, so a bad one means outside damage, and resuming from an earlier record would redo
steps and rewrite ``metrics.jsonl`` past it. So the resume fails with ``BlobStoreError`` naming the
file, the line(s), the last intact checkpoint and the fix, and every file already written keeps
every byte (``run.log`` only grows). Then the fix the message gives is applied, and the run must
finish exactly as an undamaged one.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults import CrashAfter, local_blobs, metric_rows
from tinkex_cookbook import ConfigError, Dpo, Runtime, SlBasic, StageError
from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError

CFG = {"batch_size": 8, "save_every": 2, "eval_every": 3, "test_size": 16, "num_epochs": 1, "log_path": "run",
       "renderer_name": "role_colon"}
SHORT = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_nothing_damaged(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """Every file keeps its bytes; ``run.log`` may only have lines appended; nothing new but nothing lost."""
    assert after.keys() == before.keys(), sorted(after.keys() ^ before.keys())
    for name, data in before.items():
        if name.endswith("run.log"):
            assert after[name].startswith(data)
        else:
            assert after[name] == data, name


def resume_error(root: Path, recipe: Any = SlBasic, cfg: dict[str, Any] = CFG, **ports: Any) -> BlobStoreError:
    """Start the run again; it must fail in its resume stage with a ``BlobStoreError``, writing nothing."""
    before = snapshot(root)
    with pytest.raises(StageError, match="resume") as caught:
        Runtime.run(recipe, cfg, manifest=ports.pop("manifest", "test"), ports={**local_blobs(root), **ports})
    assert isinstance(caught.value.__cause__, BlobStoreError), repr(caught.value.__cause__)
    assert_nothing_damaged(before, snapshot(root))
    return caught.value.__cause__


# --- checkpoints.jsonl on the `test` manifest -----------------------------------------------------

WRONG_VALUES: dict[str, list[Any]] = {
    "name": [5, None, ["a"]], "step": ["3", -1, 1.5, True, None], "epoch": ["0", -2, False],
    "state_path": [7, ["p"]], "final": ["yes", 1, None], "tokens_seen": [-5, "9"], "extra": [["x"], {"a": 1}, "p"],
}


@st.composite
def damages(draw: st.DrawFn, lines: int) -> tuple[str, int, Any]:
    """(kind, 1-based line, detail) for one way to damage a file of ``lines`` records."""
    kind = draw(st.sampled_from(["truncate_last", "garbage", "missing", "wrong_type", "unknown", "not_utf8",
                                 "not_object", "empty"]))
    line = lines if kind == "truncate_last" else draw(st.integers(1, lines))
    if kind == "truncate_last":
        detail: Any = draw(st.floats(0.01, 0.99))
    elif kind == "garbage":
        detail = draw(st.text(min_size=1, max_size=30).filter(lambda t: t.strip() and "\n" not in t and "\r" not in t))
    elif kind == "missing":
        detail = draw(st.sampled_from(["name", "step", "epoch"]))
    elif kind == "wrong_type":
        key = draw(st.sampled_from(sorted(WRONG_VALUES)))
        detail = (key, draw(st.sampled_from(WRONG_VALUES[key])))
    elif kind == "unknown":
        detail = draw(st.sampled_from(["stpe", "Step", "comment", ""]))
    elif kind == "not_utf8":
        detail = draw(st.binary(min_size=1, max_size=4).map(lambda b: b"\xff" + b.replace(b"\n", b"")))
    elif kind == "not_object":
        detail = draw(st.sampled_from(["[1, 2]", "3", "null", '"text"', "true"]))
    else:
        detail = draw(st.sampled_from([b"", b"\n", b"  \n\n"]))
    return kind, line, detail


def damage(path: Path, kind: str, line: int, detail: Any) -> int | None:
    """Apply one damage; return the line the error must name (None: the whole file is damaged)."""
    rows = path.read_bytes().split(b"\n")[:-1]
    index = line - 1
    if kind == "empty":
        path.write_bytes(detail)
        return None
    if kind == "truncate_last":
        rows[index] = rows[index][: max(1, int(len(rows[index]) * detail))]
    elif kind == "garbage":
        rows.insert(index, detail.encode())
    elif kind == "not_utf8":
        rows.insert(index, detail)
    elif kind == "not_object":
        rows.insert(index, detail.encode())
    else:
        record = json.loads(rows[index])
        if kind == "missing":
            del record[detail]
        elif kind == "wrong_type":
            record[detail[0]] = detail[1]
        else:
            record[detail] = 1
        rows[index] = json.dumps(record, sort_keys=True).encode()
    path.write_bytes(b"\n".join(rows) + (b"" if kind == "truncate_last" else b"\n"))
    return line


def crashed_run(root: Path, crash_at: int = 7) -> None:
    with pytest.raises(StageError, match="killed"):
        Runtime.run(SlBasic, CFG, manifest="test", ports={**local_blobs(root), "training_client": CrashAfter(crash_at)})


def check_damaged_record_file(root: Path, whole: Path, case: tuple[str, int, Any]) -> None:
    crashed_run(root)
    path = root / "run" / "checkpoints.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    named_line = damage(path, *case)
    if case[0] == "truncate_last":  # a torn append: skipped, so the run resumes from the record before
        finish_like_the_whole_run(root, whole)
        return
    message = str(resume_error(root))
    assert f"checkpoint file {path} is damaged" in message and "Fix:" in message, message
    if named_line is not None:
        assert f"line {named_line} " in message, message
        intact = [r for i, r in enumerate(records, start=1) if i != named_line or case[0] in (
            "garbage", "not_utf8", "not_object")]
        assert f"last intact checkpoint, {intact[-1]['name']!r} (step {intact[-1]['step']})" in message, message
        named = re.search(r"delete the damaged line\(s\) \(([\d, ]+)\)", message)
        assert named is not None, message
        bad = [int(n) for n in named[1].split(", ")]
        kept = [row for n, row in enumerate(path.read_bytes().split(b"\n"), start=1) if n not in bad]
        path.write_bytes(b"\n".join(kept))  # the fix the message gives
    else:
        assert "delete it to start the run over" in message
        path.unlink()  # the fix the message gives
    finish_like_the_whole_run(root, whole)


def finish_like_the_whole_run(root: Path, whole: Path) -> None:
    resumed = Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(root))
    assert metric_rows((root / "run" / "metrics.jsonl").read_text().splitlines()) == metric_rows(
        (whole / "run" / "metrics.jsonl").read_text().splitlines())
    assert resumed.state["final_checkpoint"] == json.loads(
        (whole / "run" / "checkpoints.jsonl").read_text().splitlines()[-1])["state_path"]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run, never interrupted: what every repaired run must end as."""
    root = tmp_path_factory.mktemp("whole")
    Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(root))
    return root


@given(damages(lines=3))
@settings(SHORT, max_examples=12)
def test_a_damaged_record_file_is_named_and_fixing_it_as_told_recovers_the_run(
    tmp_path_factory: pytest.TempPathFactory, whole_run: Path, case: tuple[str, int, Any]
) -> None:
    check_damaged_record_file(tmp_path_factory.mktemp("damaged"), whole_run, case)


@pytest.mark.long
@given(damages(lines=3))
@LONG
def test_a_damaged_record_file_long(
    tmp_path_factory: pytest.TempPathFactory, whole_run: Path, case: tuple[str, int, Any]
) -> None:
    check_damaged_record_file(tmp_path_factory.mktemp("damaged"), whole_run, case)


@pytest.mark.parametrize(
    ("kind", "detail", "words"),
    [
        ("missing", "step", ["line 2 has missing field 'step'"]),
        ("wrong_type", ("step", "3"), ["line 2 has field 'step' must be an integer >= 0, got '3'"]),
        ("unknown", "stpe", ["line 2 has unknown field 'stpe'", "'step'"]),
        ("not_utf8", b"\xff\xfe", ["line 2 is not UTF-8 text"]),
    ],
)
def test_each_damage_reads_clearly(tmp_path: Path, kind: str, detail: Any, words: list[str]) -> None:
    crashed_run(tmp_path)
    damage(tmp_path / "run" / "checkpoints.jsonl", kind, 3 if kind == "truncate_last" else 2, detail)
    message = str(resume_error(tmp_path))
    assert all(word in message for word in words), message


def test_a_finished_run_with_a_damaged_final_line_is_not_silently_redone(tmp_path: Path) -> None:
    """The last line is the final checkpoint: falling back would retrain the last steps over good files."""
    Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path))
    path = tmp_path / "run" / "checkpoints.jsonl"
    lines = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(b"\n".join([*lines[:-1], lines[-1][:-30]]) + b"\n")
    assert "'000010' (step 10)" in str(resume_error(tmp_path))


def test_a_torn_final_record_is_skipped_and_the_run_ends_as_an_undamaged_one(tmp_path: Path,
                                                                             whole_run: Path) -> None:
    """A crash mid-append of the final record: the run resumes from the record before and ends the same."""
    Runtime.run(SlBasic, CFG, manifest="test", ports=local_blobs(tmp_path))
    path = tmp_path / "run" / "checkpoints.jsonl"
    path.write_bytes(path.read_bytes()[:-30])
    finish_like_the_whole_run(tmp_path, whole_run)
    assert path.read_bytes().endswith(b"\n") and len(path.read_bytes().splitlines()) == len(
        (whole_run / "run" / "checkpoints.jsonl").read_bytes().splitlines())


def test_a_dpo_checkpoint_without_its_reference_path_names_the_file(tmp_path: Path) -> None:
    cfg = {"renderer_name": "role_colon", "batch_size": 4, "test_size": 8, "eval_every": 0, "save_every": 2,
           "log_path": "run"}
    Runtime.run(Dpo, cfg, manifest="test", ports=local_blobs(tmp_path))
    path = tmp_path / "run" / "checkpoints.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:-1], json.dumps({**json.loads(lines[-1]), "extra": {}})]) + "\n")
    assert "'reference_path'" in str(resume_error(tmp_path, Dpo, cfg))


SAMPLER_RECIPES = {
    "rl_basic": {"env": "digits", "num_steps": 3, "batch_size": 2, "group_size": 2, "max_tokens": 4},
    "distillation": {"teacher_model": "meta-llama/Llama-3.2-1B", "num_steps": 3, "batch_size": 2, "group_size": 2,
                     "max_tokens": 4, "eval_every": 0},
}
CRASH_IN_STEP_3 = {"rl_basic": 2, "distillation": 3}
"""The optimizer step that falls in step 3: on `test`, RL's step 2 has no signal (every group is skipped)."""


@pytest.mark.parametrize("recipe", sorted(SAMPLER_RECIPES))
@pytest.mark.parametrize("finished", [False, True])
def test_a_checkpoint_without_its_sampler_path_names_the_file(tmp_path: Path, recipe: str, finished: bool) -> None:
    """RL and distillation sample from the weights the record names; without them a resume cannot go on."""
    cfg = {**SAMPLER_RECIPES[recipe], "renderer_name": "role_colon", "save_every": 2, "log_path": "run"}
    if finished:
        Runtime.run(recipe, cfg, manifest="test", ports=local_blobs(tmp_path))
    else:
        with pytest.raises(StageError, match="killed"):
            Runtime.run(recipe, cfg, manifest="test", ports={**local_blobs(tmp_path), "training_client": CrashAfter(
                CRASH_IN_STEP_3[recipe])})
    path = tmp_path / "run" / "checkpoints.jsonl"
    records = [json.loads(row) for row in path.read_text().splitlines()]
    assert records[-1]["step"] == (3 if finished else 2)
    records[-1]["extra"] = {k: v for k, v in records[-1]["extra"].items() if k != "sampler_path"}
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    message = str(resume_error(tmp_path, recipe, cfg))
    assert all(w in message for w in ["'sampler_path'", str(path), f"step {records[-1]['step']}", "Fix:"]), message


def test_an_on_policy_rl_checkpoint_is_not_resumed_off_policy(tmp_path: Path) -> None:
    """An on-policy run records no ``prefetch_sampler_path`` (it never prefetches); switching ``off_policy_steps``
    on at resume is a changed config, refused before anything in the folder is touched."""
    cfg = {**SAMPLER_RECIPES["rl_basic"], "renderer_name": "role_colon", "save_every": 2, "log_path": "run"}
    with pytest.raises(StageError, match="killed"):
        Runtime.run("rl_basic", cfg, manifest="test", ports={
            **local_blobs(tmp_path), "training_client": CrashAfter(CRASH_IN_STEP_3["rl_basic"])})
    assert "prefetch_sampler_path" not in json.loads(
        (tmp_path / "run" / "checkpoints.jsonl").read_text().splitlines()[-1])["extra"]
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="off_policy_steps: saved 0, now 1"):
        Runtime.run("rl_basic", {**cfg, "off_policy_steps": 1}, manifest="test", ports=local_blobs(tmp_path))
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


# --- saved state on the `local` manifest ----------------------------------------------------------

LOCAL = {"model_name": "tiny-llama3", "dataset": "chitchat", "batch_size": 2, "max_length": 48, "lora_rank": 2,
         "test_size": 2, "train_size": 8, "eval_every": 0, "save_every": 2, "log_path": "run"}
ONE_THREAD = {"training_client": {"adapter": "local_torch", "threads": 1}}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run on the local torch backend: checkpoints at steps 2 and 4, then the final one."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("local")
    Runtime.run(SlBasic, LOCAL, manifest="local", ports={**local_blobs(root), **ONE_THREAD})
    return root


def copy_run(original: Path, root: Path) -> Path:
    """A copy of a run folder, as if it had always been at ``root``: its ``manifest.json`` names the
    blob root, and every start rewrites it, so the copy's must already say ``root``."""
    shutil.copytree(original, root)
    manifest = root / "run" / "manifest.json"
    manifest.write_text(manifest.read_text().replace(str(original), str(root)))
    return root


def newest_state(root: Path) -> tuple[Path, str]:
    """The file of the last record's saved state, and its ``local://`` path."""
    last = json.loads((root / "run" / "checkpoints.jsonl").read_text().splitlines()[-1])
    return root / last["state_path"].removeprefix("local://"), last["state_path"]


def other_torch_file() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, buffer)
    return buffer.getvalue()


def check_damaged_state(root: Path, corrupt: Any) -> str:
    state, path = newest_state(root)
    if corrupt is None:
        state.unlink()
    else:
        state.write_bytes(corrupt(state.read_bytes()))
    before = snapshot(root)
    with pytest.raises(StageError, match="resume") as caught:
        Runtime.run(SlBasic, LOCAL, manifest="local", ports={**local_blobs(root), **ONE_THREAD})
    error = caught.value.__cause__
    assert isinstance(error, BlobNotFoundError if corrupt is None else BlobStoreError), repr(error)
    message = str(error)
    assert repr(path) in message and str(state) in message and "checkpoints.jsonl" in message, message
    assert_nothing_damaged(before, snapshot(root))
    return message


CORRUPTIONS = {
    "empty": lambda data: b"",
    "random bytes": lambda data: bytes(range(256)) * 8,
    "half": lambda data: data[: len(data) // 2],
    "another torch file": lambda data: other_torch_file(),
    "missing": None,
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_a_damaged_newest_state_is_named_with_the_way_back(tmp_path: Path, local_run: Path, name: str) -> None:
    root = copy_run(local_run, tmp_path / "copy")
    message = check_damaged_state(root, CORRUPTIONS[name])
    assert "resume from the checkpoint before it" in message


@given(st.floats(0.0, 0.999))
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_state_cut_anywhere_is_named(tmp_path_factory: pytest.TempPathFactory, local_run: Path, cut: float) -> None:
    root = copy_run(local_run, tmp_path_factory.mktemp("cut") / "copy")
    check_damaged_state(root, lambda data: data[: int(len(data) * cut)])


@pytest.mark.long
@given(st.floats(0.0, 0.999), st.binary(min_size=1, max_size=64))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_state_cut_or_overwritten_anywhere_long(
    tmp_path_factory: pytest.TempPathFactory, local_run: Path, cut: float, junk: bytes
) -> None:
    root = copy_run(local_run, tmp_path_factory.mktemp("cut") / "copy")
    check_damaged_state(root, lambda data: data[: int(len(data) * cut)] + junk)


def test_following_the_hint_after_a_damaged_state_finishes_with_the_same_weights(
    tmp_path: Path, local_run: Path
) -> None:
    """Drop the damaged checkpoint's line, as the error says: the run resumes one checkpoint back and its
    final weights are bit-identical to the undamaged run's."""
    import torch

    from tinkex_cookbook.adapters.training.local_checkpoints import decode_checkpoint

    root = copy_run(local_run, tmp_path / "copy")
    check_damaged_state(root, CORRUPTIONS["half"])
    path = root / "run" / "checkpoints.jsonl"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-1]))
    result = Runtime.run(SlBasic, LOCAL, manifest="local", ports={**local_blobs(root), **ONE_THREAD})
    first = json.loads((local_run / "run" / "checkpoints.jsonl").read_text().splitlines()[-1])["sampler_path"]
    again = decode_checkpoint((root / result.state["final_sampler_path"].removeprefix("local://")).read_bytes())["lora"]
    original = decode_checkpoint((local_run / first.removeprefix("local://")).read_bytes())["lora"]
    assert again.keys() == original.keys() and all(torch.equal(again[k], original[k]) for k in original)


# --- checksums of the saved files (local) ----------------------------------------------------------


def records_of(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "run" / "checkpoints.jsonl").read_text().splitlines()]


def flip_tensor_bytes(file: Path, count: int = 64) -> None:
    """XOR ``count`` bytes in the middle of a safetensors file's tensor data: the file still decodes."""
    data = bytearray(file.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    at = start + (len(data) - start) // 2
    data[at : at + count] = bytes(b ^ 0xFF for b in data[at : at + count])
    file.write_bytes(bytes(data))


def local_resume_error(root: Path) -> BlobStoreError:
    return resume_error(root, SlBasic, LOCAL, manifest="local", **ONE_THREAD)


def test_every_saved_file_has_its_sha256_in_the_record(local_run: Path) -> None:
    import hashlib

    records = records_of(local_run)
    assert [r["name"] for r in records] == ["000002", "000004", "final"]
    for record in records:
        paths = [p for p in (record["state_path"], record.get("sampler_path")) if p]
        assert sorted(record["sha256"]) == sorted(paths), record
        for path in paths:
            data = (local_run / path.removeprefix("local://")).read_bytes()
            assert record["sha256"][path] == hashlib.sha256(data).hexdigest()


def test_flipped_bytes_in_the_newest_state_stop_the_resume_naming_the_checkpoint_before_it(
    tmp_path: Path, local_run: Path
) -> None:
    """64 bytes XORed inside a tensor still decode: without the checksum the run resumed from wrong weights."""
    from tinkex_cookbook.adapters.training.local_checkpoints import decode_checkpoint

    root = copy_run(local_run, tmp_path / "copy")
    state, path = newest_state(root)
    flip_tensor_bytes(state)
    decode_checkpoint(state.read_bytes())  # the damage is invisible to the decoder
    error = local_resume_error(root)
    message = str(error)
    assert type(error) is BlobStoreError
    assert all(words in message for words in [
        f"checkpoint at {path!r} is corrupt ({state}, ", "sha256", "checkpoint 'final' (step 4), line 3 of",
        "checkpoints.jsonl", "Fix: restore the file from a copy",
        ("delete line 3 of it to resume from the checkpoint before it, '000004' (step 4), whose files match their "
         "checksums")]), message


@given(st.floats(0.0, 0.999), st.integers(1, 64))
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bytes_flipped_anywhere_in_the_newest_state_are_named(
    tmp_path_factory: pytest.TempPathFactory, local_run: Path, where: float, count: int
) -> None:
    """Header or tensor data, one byte or 64: the file no longer matches the sha256 its record holds."""
    root = copy_run(local_run, tmp_path_factory.mktemp("flip") / "copy")
    state, path = newest_state(root)
    data = bytearray(state.read_bytes())
    at = int(len(data) * where)
    data[at : at + count] = bytes(b ^ 0x5A for b in data[at : at + count])
    state.write_bytes(bytes(data))
    message = str(local_resume_error(root))
    assert f"checkpoint at {path!r} is corrupt" in message and "'000004' (step 4)" in message, message


def test_the_checkpoint_named_as_the_way_back_has_intact_files(tmp_path: Path, local_run: Path) -> None:
    """With the two newest states damaged, the error skips both and the fix it gives finishes the run."""
    root = copy_run(local_run, tmp_path / "copy")
    records = records_of(root)
    for record in records[1:]:
        flip_tensor_bytes(root / record["state_path"].removeprefix("local://"))
    message = str(local_resume_error(root))
    assert "delete lines 2-3 of it to resume from the checkpoint before it, '000002' (step 2)" in message, message
    path = root / "run" / "checkpoints.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    Runtime.run(SlBasic, LOCAL, manifest="local", ports={**local_blobs(root), **ONE_THREAD})
    assert [r["name"] for r in records_of(root)] == ["000002", "000004", "final"]


def test_a_missing_sampler_file_of_the_final_record_stops_the_resume(tmp_path: Path, local_run: Path) -> None:
    root = copy_run(local_run, tmp_path / "copy")
    last = records_of(root)[-1]
    (root / last["sampler_path"].removeprefix("local://")).unlink()
    error = local_resume_error(root)
    assert isinstance(error, BlobNotFoundError) and repr(last["sampler_path"]) in str(error), error
    assert "'000004' (step 4)" in str(error)


def test_records_without_checksums_still_load_and_a_cut_state_names_the_checkpoint_before_it(
    tmp_path: Path, local_run: Path
) -> None:
    """Records written before checksums resume unchecked; a state that does not decode still names the way back."""
    root = copy_run(local_run, tmp_path / "copy")
    path = root / "run" / "checkpoints.jsonl"
    old = [{k: v for k, v in record.items() if k != "sha256"} for record in records_of(root)]
    path.write_text("".join(json.dumps(record) + "\n" for record in old))
    Runtime.run(SlBasic, LOCAL, manifest="local", ports={**local_blobs(root), **ONE_THREAD})  # finished: nothing to do
    state, _ = newest_state(root)
    state.write_bytes(state.read_bytes()[:1000])
    message = str(local_resume_error(root))
    assert "is corrupt or not a checkpoint" in message and message.count("Fix:") == 1, message
    assert message.endswith("delete line 3 of it to resume from the checkpoint before it, '000004' (step 4)"), message


def test_chat_and_export_of_a_flipped_checkpoint_name_an_intact_one(tmp_path: Path, local_run: Path) -> None:
    """Weights are checked before a run's checkpoint is opened to chat, sample, evaluate or export."""
    from tinkex_cookbook.runtime.targets import open_sampler, resolve_target

    root = copy_run(local_run, tmp_path / "copy")
    last = records_of(root)[-1]
    flip_tensor_bytes(root / last["sampler_path"].removeprefix("local://"))
    with pytest.raises(BlobStoreError) as caught, open_sampler(resolve_target(str(root / "run"))):
        pass
    message = str(caught.value)
    assert all(words in message for words in [
        f"checkpoint at {last['sampler_path']!r} is corrupt", "checkpoint 'final' (step 4)", "checkpoints.jsonl",
        "--checkpoint '000004' (step 4)"]), message


# --- records checked against the run (`test` manifest) ----------------------------------------------


def edit_last(root: Path, **changes: Any) -> None:
    path = root / "run" / "checkpoints.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[-1].update(changes)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"step": 1000000}, "line 3 has field 'step' 1000000, beyond the run's 10 planned steps"),
        ({"step": 11}, "line 3 has field 'step' 11, beyond the run's 10 planned steps"),
        ({"step": 3}, "line 3 has field 'step' 3, not after line 2's step 4"),
        ({"step": 4}, "line 3 has field 'step' 4, not after line 2's step 4"),
        ({"step": 2, "final": True}, "line 3 has field 'step' 2, not after line 2's step 4"),
        ({"state_path": None}, "line 3 has field 'state_path' None, but the checkpoint a run resumes from must name"),
        ({"state_path": ""}, "line 3 has field 'state_path' '', but"),
        ({"sha256": {"noop://elsewhere": "0" * 64}}, "line 3 has field 'sha256' names 'noop://elsewhere', which is none"),
        ({"sha256": {"x": "not hex"}}, "line 3 has field 'sha256' must be an object of paths to sha256 digests"),
    ],
)
def test_a_record_that_does_not_fit_the_run_is_named_with_the_way_back(
    tmp_path: Path, changes: dict[str, Any], words: str
) -> None:
    """A record edited to a step beyond the run made a 'final' checkpoint after 6 trained steps; one without a
    state path failed inside the backend. Both now name the file, line, field, value and the fix."""
    crashed_run(tmp_path)
    edit_last(tmp_path, **changes)
    message = str(resume_error(tmp_path))
    assert words in message and "Fix:" in message and "'000004' (step 4)" in message, message


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("[" * 5000, "line 4 nests arrays or objects too deeply to read"),
        ('{"name": "x", "step": ' + "9" * 5000 + ', "epoch": 0}', "line 4 holds a value that cannot be read"),
        ('{"name": "x", "step": 1e999, "epoch": 0}', "line 4 has field 'step' must be an integer >= 0"),
    ],
)
def test_hostile_json_in_a_record_is_a_damaged_line(tmp_path: Path, line: str, words: str) -> None:
    crashed_run(tmp_path)
    path = tmp_path / "run" / "checkpoints.jsonl"
    path.write_text(path.read_text() + line + "\n")
    message = str(resume_error(tmp_path))
    assert words in message and "'000006' (step 6)" in message, message


def test_with_no_intact_checkpoint_before_it_the_fix_is_to_start_over(tmp_path: Path, local_run: Path) -> None:
    root = copy_run(local_run, tmp_path / "copy")
    for record in records_of(root):
        flip_tensor_bytes(root / record["state_path"].removeprefix("local://"))
    message = str(local_resume_error(root))
    assert "to start the run over (no checkpoint before it has intact files;" in message, message
