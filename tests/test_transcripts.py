"""Transcripts: what RL and distillation steps generated, kept per step and shown on the run's transcripts page."""

from __future__ import annotations

import json
import unicodedata
from html import escape
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinkex_cookbook import Distillation, MathRl, RlBasic, Runtime, StageError
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.training.noop import NoopTrainingService
from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.pipeline.transcripts import transcripts_html, visible_controls
from tinkex_cookbook.ports import ModelInput
from tinkex_cookbook.recipes.base import parse_config
from tinkex_cookbook.recipes.distillation import DistillationConfig
from tinkex_cookbook.run_folder import TRANSCRIPTS, TRANSCRIPTS_PAGE, RunFolder
from tinkex_cookbook.train.rl.types import Trajectory, TrajectoryGroup, Transition
from tinkex_cookbook.train.tokenizer_match import tokenizers_differ
from tinkex_cookbook.train.tokenizers import CHAT_SPECIAL_TOKENS, ByteTokenizer
from tinkex_cookbook.train.transcripts import kept

RL = {"num_steps": 3, "batch_size": 3, "group_size": 4, "max_tokens": 8, "env": "digits", "renderer_name": "role_colon",
      "save_every": 0, "log_path": "rl"}
DISTILL = {"teacher_model": "meta-llama/Llama-3.2-1B", "renderer_name": "role_colon", "num_steps": 2, "batch_size": 3,
           "group_size": 2, "max_tokens": 8, "save_every": 0, "eval_every": 0, "log_path": "d"}


def run(recipe: Any, cfg: dict[str, Any], **ports: Any) -> tuple[RunFolder, Any]:
    store = MemoryBlobStore()
    result = Runtime.run(recipe, cfg, manifest="test", ports={"blob_store": store, **ports})
    return RunFolder(store, cfg["log_path"]), result


def transcript(folder: RunFolder, step: int) -> list[dict[str, Any]]:
    return folder.read_rows(f"{TRANSCRIPTS}/{step:06d}.jsonl")


def page(folder: RunFolder) -> str:
    return (folder.read(TRANSCRIPTS_PAGE) or b"").decode()


def test_an_rl_run_keeps_each_steps_prompts_completions_rewards_and_advantages() -> None:
    folder, result = run(RlBasic, {**RL, "transcripts_per_step": 6})
    for step in (1, 2, 3):
        rows = transcript(folder, step)
        assert len(rows) == 6  # two whole groups of 4 would be 8: the second is cut at the budget
        assert [(r["group"], r["sample"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
        assert all({"step", "prompt", "completion", "reward", "advantage", "skipped", "metrics"} <= r.keys()
                   for r in rows)
        assert all(r["step"] == step and "digit_share" in r["metrics"] for r in rows)
        first = rows[:4]
        mean = sum(r["reward"] for r in first) / 4
        expected = [0.0] * 4 if first[0]["skipped"] else [r["reward"] - mean for r in first]
        assert [r["advantage"] for r in first] == pytest.approx(expected)
    assert {TRANSCRIPTS, TRANSCRIPTS_PAGE} <= result.artifacts.keys()
    assert "step 3" in page(folder) and "href='loss.html'" in page(folder)


def test_transcript_every_and_zero_rows_bound_what_is_written() -> None:
    folder, _ = run(RlBasic, {**RL, "transcript_every": 2})
    assert [k.rsplit("/", 1)[1] for k in folder.store.list(folder.key(TRANSCRIPTS + "/"))] == ["000002.jsonl"]
    assert len(transcript(folder, 2)) == 8  # the default: the first 8 trajectories of the step
    for off in ({"transcripts_per_step": 0}, {"transcript_every": 0}):
        folder, result = run(RlBasic, {**RL, **off})
        assert folder.store.list(folder.key(TRANSCRIPTS + "/")) == [] and not folder.exists(TRANSCRIPTS_PAGE)
        assert "write_transcript" not in result.experiment.stage_names()


def test_the_page_escapes_completions_and_runs_no_script() -> None:
    store = MemoryBlobStore()
    folder = RunFolder(store, "runs/x")
    row = {"step": 4, "group": 0, "sample": 0, "prompt": "say <b>hi</b>", "reward": 1.0, "advantage": 0.5,
           "completion": "<script>alert('owned')</script> & more"}
    store.write(folder.key(f"{TRANSCRIPTS}/000004.jsonl"), (json.dumps(row) + "\n").encode())
    folder.write_report("runs/x <title>")
    html = page(folder)
    assert "<script" not in html and "<b>hi" not in html and "<title>runs/x <title>" not in html
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; &amp; more" in html
    assert "<details" in html and "class='pos'" in html  # collapsible, reward coloured


def test_the_page_shows_the_evaluations_run_during_training() -> None:
    folder, _ = run(RlBasic, {**RL, "evals": [{"task": "arithmetic", "limit": 3, "max_tokens": 4}], "eval_every": 2})
    html = page(folder)
    assert "Evaluations during training" in html and "<h3>arithmetic</h3>" in html
    assert all(f"<th>step {s}</th>" in html for s in (0, 2, 3))


def test_distillation_keeps_the_students_completions_with_the_teachers_kl() -> None:
    folder, result = run(Distillation, {**DISTILL, "transcripts_per_step": 4})
    rows = transcript(folder, 1)
    assert len(rows) == 4 and [r["group"] for r in rows] == [0, 0, 1, 1]
    assert all(r["prompt"][-1]["role"] == "user" and isinstance(r["completion"], str) for r in rows)
    assert all(len(r["teacher_kl_tokens"]) == 8 and r["teacher_kl"] == pytest.approx(
        sum(r["teacher_kl_tokens"]) / 8, abs=1e-3) for r in rows)
    assert TRANSCRIPTS_PAGE in result.artifacts and "teacher_kl" in page(folder)


def test_off_policy_distillation_keeps_the_teachers_replies() -> None:
    folder, _ = run(Distillation, {**DISTILL, "mode": "off_policy"})
    rows = transcript(folder, 2)
    assert len(rows) == 3 and all({"prompt", "teacher_reply", "student_nll"} <= r.keys() for r in rows)
    assert all(r["student_nll"] > 0 for r in rows)


def _groups(sizes: list[int]) -> list[TrajectoryGroup]:
    turn = Transition(ModelInput.from_ints([1]), (2,), (0.0,), 0.0, True)
    return [TrajectoryGroup(tuple(Trajectory((turn,)) for _ in range(n))) for n in sizes]


@given(st.lists(st.integers(0, 6), max_size=8), st.integers(0, 20))
def test_kept_takes_the_first_trajectories_in_batch_order_up_to_the_limit(sizes: list[int], limit: int) -> None:
    taken = [(g, i) for g, i, _ in kept(_groups(sizes), limit)]
    every = [(g, i) for g, n in enumerate(sizes) for i in range(n)]
    assert taken == every[:limit]


# -- a teacher must read the student's tokens ---------------------------------------------------------------


def test_a_teacher_of_another_tokenizer_family_is_refused_naming_both_and_the_fix() -> None:
    with pytest.raises(ConfigError) as refused:
        Runtime.run(Distillation, {**DISTILL, "teacher_model": "Qwen/Qwen3-8B"}, manifest="test")
    message = str(refused.value)
    assert all(s in message for s in ("'Qwen/Qwen3-8B'", "qwen3 tokenizer", "'meta-llama/Llama-3.2-1B'",
                                      "llama3 tokenizer", "such as meta-llama/Llama-3.1-", "teacher=llm"))
    with pytest.raises(ConfigError, match="tinkex/bytes tokenizer"):  # off-policy pairs ids too (prompt, parse)
        parse_config(DistillationConfig, {"model_name": "tiny-bytes", "teacher_model": "tiny-llama3",
                                          "mode": "off_policy"})


def test_a_teacher_of_the_same_family_and_a_text_teacher_are_accepted() -> None:
    folder, _ = run(Distillation, {**DISTILL, "teacher_model": "meta-llama/Llama-3.1-8B-Instruct", "num_steps": 1})
    assert transcript(folder, 1)
    parse_config(DistillationConfig, {"model_name": "Qwen/Qwen3-8B", "teacher": "llm", "mode": "off_policy"})
    parse_config(DistillationConfig, {"teacher_model": "acme/unknown-7b"})  # the catalog cannot tell: the session will


class OtherTokenizerTeacher(NoopTrainingService):
    """Noop, but base model ``acme/other`` samples with a tokenizer lacking the chat special tokens."""

    def create_sampling_client(self, model_path: str | None = None, base_model: str | None = None) -> Any:
        client = super().create_sampling_client(model_path, base_model)
        if base_model == "acme/other":
            client.get_tokenizer = lambda: ByteTokenizer(special_tokens=())
        return client


def test_the_session_compares_the_opened_tokenizers_when_the_catalog_cannot_tell() -> None:
    ports = {"training_client": OtherTokenizerTeacher(), "blob_store": MemoryBlobStore()}
    with pytest.raises(StageError, match=r"distill_setup.*acme/other.*'meta-llama/Llama-3.2-1B'.*vocabulary sizes"):
        Runtime.run(Distillation, {**DISTILL, "teacher_model": "acme/other"}, manifest="test", ports=ports)
    Runtime.run(Distillation, {**DISTILL, "teacher_model": "acme/same", "num_steps": 1}, manifest="test", ports=ports)


def test_tokenizers_differ_by_vocabulary_or_by_the_ids_of_the_probe() -> None:
    chat = ByteTokenizer()
    assert tokenizers_differ(chat, ByteTokenizer(), ["<|im_start|>"]) is None
    assert "vocabulary sizes" in (tokenizers_differ(chat, ByteTokenizer(special_tokens=("<|eot_id|>",))) or "")
    swapped = ByteTokenizer(special_tokens=tuple(reversed(CHAT_SPECIAL_TOKENS)))
    assert "different ids" in (tokenizers_differ(chat, swapped, ["<|eot_id|>"]) or "")


@given(st.text(max_size=60) | st.sampled_from(["<script>x</script>", "</pre><script>", "<SCRIPT src=x>"]))
def test_any_completion_appears_on_the_page_only_escaped(text: str) -> None:
    html = transcripts_html("t", [(1, [{"group": 0, "sample": 0, "prompt": text, "completion": text, "reward": 0.0}])],
                            {})
    assert f"<pre>{visible_controls(escape(text))}</pre>" in html
    assert "<script" not in html.lower()  # no script of the page's own, and none a completion could smuggle in


def test_rl_rows_carry_the_problems_reference_answer_and_the_page_shows_it(tmp_path: Path) -> None:
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {n} + 6?", "solution": f"So it is $\\boxed{{{n + 6}}}$."})
                            + "\n" for n in range(4)))
    cfg = {**RL, "env": "problems", "dataset": "math", "question_field": "problem", "answer_field": "solution",
           "grader": "boxed", "batch_size": 2, "num_steps": 2}
    folder, _ = run(MathRl, cfg, dataset_store={"adapter": "local", "root": str(tmp_path)})
    answers = {r["answer"] for step in (1, 2) for r in transcript(folder, step)}
    assert answers and answers <= {"6", "7", "8", "9"}  # the boxed answer, taken from the solution
    assert f"answer <code class='answer'>{min(answers)}</code>" in page(folder)
    digits, _ = run(RlBasic, RL)  # an env with no reference answer: rows without the key
    assert all("answer" not in r for r in transcript(digits, 1))


def test_the_page_writes_control_bytes_of_completions_as_visible_text() -> None:
    store = MemoryBlobStore()
    folder = RunFolder(store, "runs/x")
    row = {"step": 1, "group": 0, "sample": 0, "prompt": "p\x01", "reward": 0.0,
           "completion": "a\x00b\x1b[31m\x7f\x9b\tend\n"}
    store.write(folder.key(f"{TRANSCRIPTS}/000001.jsonl"), (json.dumps(row) + "\n").encode())
    folder.write_report("runs/x")
    raw = folder.read(TRANSCRIPTS_PAGE) or b""
    assert not set(raw) & (set(range(32)) - {9, 10})  # no control byte but tab and newline
    text = raw.decode()
    assert "a\\x00b\\x1b[31m\\x7f\\x9b\tend" in text and "p\\x01" in text


@given(st.text(max_size=40))
def test_no_completion_puts_a_control_character_on_the_page(text: str) -> None:
    html = transcripts_html("t", [(1, [{"group": 0, "sample": 0, "prompt": text, "completion": text, "answer": text}])],
                            {"task": [(0, [{"prompt": text, "response": text}])]})
    assert not [c for c in html if unicodedata.category(c) == "Cc" and c not in "\n\t"]
