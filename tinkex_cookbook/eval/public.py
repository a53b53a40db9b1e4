"""Public evaluation sets as tasks: GSM8K, MATH-500, MMLU, IFEval, and the shipped samples.

Each is a ``generation`` task whose rows are turned into a question and a reference by a *row
format* (``ROW_FORMATS``; the config key ``format``), since the public sets' rows are not
``question``/``answer`` pairs::

    gsm8k    question, answer "... #### 72"           -> question, "72"            (grader numeric)
    math     problem, answer (or a solution's \\boxed{}) -> problem, answer         (grader boxed_sympy)
    mmlu     question, choices [..], answer index 1    -> question with lettered choices, "B" (choice)
    ifeval   prompt, instruction_id_list, kwargs       -> prompt, the checks as JSON (grader ifeval)

The rows come from the dataset store, as every evaluator's do: the hub ids below are read by
the ``hf`` dataset store from the Hugging Face cache (offline; download once where there is
network), and a file path works with any store (``{"task": "gsm8k", "dataset": "test.jsonl"}``).
``mmlu_sample`` and ``ifeval_sample`` ship with the cookbook (``tinkex_cookbook/data``, read by
the ``local`` store): 40 and 30 rows written for it, shaped like MMLU's and IFEval's rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinkex_cookbook import data
from tinkex_cookbook.eval.tasks import EvalTask
from tinkex_cookbook.train.named_datasets import provide_hint
from tinkex_cookbook.train.rl.eval_graders import CHOICE_LETTERS
from tinkex_cookbook.train.rl.graders import extract_boxed, extract_gsm8k


class RowFormatError(ValueError):
    """A row lacks what its format needs; the evaluator names the row and the dataset."""


@dataclass(frozen=True)
class RowFormat:
    """Turns a raw row into ``(question, reference)``; ``fields`` says what a row needs."""

    name: str
    fields: str
    convert: Callable[[Mapping[str, Any]], tuple[str, str]]


def _text(row: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
    raise RowFormatError(f"no text in {' or '.join(map(repr, keys))}")


def _gsm8k(row: Mapping[str, Any]) -> tuple[str, str]:
    answer = row.get("answer")
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        return _text(row, "question"), str(answer)
    solution = _text(row, "answer")
    final = extract_gsm8k(solution) if "####" in solution else solution.strip()
    if not final:
        raise RowFormatError("its answer has nothing after '####'")
    return _text(row, "question"), final


def _math(row: Mapping[str, Any]) -> tuple[str, str]:
    answer = row.get("answer")
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        answer = extract_boxed(_text(row, "solution"))
        if answer is None:
            raise RowFormatError("no 'answer', and its 'solution' has no \\boxed{} answer")
    return _text(row, "problem", "question"), str(answer).strip()


def _mmlu(row: Mapping[str, Any]) -> tuple[str, str]:
    choices, answer = row.get("choices"), row.get("answer")
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(CHOICE_LETTERS):
        raise RowFormatError(f"'choices' must be a list of 2 to {len(CHOICE_LETTERS)} options")
    letters = CHOICE_LETTERS[: len(choices)]
    if isinstance(answer, str) and answer.strip().upper() in letters:
        index = letters.index(answer.strip().upper())
    elif isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        index = answer
    else:
        raise RowFormatError(f"'answer' must be an index 0-{len(choices) - 1} or a letter, not {answer!r}")
    lines = [f"{letter}. {choice}" for letter, choice in zip(letters, choices, strict=True)]
    return _text(row, "question") + "\n\n" + "\n".join(lines), letters[index]


def _ifeval(row: Mapping[str, Any]) -> tuple[str, str]:
    ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
    if not isinstance(ids, list) or not ids:
        raise RowFormatError("'instruction_id_list' must be a non-empty list")
    if kwargs is None:
        kwargs = [{} for _ in ids]
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        raise RowFormatError("'kwargs' must be a list with one mapping per instruction")
    # google/IFEval fills every row's kwargs with every key, unused ones null
    cleaned = [{k: v for k, v in (options or {}).items() if v is not None} for options in kwargs]
    return _text(row, "prompt"), json.dumps({"instruction_id_list": ids, "kwargs": cleaned})


ROW_FORMATS: dict[str, RowFormat] = {
    f.name: f for f in (
        RowFormat("gsm8k", "'question' and 'answer' (a GSM8K solution ending '#### 72', or the number)", _gsm8k),
        RowFormat("math", "'problem' (or 'question') and 'answer' (or a 'solution' with a \\boxed{} answer)",
                  _math),
        RowFormat("mmlu", "'question', 'choices' (a list) and 'answer' (the right choice's index, or its letter)",
                  _mmlu),
        RowFormat("ifeval", "'prompt', 'instruction_id_list' and 'kwargs' (one mapping per instruction)", _ifeval),
    )
}
"""Row formats by name, for the ``generation`` evaluator's ``format`` key; add your own here."""


def format_row(name: str, row: Mapping[str, Any]) -> tuple[str, str]:
    """``(question, reference)`` for ``row`` under format ``name``; ``RowFormatError`` says what is
    missing and what the format needs."""
    fmt = ROW_FORMATS[name]
    try:
        return fmt.convert(row)
    except RowFormatError as exc:
        raise RowFormatError(f"{exc}; the {name!r} format needs {fmt.fields}; found keys {sorted(row)}") from None


@dataclass(frozen=True)
class PublicSet:
    """Where a public set comes from and how to get it onto a machine without network."""

    hub_id: str
    config: str | None
    split: str
    format: str

    def how_to_provide(self) -> str:
        return provide_hint(f"To evaluate on {self.hub_id}", self.hub_id, self.config, self.split, self.hub_id,
                            ROW_FORMATS[self.format].fields)


PUBLIC_SETS: dict[str, PublicSet] = {
    s.hub_id: s for s in (
        PublicSet("openai/gsm8k", "main", "test", "gsm8k"),
        PublicSet("HuggingFaceH4/MATH-500", None, "test", "math"),
        PublicSet("cais/mmlu", "all", "test", "mmlu"),
        PublicSet("google/IFEval", None, "train", "ifeval"),
    )
}

SHIPPED_SAMPLES = ("mmlu_sample", "ifeval_sample")
SHIPPED_DATA = Path(data.__file__).resolve().parent


def missing_data_hint(dataset: str) -> str | None:
    """How to provide ``dataset`` when the dataset store cannot load it, for the sets named here."""
    if dataset in PUBLIC_SETS:
        return PUBLIC_SETS[dataset].how_to_provide()
    if dataset in SHIPPED_SAMPLES:
        return (f"{dataset!r} ships with the cookbook and is read by the local dataset store (the `local` "
                "manifest, or ports dataset_store=local); the hf store reads only files and its cache, so "
                f"there pass the file itself: dataset={SHIPPED_DATA / dataset / 'test.jsonl'}")
    return None


_MATH_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
_MMLU_SUFFIX = "\n\nAnswer with the letter of the correct choice."
_GSM8K_SUFFIX = "\nSolve it step by step, then give the final answer as a number on the last line."

GSM8K = EvalTask(
    name="gsm8k", evaluator="generation",
    config={"dataset": "openai/gsm8k", "split": "test", "format": "gsm8k", "grader": "numeric",
            "prompt_suffix": _GSM8K_SUFFIX, "max_tokens": 512},
    description="GSM8K test (1319 grade-school word problems): the last number of the reply (openai/gsm8k)")
MATH500 = EvalTask(
    name="math500", evaluator="generation",
    config={"dataset": "HuggingFaceH4/MATH-500", "split": "test", "format": "math", "grader": "boxed_sympy",
            "prompt_suffix": _MATH_SUFFIX, "max_tokens": 1024},
    description="MATH-500 (500 competition problems): the \\boxed{} answer, symbolically (HuggingFaceH4/MATH-500)")
MMLU = EvalTask(
    name="mmlu", evaluator="generation",
    config={"dataset": "cais/mmlu", "split": "test", "format": "mmlu", "grader": "choice",
            "prompt_suffix": _MMLU_SUFFIX, "max_tokens": 32},
    description="MMLU test (14042 four-choice questions, 57 subjects): the answer letter (cais/mmlu, 'all')")
IFEVAL = EvalTask(
    name="ifeval", evaluator="generation",
    config={"dataset": "google/IFEval", "split": "train", "format": "ifeval", "grader": "ifeval",
            "max_tokens": 1024},
    description="IFEval (541 prompts with verifiable instructions): all followed, strict (google/IFEval)")
MMLU_SAMPLE = EvalTask(
    name="mmlu_sample", evaluator="generation",
    config={"dataset": "mmlu_sample", "split": "test", "format": "mmlu", "grader": "choice",
            "prompt_suffix": _MMLU_SUFFIX, "max_tokens": 32},
    description="40 easy four-choice questions shipped with the cookbook, MMLU's format: the answer letter")
IFEVAL_SAMPLE = EvalTask(
    name="ifeval_sample", evaluator="generation",
    config={"dataset": "ifeval_sample", "split": "test", "format": "ifeval", "grader": "ifeval",
            "max_tokens": 512},
    description="30 prompts with IFEval instructions shipped with the cookbook: all followed, strict")
