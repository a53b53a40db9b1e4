"""Public evaluation sets (``tinkex_cookbook.eval.public``): row formats, tasks end to end on the
``test`` manifest from local files shaped like GSM8K, MATH-500, MMLU and IFEval, the error when a
public set is not on this machine, and the shipped ``mmlu_sample`` and ``ifeval_sample``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tinkex_cookbook.adapters.datasets.local import SHIPPED, LocalDatasetStore
from tinkex_cookbook.errors import ConfigError, DatasetError
from tinkex_cookbook.eval import EvalEnv, EvalTarget, TaskOutcome, resolve_tasks, run_tasks
from tinkex_cookbook.eval.public import (
    IFEVAL,
    PUBLIC_SETS,
    ROW_FORMATS,
    RowFormatError,
    format_row,
    missing_data_hint,
)
from tinkex_cookbook.ports import SamplingClient
from tinkex_cookbook.ports.training import ResolvedFuture
from tinkex_cookbook.ports.types import ModelInput, SampledSequence, SampleResponse, SamplingParams
from tinkex_cookbook.runtime import Runtime
from tinkex_cookbook.train.renderers import get_renderer
from tinkex_cookbook.train.rl.eval_graders import IFEVAL_INSTRUCTIONS, IfEvalAnswer

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer": "He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
    {"question": "A box holds 1,200 pins; 2 boxes hold how many?", "answer": "2 * 1200 = 2400\n#### 2,400"},
]
MATH_ROWS = [
    {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "solution": "... $\\boxed{\\frac34}$",
     "answer": "\\frac{3}{4}", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Simplify $\\sqrt{12}$.", "solution": "$\\sqrt{12} = \\boxed{2\\sqrt{3}}$."},  # Hendrycks: no answer
]
MMLU_ROWS = [
    {"question": "Which planet is known as the red planet?", "subject": "astronomy",
     "choices": ["Venus", "Mars", "Jupiter", "Saturn"], "answer": 1},
    {"question": "What is 2 + 2?", "subject": "elementary_mathematics", "choices": ["3", "5", "4", "22"], "answer": 2},
]
_KEYS = ["num_words", "relation", "keywords", "end_phrase", "postscript_marker"]
IFEVAL_ROWS = [  # as google/IFEval stores them: every kwargs key in every row, unused ones null
    {"key": 1, "prompt": "Describe the sea in lowercase letters only, with no commas.",
     "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"],
     "kwargs": [dict.fromkeys(_KEYS), dict.fromkeys(_KEYS)]},
    {"key": 2, "prompt": "Say hello in less than 5 words.", "instruction_id_list": ["length_constraints:number_words"],
     "kwargs": [{**dict.fromkeys(_KEYS), "num_words": 5, "relation": "less than"}]},
]

# --- row formats -----------------------------------------------------------------------------------


def test_gsm8k_format_takes_the_number_after_the_hashes() -> None:
    assert format_row("gsm8k", GSM8K_ROWS[0]) == (GSM8K_ROWS[0]["question"], "7")
    assert format_row("gsm8k", GSM8K_ROWS[1])[1] == "2400"
    assert format_row("gsm8k", {"question": "q", "answer": 12}) == ("q", "12")  # already a number
    assert format_row("gsm8k", {"question": "q", "answer": "12"}) == ("q", "12")
    with pytest.raises(RowFormatError, match=r"nothing after '####'.*'gsm8k' format needs"):
        format_row("gsm8k", {"question": "q", "answer": "work\n#### "})


def test_math_format_reads_the_answer_or_the_solutions_box() -> None:
    assert format_row("math", MATH_ROWS[0]) == (MATH_ROWS[0]["problem"], "\\frac{3}{4}")
    assert format_row("math", MATH_ROWS[1]) == (MATH_ROWS[1]["problem"], "2\\sqrt{3}")
    with pytest.raises(RowFormatError, match=r"has no \\boxed\{\} answer"):
        format_row("math", {"problem": "p", "solution": "no box"})


def test_mmlu_format_letters_the_choices() -> None:
    question, reference = format_row("mmlu", MMLU_ROWS[0])
    assert question == "Which planet is known as the red planet?\n\nA. Venus\nB. Mars\nC. Jupiter\nD. Saturn"
    assert reference == "B"
    assert format_row("mmlu", {**MMLU_ROWS[0], "answer": "c"})[1] == "C"  # a letter answer
    assert format_row("mmlu", {"question": "q", "choices": ["x", "y"], "answer": 0})[0].endswith("A. x\nB. y")


@pytest.mark.parametrize(("row", "problem"), [
    ({"question": "q", "choices": ["a", "b"], "answer": 2}, "'answer' must be an index 0-1"),
    ({"question": "q", "choices": ["a", "b"], "answer": True}, "'answer' must be"),
    ({"question": "q", "choices": "a b", "answer": 0}, "'choices' must be a list"),
    ({"question": "", "choices": ["a", "b"], "answer": 0}, "no text in 'question'"),
    ({"choices": ["a", "b"], "answer": "E"}, "'answer' must be"),
])
def test_mmlu_format_names_what_a_bad_row_lacks(row: dict[str, Any], problem: str) -> None:
    with pytest.raises(RowFormatError, match=problem) as info:
        format_row("mmlu", row)
    assert "'mmlu' format needs 'question', 'choices'" in str(info.value)


def test_ifeval_format_drops_null_kwargs() -> None:
    question, reference = format_row("ifeval", IFEVAL_ROWS[1])
    assert question == IFEVAL_ROWS[1]["prompt"]
    assert json.loads(reference) == {"instruction_id_list": ["length_constraints:number_words"],
                                     "kwargs": [{"num_words": 5, "relation": "less than"}]}
    with pytest.raises(RowFormatError, match="one mapping per instruction"):
        format_row("ifeval", {"prompt": "p", "instruction_id_list": ["a", "b"], "kwargs": [{}]})


def test_unknown_row_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown row format 'csv'; valid: gsm8k, ifeval, math, mmlu"):
        resolve_tasks([{"task": "gsm8k", "format": "csv"}])


def test_public_tasks_are_registered_with_their_sets() -> None:
    tasks = {t.name: t for t in resolve_tasks("gsm8k,math500,mmlu,ifeval,mmlu_sample,ifeval_sample")}
    for task in tasks.values():
        assert task.evaluator == "generation" and task.config["format"] in ROW_FORMATS
    for public in PUBLIC_SETS.values():
        (task,) = [t for t in tasks.values() if t.config["dataset"] == public.hub_id]
        assert task.config["split"] == public.split and task.config["format"] == public.format
    assert tasks["math500"].config["grader"] == "boxed_sympy" and "\\boxed{}" in tasks["math500"].config["prompt_suffix"]
    assert tasks["mmlu"].config["grader"] == tasks["mmlu_sample"].config["grader"] == "choice"
    assert tasks["ifeval"].config["grader"] == tasks["ifeval_sample"].config["grader"] == "ifeval"


# --- end to end on the test manifest ------------------------------------------------------------


class ScriptedSampler:
    """The noop sampler's weights, but replies chosen by the prompt: ``script(prompt text) -> reply``."""

    def __init__(self, inner: SamplingClient, tokenizer: Any, script: Callable[[str], str]) -> None:
        self._inner, self._tokenizer, self._script = inner, tokenizer, script

    def get_tokenizer(self) -> Any:
        return self._tokenizer

    def sample(self, prompt: ModelInput, num_samples: int, sampling_params: SamplingParams) -> Any:
        reply = self._script(self._tokenizer.decode(prompt.to_ints()))
        tokens = tuple(self._tokenizer.encode(reply, add_special_tokens=False))
        return ResolvedFuture(SampleResponse(tuple(SampledSequence("stop", tokens) for _ in range(num_samples))))

    def compute_logprobs(self, prompt: ModelInput) -> Any:
        return self._inner.compute_logprobs(prompt)


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def evaluate(tmp_path: Path) -> Iterator[Callable[..., list[TaskOutcome]]]:
    """Run task specs on the test manifest with the local dataset store rooted at ``tmp_path``; with a
    ``script``, the target replies as the script says, else as the noop model samples."""
    with Runtime.open("test", {"dataset_store": {"adapter": "local", "root": str(tmp_path)}}) as ports:
        sampler = ports.training_client.create_sampling_client(base_model="tiny-llama3")
        renderer = get_renderer("llama3", sampler.get_tokenizer())

        def run(specs: list[Any], script: Callable[[str], str] | None = None) -> list[TaskOutcome]:
            target = sampler if script is None else ScriptedSampler(sampler, sampler.get_tokenizer(), script)
            return run_tasks(resolve_tasks(specs), [EvalTarget("base", target, renderer)], EvalEnv(ports))

        yield run


def _answers(table: Mapping[str, str]) -> Callable[[str], str]:
    def script(prompt: str) -> str:
        return next((reply for key, reply in table.items() if key in prompt), "I do not know.")
    return script


def test_public_formats_evaluate_local_files_end_to_end(tmp_path: Path, evaluate: Any) -> None:
    files = {name: _write_jsonl(tmp_path / f"{name}.jsonl", rows) for name, rows in
             [("gsm8k", GSM8K_ROWS), ("math", MATH_ROWS), ("mmlu", MMLU_ROWS), ("ifeval", IFEVAL_ROWS)]}
    script = _answers({
        "Tom has 3 apples": "3 + 4 = 7, so he has 7 apples.", "A box holds": "That makes 2,400 pins.",
        "frac{1}{2} + ": "So the sum is \\boxed{0.75}.", "sqrt{12}": "\\boxed{\\sqrt{3}}",  # one right, one wrong
        "red planet": "The answer is B.", "2 + 2": "C",
        "Describe the sea": "the sea is wide and blue", "Say hello": "Hello there, friend, how are you today?",
    })
    outcomes = evaluate([{"task": "gsm8k", "dataset": files["gsm8k"]}, {"task": "math500", "dataset": files["math"]},
                         {"task": "mmlu", "dataset": files["mmlu"]}, {"task": "ifeval", "dataset": files["ifeval"]}],
                        script)
    results = {o.task.name: o.result for o in outcomes}
    assert {name: r.metrics["accuracy"] for name, r in results.items()} == {
        "gsm8k": 1.0, "math500": 0.5, "mmlu": 1.0, "ifeval": 0.5}
    assert all(r.metrics["examples"] == 2.0 for r in results.values())
    mmlu = results["mmlu"].records[0]
    assert mmlu["prompt"].endswith("A. Venus\nB. Mars\nC. Jupiter\nD. Saturn\n\nAnswer with the letter of the "
                                   "correct choice.") and mmlu["reference"] == "B"
    assert [r["reference"] for r in results["gsm8k"].records] == ["7", "2400"]
    assert [r["reference"] for r in results["math500"].records] == ["\\frac{3}{4}", "2\\sqrt{3}"]
    assert json.loads(results["ifeval"].records[1]["reference"])["kwargs"] == [{"num_words": 5,
                                                                                "relation": "less than"}]
    assert [r["instructions"] for r in results["ifeval"].records] == [[[True, True]], [[False]]]
    assert results["ifeval"].metrics["instruction_accuracy"] == pytest.approx(2 / 3)  # 2 of 3 instructions


def test_public_set_files_under_the_local_root_by_hub_id(tmp_path: Path, evaluate: Any) -> None:
    (tmp_path / "cais" / "mmlu").mkdir(parents=True)
    _write_jsonl(tmp_path / "cais" / "mmlu" / "test.jsonl", MMLU_ROWS)
    (outcome,) = evaluate(["mmlu"], _answers({"red planet": "(B) Mars", "2 + 2": "**A**"}))
    assert outcome.result.metrics["accuracy"] == 0.5


def test_a_bad_row_names_its_index_dataset_and_format(tmp_path: Path, evaluate: Any) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [MMLU_ROWS[0], {"question": "q", "answer": 0}])
    with pytest.raises(DatasetError, match=r"row 1 of '.*bad\.jsonl' \(test\): 'choices' must be a list.*found "
                                           r"keys \['answer', 'question'\]"):
        evaluate([{"task": "mmlu", "dataset": path}])


@pytest.mark.parametrize("task", ["gsm8k", "math500", "mmlu", "ifeval"])
def test_a_public_set_not_on_this_machine_says_how_to_provide_it(evaluate: Any, task: str) -> None:
    public = next(p for p in PUBLIC_SETS.values() if p.format == {"math500": "math"}.get(task, task))
    with pytest.raises(DatasetError) as info:
        evaluate([task])
    message = str(info.value)
    assert message.startswith(f"dataset {public.hub_id!r} (split {public.split!r}) not found")  # the store's own
    load = f'datasets.load_dataset("{public.hub_id}"' + (f', "{public.config}"' if public.config else "")
    assert f"download it once with `python -c 'import datasets; {load})'` on a machine with network" in message
    assert f"pass dataset=/path/to/{public.split}.jsonl" in message
    assert f"save it as {public.hub_id}/{public.split}.jsonl under the local dataset store's root" in message


def test_the_hf_store_error_gets_the_same_hint() -> None:
    class Offline:
        def load_dataset(self, name: str, split: str = "train", **options: Any) -> Any:
            raise DatasetError(f"dataset {name!r} (split {split!r}) is not on disk nor in the Hugging Face "
                               "datasets cache")

    from tinkex_cookbook.eval.evaluators._data import load_rows
    from tinkex_cookbook.eval.evaluators.generation import GenerationConfig

    (task,) = resolve_tasks(["gsm8k"])
    with pytest.raises(DatasetError, match=r"(?s)not on disk nor in the Hugging Face datasets cache\nTo evaluate "
                                           r"on openai/gsm8k: .*\"openai/gsm8k\", \"main\"") as info:
        load_rows(GenerationConfig.model_validate(task.config), EvalEnv({"dataset_store": Offline()}))
    assert isinstance(info.value.__cause__, DatasetError)


def test_other_missing_datasets_keep_the_stores_message(evaluate: Any) -> None:
    with pytest.raises(DatasetError) as info:
        evaluate([{"task": "gsm8k", "dataset": "nowhere/at_all"}])
    assert "To evaluate on" not in str(info.value)
    assert missing_data_hint("nowhere/at_all") is None


def test_shipped_sample_hint_points_at_the_file() -> None:
    hint = missing_data_hint("mmlu_sample")
    assert hint is not None and str(SHIPPED / "mmlu_sample" / "test.jsonl") in hint


# --- shipped samples --------------------------------------------------------------------------------


def test_shipped_tasks_run_on_the_test_manifest(evaluate: Any) -> None:
    outcomes = evaluate(["mmlu_sample", {"task": "ifeval_sample", "max_tokens": 16}])
    results = {o.task.name: o.result for o in outcomes}
    assert results["mmlu_sample"].metrics["examples"] == 40.0
    assert results["ifeval_sample"].metrics["examples"] == 30.0
    for result in results.values():
        assert 0.0 <= result.metrics["accuracy"] <= 1.0 and 0.0 <= result.metrics["format_rate"] <= 1.0


def test_shipped_mmlu_sample_is_gradable_and_balanced(evaluate: Any) -> None:
    rows = LocalDatasetStore(".").load_dataset("mmlu_sample", "test").to_list()
    assert len(rows) == 40 and len({r["question"] for r in rows}) == 40
    assert sorted(r["answer"] for r in rows) == sorted([0, 1, 2, 3] * 10)
    assert all(len(r["choices"]) == 4 and len(set(r["choices"])) == 4 and r["subject"] for r in rows)
    right = {r["question"]: "The answer is " + "ABCD"[r["answer"]] + "." for r in rows}
    (outcome,) = evaluate(["mmlu_sample"], _answers(right))
    assert outcome.result.metrics["accuracy"] == 1.0
    (outcome,) = evaluate(["mmlu_sample"], lambda prompt: "A")
    assert outcome.result.metrics["accuracy"] == 0.25


def test_every_shipped_ifeval_sample_row_is_checkable() -> None:
    rows = LocalDatasetStore(".").load_dataset("ifeval_sample", "test").to_list()
    assert len(rows) == 30 and len({r["key"] for r in rows}) == 30
    seen: set[str] = set()
    for row in rows:
        _, answer = format_row("ifeval", row)
        assert IfEvalAnswer().check_format("reply", answer), row["key"]
        seen |= set(row["instruction_id_list"])
    assert seen == set(IFEVAL_INSTRUCTIONS)


def test_shipped_samples_have_a_readme_and_are_documented() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text(encoding="utf-8")
    for name in ("mmlu_sample", "ifeval_sample"):
        readme = (SHIPPED / name / "README.md").read_text(encoding="utf-8")
        assert "License: Apache-2.0" in readme and "Source: written for this project" in readme
        assert f"`{name}`" in docs
    assert IFEVAL.config["dataset"] in docs
