"""Hostile dataset files: every way a file can be broken is one ``DatasetError`` naming the file, the row and
the problem, from the ``local`` store (held whole or streamed) and the ``hf`` store reading local files.

Broken means: bytes that are not UTF-8, a byte order mark in the middle, an empty file or one of blank lines,
nesting deeper than the parser can follow, an integer past the parser's digit limit, and the values
``json.loads`` lets through that break training later: a lone surrogate (``"\\ud800"``, no UTF-8 encoding),
``NaN``/``Infinity`` literals, an integer too large for a float. A hypothesis test corrupts a valid file at
random (byte flips, truncation, inserted nesting, surrogates, literals) and reads it through a store and the
row formats: a ``DatasetError`` is the only error that may come out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinkex_cookbook.adapters.datasets.local import LocalDatasetStore
from tinkex_cookbook.adapters.datasets.memory import MemoryDatasetStore
from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.json_values import may_hold_unusable, unusable
from tinkex_cookbook.train.formats import RowFormat, resolve_format, rows_to_datums
from tinkex_cookbook.train.renderers import TrainOnWhat, get_renderer, renderer_names
from tinkex_cookbook.train.tokenizers import ByteTokenizer

GOOD_ROW = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
GOOD = (json.dumps(GOOD_ROW) + "\n").encode()
DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE = b"9" * 5000
SURROGATE_ROW = b'{"messages": [{"role": "user", "content": "a\\ud800"}, {"role": "assistant", "content": "b"}]}'
NAN_ROW = b'{"messages": [{"role": "user", "content": "a", "weight": NaN}, {"role": "assistant", "content": "b"}]}'

JSONL_CASES = {
    # name: (file bytes, words the message holds besides the file's path)
    "not UTF-8": (GOOD + b'{"text": "caf\xe9"}\n', ["line 2", "not UTF-8"]),
    "BOM mid-file": (GOOD + b"\xef\xbb\xbf" + GOOD, ["line 2", "BOM"]),
    "empty": (b"", ["no rows"]),
    "blank lines only": (b"\n  \n\t\n", ["no rows"]),
    "deep nesting": (GOOD + b'{"a": ' + DEEP + b"}\n", ["line 2", "too deeply"]),
    "5000-digit integer": (GOOD + b'{"a": ' + HUGE + b"}\n", ["line 2", "cannot be read"]),
    "lone surrogate": (GOOD + SURROGATE_ROW + b"\n", ["line 2", "messages[0].content", "lone surrogate"]),
    "NaN literal": (GOOD + NAN_ROW + b"\n", ["line 2", "messages[0].weight", "NaN"]),
    "Infinity literal": (GOOD + b'{"score": -Infinity}\n', ["line 2", "score", "NaN or Infinity"]),
    "float-overflowing integer": (GOOD + b'{"id": 1' + b"0" * 400 + b"}\n", ["line 2", "id", "401 digits"]),
    "surrogate in a key": (GOOD + b'{"\\udfff": 1}\n', ["line 2", "a key", "lone surrogate"]),
}

JSON_CASES = {
    "not UTF-8": (b'[\n{"text": "ok"},\n{"text": "caf\xe9"}]', ["line 3, byte 14", "not UTF-8"]),
    "empty": (b"  \n", ["is empty"]),
    "empty list": (b"[]", ["no rows"]),
    "deep nesting": (b'[\n{"a": "[[[["},\n{"a": ' + DEEP + b"}\n]", ["too deeply", "deepest at line 3"]),
    "5000-digit integer": (b'[{"a": ' + HUGE + b"}]", ["cannot be read"]),
    "lone surrogate": (b"[" + GOOD.strip() + b", " + SURROGATE_ROW + b"]", ["row 1", "messages[0].content",
                                                                          "lone surrogate"]),
    "NaN literal": (b"[" + NAN_ROW + b"]", ["row 0", "messages[0].weight", "NaN"]),
}


def check(message: str, words: list[str]) -> None:
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def local_rows(path: Path) -> list[Any]:
    return LocalDatasetStore(path.parent).load_dataset(path.name).to_list()


def local_streamed(path: Path) -> list[Any]:
    return [row for row in LocalDatasetStore(path.parent).load_dataset(path.name, streaming=True)]


def hf_rows(path: Path) -> list[Any]:
    from tinkex_cookbook.adapters.datasets.hf import HFDatasetStore

    return HFDatasetStore(cache_dir=str(path.parent / "hf_cache")).load_dataset(str(path)).to_list()


def hf_streamed(path: Path) -> list[Any]:
    from tinkex_cookbook.adapters.datasets.hf import HFDatasetStore

    return [row for row in HFDatasetStore(cache_dir=str(path.parent / "hf_cache")).load_dataset(str(path),
                                                                                            streaming=True)]


READERS: dict[str, Callable[[Path], list[Any]]] = {
    "local": local_rows, "local streamed": local_streamed, "hf": hf_rows, "hf streamed": hf_streamed,
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", JSONL_CASES)
def test_a_broken_jsonl_file_names_the_file_the_line_and_the_problem(tmp_path: Path, reader: str, case: str) -> None:
    if reader.startswith("hf"):
        pytest.importorskip("datasets")
    data, words = JSONL_CASES[case]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as caught:
        READERS[reader](path)
    check(str(caught.value), [str(path), *words])


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", JSON_CASES)
def test_a_broken_json_file_names_the_file_the_row_and_the_problem(tmp_path: Path, reader: str, case: str) -> None:
    if reader.startswith("hf"):
        pytest.importorskip("datasets")
    data, words = JSON_CASES[case]
    path = tmp_path / "rows.json"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as caught:
        READERS[reader](path)
    check(str(caught.value), [str(path), *words])


@pytest.mark.parametrize("reader", ["hf", "hf streamed"])
@pytest.mark.parametrize(
    ("data", "words"),
    [(b"a,b\n1,2\n3,caf\xe9\n", ["line 3", "not UTF-8"]), (b"", ["is empty"])],
)
def test_a_broken_csv_file_names_the_file_and_the_line(tmp_path: Path, reader: str, data: bytes,
                                                        words: list[str]) -> None:
    pytest.importorskip("datasets")
    path = tmp_path / "rows.csv"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as caught:
        READERS[reader](path)
    check(str(caught.value), [str(path), *words])


def test_hf_reads_a_json_file_of_json_lines_and_checks_each_line(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    path = tmp_path / "rows.json"
    path.write_bytes(GOOD + GOOD)
    assert len(hf_rows(path)) == 2
    path.write_bytes(GOOD + NAN_ROW + b"\n")
    with pytest.raises(DatasetError, match=r"rows\.json, line 2 \(row 1\), field 'messages\[0\]\.weight'"):
        hf_rows(path)


# --- rows that reach the formats without a file (memory store, rows built in code) ---------------------


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"messages": [{"role": "user", "content": "a\ud800"}, {"role": "assistant", "content": "b"}]},
         ["row 0, message 0", "'content'", "lone surrogate"]),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "\udc80"}]},
                       {"role": "assistant", "content": "b"}]}, ["row 0, message 0", "content[0].text"]),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b",
                                                          "weight": float("nan")}]},
         ["row 0, message 1", "'weight'", "NaN"]),
        ({"text": "x\ud83d"}, ["row 0", "'text'", "lone surrogate"]),
    ],
)
def test_a_row_with_unusable_values_names_the_row_and_the_field(row: dict[str, Any], words: list[str]) -> None:
    renderer = get_renderer("role_colon", ByteTokenizer())
    with pytest.raises(DatasetError) as caught:
        rows_to_datums([row], resolve_format([row], RowFormat()), renderer, 64, TrainOnWhat.ALL_ASSISTANT_MESSAGES,
                       "mean")
    check(str(caught.value), words)


# --- random corruption of a valid file ---------------------------------------------------------------

VALID = b"".join(
    json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                             {"role": "assistant", "content": f"answer {i} \u00e9\u4e2d"}]}).encode() + b"\n"
    for i in range(4)
)
VALUES = [b"[" * 3000 + b"]" * 3000, b'{"a": ' * 3000 + b"1" + b"}" * 3000, b'"\\ud800"', b'"ok \\udfff\\ud800"',
          b"NaN", b"-Infinity", HUGE, b"1" + b"0" * 400, b'{"\\udc80": 1}']
"""Valid JSON for ``json.loads`` that no training can use, put in place of a value."""
INSERTS = [*VALUES, b"\xef\xbb\xbf", b"\xff", b"\xed\xa0\x80", b"\x00", b"\n", b"{", b"}", b'"', b"\\", b","]


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        row = draw(st.integers(0, 3))
        text = draw(st.sampled_from([b'"question %d"' % row, b'"answer %d \\u00e9\\u4e2d"' % row, b'"user"']))
        if kind == "value" and text in data:
            data = bytearray(bytes(data).replace(text, draw(st.sampled_from(VALUES)), 1))
        elif kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(INSERTS))
        elif at < len(data):
            del data[at]
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=corrupted(), streaming=st.booleans())
def test_a_corrupted_file_loads_or_fails_with_a_dataset_error_naming_it(tmp_path: Path, data: bytes,
                                                                        streaming: bool) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    try:
        rows = local_streamed(path) if streaming else local_rows(path)
    except DatasetError as exc:
        assert str(path) in str(exc)
        return
    renderer = get_renderer("role_colon", ByteTokenizer())
    try:  # what loaded is rendered: a row the store let through may still be no conversation
        rows_to_datums(rows, resolve_format(rows, RowFormat()), renderer, 64, TrainOnWhat.ALL_ASSISTANT_MESSAGES,
                       "mean")
    except DatasetError as exc:
        assert "row " in str(exc)


def test_memory_rows_are_checked_where_they_are_rendered() -> None:
    """The memory store holds rows built in code: no file to name, the row and field are named at rendering."""
    rows = [GOOD_ROW, {"messages": [{"role": "user", "content": "\ud800"}, {"role": "assistant", "content": "b"}]}]
    loaded = MemoryDatasetStore({"d": rows}).load_dataset("d").to_list()
    renderer = get_renderer("role_colon", ByteTokenizer())
    with pytest.raises(DatasetError, match=r"row 1, message 0, field 'content'"):
        rows_to_datums(loaded, resolve_format(loaded, RowFormat()), renderer, 64,
                       TrainOnWhat.ALL_ASSISTANT_MESSAGES, "mean")


# --- tool call arguments: JSON inside a row's (or a reply's) text -------------------------------------

ARGUMENTS = {"deep nesting": "[" * 5000 + "]" * 5000, "5000-digit integer": "9" * 5000}


@pytest.mark.parametrize("arguments", ARGUMENTS.values(), ids=list(ARGUMENTS))
@pytest.mark.parametrize("renderer_name", renderer_names())
def test_tool_call_arguments_that_cannot_be_read_name_the_row(renderer_name: str, arguments: str) -> None:
    """A renderer that re-reads a row's tool call arguments (qwen3 writes them as an object) raised a
    ``RecursionError`` on deep ones; any renderer now renders them or names the row."""
    renderer = get_renderer(renderer_name, ByteTokenizer())
    call = {"type": "function", "function": {"name": "f", "arguments": arguments}}
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]}]}
    try:
        rows_to_datums([row], resolve_format([row], RowFormat()), renderer, None,
                       TrainOnWhat.ALL_ASSISTANT_MESSAGES, "mean")
    except DatasetError as exc:
        assert str(exc).startswith("row 0")


@pytest.mark.parametrize("arguments", ARGUMENTS.values(), ids=list(ARGUMENTS))
def test_a_reply_whose_tool_call_cannot_be_read_is_an_unparsed_call(arguments: str) -> None:
    """Parsing a model's reply: a tool call too deep or too large to read is kept as unparsed, as one that is
    not JSON is, instead of raising out of the sampling loop."""
    from tinkex_cookbook.train.renderers import ToolCall, base, deepseek_v3, gpt_oss, kimi_k2

    call = ToolCall(function=ToolCall.FunctionBody(name="f", arguments=arguments))
    results = [
        base._parse_tool_call_json(f'{{"name": "f", "arguments": {arguments}}}', "raw"),
        gpt_oss._parse_tool_message("functions.f", arguments, "raw"),
        *kimi_k2._parse_tool_calls_section(kimi_k2._render_tool_calls([call]))[1],
        *deepseek_v3._parse_tool_calls(deepseek_v3._tool_calls_text([call]))[1],
    ]
    assert len(results) == 4
    for result in results:
        assert not isinstance(result, ToolCall) and "Invalid JSON" in result.error


# --- the fast path: rows are walked only when their text may hold an unusable value --------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.integers(min_value=10**300, max_value=10**320)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=JSON_VALUES)
def test_text_that_skips_the_walk_holds_no_unusable_value(value: Any) -> None:
    """``may_hold_unusable`` is only a shortcut: whatever it lets skip, ``unusable`` would have passed."""
    text = json.dumps(value)  # ensure_ascii: surrogates as \\u escapes, as in a file read as UTF-8
    assert unusable(json.loads(text)) is None or may_hold_unusable(text)


@pytest.mark.parametrize("number", ["1e400", "-2E+309", "1e0400", "1" + "0" * 309, "-" + "9" * 400 + ".5"])
def test_numbers_that_parse_to_infinity_are_caught(number: str, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(f'{{"x": {number}}}\n')
    with pytest.raises(DatasetError, match=r"line 1 \(row 0\), field 'x'"):
        local_rows(path)


def test_a_broken_parquet_file_names_the_file(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"PAR1 cut short")
    for reader in (hf_rows, hf_streamed):
        with pytest.raises(DatasetError, match=r"rows\.parquet.*Parquet"):
            reader(path)


def test_the_command_line_prints_a_broken_dataset_as_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tinkex_cookbook.cli import app

    path = tmp_path / "rows.jsonl"
    path.write_bytes(GOOD * 40 + b'{"messages": ' + DEEP + b"}\n")
    args = ["run", "sl_basic", "--manifest", "test", f"dataset={path}", "renderer_name=role_colon", "--quiet"]
    result = CliRunner().invoke(app, args, env={"TINKEX_PORTS__DATASET_STORE__ADAPTER": "local"})
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    check(result.stderr, [str(path), "line 41", "too deeply"])


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_dataset_file_that_links_to_a_file_of_another_kind_is_checked_by_its_own_name(
    tmp_path: Path, reader: str, suffix: str
) -> None:
    """A ``rows.jsonl`` symlink to a text or binary file: a DatasetError naming the link and a line, never the
    target's content (the hf store checked the target's own name, so it was handed to ``datasets`` unread)."""
    if reader.startswith("hf"):
        pytest.importorskip("datasets")
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0:secretive-content:/root:/bin/bash\n")
    link = tmp_path / f"rows{suffix}"
    link.symlink_to(target)
    with pytest.raises(DatasetError, match=rf"rows{re.escape(suffix)}.*line 1") as info:
        READERS[reader](link)
    assert "secretive" not in str(info.value)
