"""The runner on hand-made specs: loops, conditions, port handing, failures, telemetry sinks."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from tinkex_cookbook import SpecError, StageError, UnknownNameError
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.pipeline import (
    Context,
    JsonlMetricsSink,
    Key,
    MemorySink,
    Runner,
    StageRegistry,
    Telemetry,
)
from tinkex_cookbook.spec import Experiment, LoopSpec, StageSpec


class Cfg(BaseModel):
    pass


N: Key[int] = Key("n", state=True)
STEP: Key[int] = Key("step", state=True)


def make(stages: list, ports: dict | None = None) -> tuple[Runner, Context, MemorySink, list]:
    calls: list = []
    registry = StageRegistry()
    registry.register("tick", lambda ctx: (calls.append(("tick", dict(ctx.state))), ctx.state.update(step=ctx.state.get("step", 0) + 1)),
                      writes=(STEP,))
    registry.register("set_n", lambda ctx: ctx.put(N, 3), writes=(N,))
    registry.register("note", lambda ctx: calls.append(("note", ctx.state.get("step"))))
    registry.register("uses_store", lambda ctx, blob_store: calls.append(("store", blob_store)))
    registry.register("boom", lambda ctx: 1 / 0)
    sink = MemorySink()
    ctx = Context(config=Cfg(), ports=ports or {}, telemetry=Telemetry([sink]))
    spec = Experiment(name="t", recipe="t", config={}, stages=stages)
    return Runner(registry), ctx, sink, [spec, calls]


def run(stages: list, ports: dict | None = None) -> tuple[list, Context, MemorySink, list[str]]:
    runner, ctx, sink, (spec, calls) = make(stages, ports)
    completed = runner.run(spec, ctx)
    return calls, ctx, sink, completed


def test_fixed_and_state_counted_loops() -> None:
    calls, ctx, _, completed = run([
        LoopSpec(name="outer", var="e", count=2, body=[
            StageSpec(name="set_n"),
            LoopSpec(name="inner", var="b", count_key="n", body=[StageSpec(name="tick")]),
        ]),
    ])
    assert [c for c in calls if c[0] == "tick"].__len__() == 6
    assert ctx.state["step"] == 6 and ctx.state["e"] == 1 and ctx.state["b"] == 2
    assert completed == ["set_n", "tick"]


def test_every_runs_on_multiples_of_the_key() -> None:
    calls, *_ = run([LoopSpec(name="l", var="i", count=7, body=[StageSpec(name="tick"), StageSpec(name="note", every=3)])])
    assert [step for name, step in calls if name == "note"] == [3, 6]


def test_a_misspelt_every_key_fails_before_anything_runs() -> None:
    """A stage counted by a state value nothing writes would never run: a spec error, not a silent skip."""
    runner, ctx, sink, (spec, calls) = make(
        [LoopSpec(name="l", var="i", count=4, body=[StageSpec(name="tick"), StageSpec(name="note", every=2, every_key="stpe")])])
    with pytest.raises(SpecError, match="stage 'note' every_key is 'stpe', which no stage before it writes.*step"):
        runner.run(spec, ctx)
    assert calls == [] and sink.events == []


def test_every_may_count_an_enclosing_loop_variable() -> None:
    calls, *_ = run([LoopSpec(name="l", var="i", count=5, body=[StageSpec(name="note", every=2, every_key="i")])])
    assert len([c for c in calls if c[0] == "note"]) == 2


def test_a_misspelt_start_key_fails_before_anything_runs() -> None:
    runner, ctx, sink, (spec, calls) = make([StageSpec(name="tick"),
                                             LoopSpec(name="l", var="i", count=3, start_key="strt", body=[])])
    with pytest.raises(SpecError, match="loop 'l' start_key is 'strt', which no stage before it writes"):
        runner.run(spec, ctx)
    assert calls == []


def test_loop_count_from_missing_state_is_a_spec_error() -> None:
    runner, ctx, sink, (spec, _) = make([LoopSpec(name="l", var="i", count_key="missing", body=[])])
    with pytest.raises(SpecError, match="loop 'l' counts to state\\['missing'\\], which no stage before it writes"):
        runner.run(spec, ctx)
    assert sink.events == []


def test_unknown_stage_fails_before_anything_runs() -> None:
    runner, ctx, sink, (spec, calls) = make([StageSpec(name="tick"), StageSpec(name="nope")])
    with pytest.raises(UnknownNameError, match="'nope'.*'tick'"):
        runner.run(spec, ctx)
    assert calls == [] and sink.events == []


def test_failing_stage_names_itself_and_chains_the_cause() -> None:
    runner, ctx, sink, (spec, _) = make([StageSpec(name="tick"), StageSpec(name="boom"), StageSpec(name="note")])
    with pytest.raises(StageError, match="stage 'boom' failed: ZeroDivisionError") as caught:
        runner.run(spec, ctx)
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert sink.names()[-2:] == ["stage.start", "workflow.exception"]
    assert sink.events[-1].data["stage"] == "boom"


def test_stage_gets_exactly_its_declared_ports() -> None:
    store = object()
    calls, *_ = run([StageSpec(name="uses_store")], ports={"blob_store": store})
    assert calls == [("store", store)]


def test_event_order_brackets_every_stage() -> None:
    _, _, sink, _ = run([StageSpec(name="tick"), StageSpec(name="note")])
    assert sink.names() == [
        "workflow.start", "stage.start", "stage.stop", "stage.start", "stage.stop", "workflow.stop",
    ]


def test_jsonl_sink_flushes_on_checkpoint_and_close() -> None:
    store = MemoryBlobStore()
    sink = JsonlMetricsSink(store, "run/metrics.jsonl", flush_seconds=3600)
    telemetry = Telemetry([sink])
    telemetry.emit("train.step", step=1, loss=0.5)
    telemetry.emit("train.step", step=2, loss=0.25)
    assert len(store.read("run/metrics.jsonl").splitlines()) == 1
    telemetry.emit("train.checkpoint", step=2)
    assert [json.loads(line)["step"] for line in store.read("run/metrics.jsonl").splitlines()] == [1, 2]
    telemetry.emit("train.eval", step=2, test_mean_nll=1.0)
    telemetry.close()
    assert json.loads(store.read("run/metrics.jsonl").splitlines()[-1])["event"] == "train.eval"


def test_a_failing_sink_does_not_hide_the_event_from_others() -> None:
    class Broken:
        def handle(self, event: object) -> None:
            raise RuntimeError("sink down")

        def close(self) -> None:
            pass

    memory = MemorySink()
    with pytest.raises(RuntimeError, match="sink down"):
        Telemetry([Broken(), memory]).emit("train.step", step=1)
    assert memory.names() == ["train.step"]
