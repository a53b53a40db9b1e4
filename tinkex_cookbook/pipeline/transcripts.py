"""A run's transcripts page: what the model generated, step by step, and what its evaluations saw.

``transcripts.html`` is written with the run's report from ``transcripts/<step>.jsonl``
(RL and distillation steps) and ``evals/<task>/<step>.jsonl`` (the evaluations run during
training), each step written with six digits (``000001.jsonl``). One self-contained page: inline CSS, no script, no library. Each step shows its
groups, each group its prompt and trajectories with rewards coloured; every prompt and
completion is escaped and folds open on a click (``<details>``). The latest ``STEPS_SHOWN``
steps are on the page (every step is in ``transcripts/``); each evaluation task shows a few
examples at a few steps side by side, in the evaluation report's own table. An RL group shows
its problem's reference answer (``answer``) beside its rewards. Sampled text may hold any
byte (a byte-level model writes NUL and escape bytes): the finished page goes through
``visible_controls``, so it is text that browsers and tools read as such.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tinkex_cookbook.eval.report import STYLE, examples_table
from tinkex_cookbook.run_folder import EVALS, REPORT, TRANSCRIPTS, TRANSCRIPTS_PAGE, RunFolder

STEPS_SHOWN = 30
"""Steps on the page, the latest ones."""
EVAL_STEPS_SHOWN = 4
"""Evaluated steps shown side by side per task: the first, the last and evenly spaced ones between."""
EVAL_EXAMPLES_SHOWN = 4
PREVIEW_CHARS = 100
SCORES = ("reward", "advantage", "teacher_kl", "student_nll")
"""Per-trajectory numbers shown beside each completion, when a row has them."""

Rows = list[dict[str, Any]]

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters other than newline and tab (C0, DEL and C1)."""


def visible_controls(text: str) -> str:
    """``text`` with each control character but newline and tab written as ``\\xNN`` text (NUL: ``\\x00``)."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def write_transcripts_page(folder: RunFolder, title: str) -> None:
    """Write ``transcripts.html`` if the run kept transcripts or evaluation records; else write nothing."""
    steps = _numbered(folder, TRANSCRIPTS)
    tasks = {task: _numbered(folder, f"{EVALS}/{task}") for task in _subfolders(folder, EVALS)}
    if not steps and not any(tasks.values()):
        return
    shown = [(step, folder.read_rows(name)) for step, name in steps[-STEPS_SHOWN:]]
    evals = {task: [(step, folder.read_rows(name)) for step, name in _spread(files, EVAL_STEPS_SHOWN)]
             for task, files in tasks.items() if files}
    page = transcripts_html(title, shown, evals, len(steps))
    folder.store.write(folder.key(TRANSCRIPTS_PAGE), page.encode())


def transcripts_html(title: str, steps: Sequence[tuple[int, Rows]], evals: Mapping[str, Sequence[tuple[int, Rows]]],
                     total_steps: int | None = None) -> str:
    """The page: ``steps`` as (step, rows), ``evals`` as task -> (step, records)."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}: transcripts</title>", STYLE, _STYLE,
             f"<h1>Transcripts <small>{html.escape(title)}</small></h1>",
             f"<p><a href='{REPORT}'>loss curves</a> · files: <code>{TRANSCRIPTS}/&lt;step&gt;.jsonl</code>, "
             + f"<code>{EVALS}/&lt;task&gt;/&lt;step&gt;.jsonl</code> (step in six digits: 000001.jsonl)</p>"]
    if steps:
        hidden = (total_steps or len(steps)) - len(steps)
        links = " ".join(f"<a href='#step-{step}'>{step}</a>" for step, _ in steps)
        parts.append(f"<p>steps: {links}{f' (and {hidden} earlier ones, in the files)' if hidden > 0 else ''}</p>")
        parts.extend(_step_section(step, rows) for step, rows in steps)
    if evals:
        parts.append("<h2 id='evals'>Evaluations during training</h2>")
        for task, columns in evals.items():
            parts.append(f"<h3>{html.escape(task)}</h3>")
            parts.append(examples_table([(f"step {step}", rows) for step, rows in columns], EVAL_EXAMPLES_SHOWN))
    return visible_controls("\n".join(parts))


def _step_section(step: int, rows: Rows) -> str:
    groups: dict[Any, Rows] = {}
    for row in rows:
        groups.setdefault(row.get("group"), []).append(row)
    means = "".join(f" · mean {name} {_number(sum(vals) / len(vals))}" for name in ("reward", "teacher_kl", "student_nll")
                    if (vals := [float(r[name]) for r in rows if isinstance(r.get(name), int | float)]))
    body = "".join(_group(group, members) for group, members in groups.items())
    return f"<section id='step-{step}'><h2>step {step} <small>{len(rows)} shown{means}</small></h2>{body}</section>"


def _group(group: Any, rows: Rows) -> str:
    rewards = " ".join(_score("reward", r["reward"]) for r in rows if "reward" in r)
    skipped = " <small>(equal rewards: not trained on)</small>" if any(r.get("skipped") for r in rows) else ""
    prompt = _prompt_text(rows[0].get("prompt"))
    answers = dict.fromkeys(str(r["answer"]) for r in rows if r.get("answer") is not None)
    answer = "".join(f" · answer <code class='answer'>{html.escape(a)}</code>" for a in answers)
    summary = (f"group {html.escape(str(group))}{f' · rewards {rewards}' if rewards else ''}{answer}{skipped} · "
               f"{_preview(prompt)}")
    samples = "".join(_sample(row) for row in rows)
    return (f"<details class='group' open><summary>{summary}</summary>"
            f"<details><summary>prompt</summary><pre>{html.escape(prompt)}</pre></details>"
            f"<table class='samples'><tr><th>#</th><th>scores</th><th>text</th></tr>{samples}</table></details>")


def _sample(row: dict[str, Any]) -> str:
    scores = "".join(f"<div>{name} {_score(name, row[name])}</div>" for name in SCORES if name in row)
    scores += "".join(f"<div>{html.escape(str(k))} {_number(v)}</div>" for k, v in (row.get("metrics") or {}).items())
    text = _fold("completion", row["completion"]) if "completion" in row else ""
    text += _fold("teacher reply", row["teacher_reply"]) if "teacher_reply" in row else ""
    for turn in row.get("turns") or []:
        text += _fold("observation", turn.get("observation", "")) + _fold("completion", turn.get("completion", ""))
    if row.get("teacher_kl_tokens"):
        text += _fold("teacher KL per token", " ".join(_number(x) for x in row["teacher_kl_tokens"]))
    return f"<tr><td>{html.escape(str(row.get('sample', '')))}</td><td class='scores'>{scores}</td><td>{text}</td></tr>"


def _fold(label: str, text: Any) -> str:
    """The text's first characters, opening to all of it; always escaped."""
    shown = text if isinstance(text, str) else json.dumps(text)
    return (f"<details><summary><b>{html.escape(label)}</b> {_preview(shown)}</summary>"
            f"<pre>{html.escape(shown)}</pre></details>")


def _preview(text: str) -> str:
    line = " ".join(text.split())
    return f"<code>{html.escape(line[:PREVIEW_CHARS] + ('…' if len(line) > PREVIEW_CHARS else ''))}</code>"


def _prompt_text(prompt: Any) -> str:
    """A prompt's text: itself, or its chat messages one per paragraph (``role: content``)."""
    if isinstance(prompt, list):
        return "\n\n".join(f"{m.get('role', '?')}: {m.get('content') if isinstance(m.get('content'), str) else json.dumps(m.get('content'))}"
                           for m in prompt if isinstance(m, dict))
    return "" if prompt is None else str(prompt)


def _score(name: str, value: Any) -> str:
    """Rewards and advantages coloured by sign (green above zero, red below)."""
    if name not in ("reward", "advantage") or not isinstance(value, int | float):
        return f"<span>{_number(value)}</span>"
    kind = "pos" if value > 0 else "neg" if value < 0 else "zero"
    return f"<span class='{kind}'>{_number(value)}</span>"


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else html.escape(str(value))


def _numbered(folder: RunFolder, sub: str) -> list[tuple[int, str]]:
    """``(step, name)`` of the ``<step>.jsonl`` files directly in ``sub``, by step."""
    found = []
    for name in _names(folder, sub):
        stem = name.removeprefix(sub + "/").removesuffix(".jsonl")
        if "/" not in stem and stem.isdigit() and name.endswith(".jsonl"):
            found.append((int(stem), name))
    return sorted(found)


def _subfolders(folder: RunFolder, sub: str) -> list[str]:
    return sorted({rest.split("/")[0] for name in _names(folder, sub)
                   if "/" in (rest := name.removeprefix(sub + "/"))})


def _names(folder: RunFolder, sub: str) -> list[str]:
    """Names (relative to the run folder) of the keys under ``sub/``."""
    root = folder.key("")
    return [key.removeprefix(root) for key in folder.store.list(folder.key(sub + "/"))]


def _spread(items: Sequence[tuple[int, str]], count: int) -> list[tuple[int, str]]:
    if len(items) <= count:
        return list(items)
    last = len(items) - 1
    return [items[round(i * last / (count - 1))] for i in range(count)]


_STYLE = """<style>
details.group{border:1px solid #ddd;margin:.5em 0;padding:4px 8px}details.group>summary{cursor:pointer}
table.samples td{max-width:70em}td.scores{white-space:nowrap}.pos{color:#262;background:#e6f4e6;padding:0 3px}
.neg{color:#a22;background:#f8e6e6;padding:0 3px}.zero{color:#666;background:#eee;padding:0 3px}
summary code{color:#444;font-size:90%}code.answer{color:#225;background:#eef;padding:0 3px}section{margin-bottom:2em}
</style>"""
