"""Progress for the long loops inside stages: dataset preparation, sampling, evaluation."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from tinkex_cookbook import Runtime
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.pipeline.progress import PlainProgressSink, ProgressSink
from tinkex_cookbook.pipeline.telemetry import (
    Event,
    LogFileSink,
    MemorySink,
    TaskProgress,
    Telemetry,
    _console_line,
)

SMALL = {
    "sl_basic": ({"batch_size": 8}, {"render train rows", "render test rows", "evaluate"}),
    "rl_basic": ({"env": "digits", "renderer_name": "role_colon", "num_steps": 2, "batch_size": 2}, {"sample"}),
    "dpo": ({"renderer_name": "role_colon", "batch_size": 8}, {"render pairs", "evaluate"}),
    "distillation": ({"teacher_model": "meta-llama/Llama-3.2-1B", "renderer_name": "role_colon", "num_steps": 2,
                      "batch_size": 2}, {"sample"}),
}


@given(total=st.integers(0, 50), every=st.sampled_from([0.0, 3600.0]))
def test_a_task_reports_start_then_throttled_progress_then_stop(total: int, every: float) -> None:
    memory = MemorySink()
    with TaskProgress(Telemetry([memory]), "render", total, every=every) as task:
        for _ in range(total):
            task.advance()
    names = memory.names()
    assert names[0] == "task.start" and names[-1] == "task.stop"
    assert set(names[1:-1]) <= {"task.progress"}
    assert len(names) - 2 == (max(total - 1, 0) if every == 0.0 else 0)  # the last item is the stop event
    assert memory.events[-1].data["done"] == total == memory.events[0].data["total"]


@pytest.mark.parametrize("recipe", sorted(SMALL))
def test_every_recipe_reports_its_long_loops_as_balanced_tasks(recipe: str) -> None:
    cfg, expected = SMALL[recipe]
    memory = MemorySink()
    Runtime.run(recipe, cfg, manifest="test", sinks=[memory])
    starts = [e.data["task"] for e in memory.events if e.name == "task.start"]
    stops = [e for e in memory.events if e.name == "task.stop"]
    assert expected <= set(starts)
    assert starts == [e.data["task"] for e in stops]
    assert all(e.data["done"] == e.data["total"] for e in stops)


def test_quick_tasks_stay_out_of_the_console_and_log_slow_ones_get_a_line() -> None:
    quick = Event("task.stop", {"task": "render train rows", "done": 88, "total": 88, "seconds": 0.02})
    slow = Event("task.stop", {"task": "sample", "done": 64, "total": 64, "seconds": 12.5})
    assert _console_line(quick) is None
    assert _console_line(slow) == "sample: 64/64 in 12.5 s"
    store = MemoryBlobStore()
    log = LogFileSink(store, "run.log")
    for event in (quick, slow):
        log.handle(event)
    log.close()
    assert store.read("run.log").decode().count("\n") == 1


def test_piped_output_prints_long_tasks_periodically_and_when_they_end() -> None:
    out = io.StringIO()
    sink = PlainProgressSink(out, task_seconds=5.0)
    for name, data, at in [
        ("task.start", {"task": "render train rows", "total": 1000}, 0.0),
        ("task.progress", {"task": "render train rows", "done": 100, "total": 1000}, 2.0),
        ("task.progress", {"task": "render train rows", "done": 400, "total": 1000}, 6.0),
        ("task.progress", {"task": "render train rows", "done": 500, "total": 1000}, 7.0),
        ("task.stop", {"task": "render train rows", "done": 1000, "total": 1000, "seconds": 9.0}, 9.0),
        ("task.start", {"task": "evaluate", "total": 40}, 10.0),
        ("task.stop", {"task": "evaluate", "done": 40, "total": 40, "seconds": 0.5}, 10.5),
    ]:
        sink.handle(Event(name, data, time=at))
    assert out.getvalue().splitlines() == [
        "render train rows: 400/1000", "render train rows: 1000/1000 done in 9.0 s",
    ]


def test_the_terminal_bar_shows_a_task_while_it_runs_and_drops_it_after() -> None:
    out = io.StringIO()
    sink = ProgressSink(Console(file=out, force_terminal=True, width=100))
    sink.handle(Event("task.start", {"task": "render train rows", "total": 10}))
    sink.handle(Event("task.progress", {"task": "render train rows", "done": 4, "total": 10}))
    shown = [task.description for task in sink._progress.tasks]
    assert shown == ["render train rows"] and sink._progress.tasks[0].completed == 4
    sink.handle(Event("task.stop", {"task": "render train rows", "done": 10, "total": 10, "seconds": 0.1}))
    assert sink._progress.tasks == []
    sink.close()


def test_a_loop_abandoned_by_a_failing_stage_emits_nothing_when_collected() -> None:
    import gc

    from tinkex_cookbook.pipeline.context import Context

    memory = MemorySink()
    ctx = Context(config=None, ports={}, telemetry=Telemetry([memory]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad row"):
        [int(row) if row != "x" else int("bad row") for row in ctx.track(["1", "x", "3"], "render")]
    gc.collect()
    assert memory.names() == ["task.start"]
