"""Runner and telemetry contracts beyond ``test_pipeline.py``: which ports a stage asks for,
loop and ``every`` details, context helpers, and what the metric and console sinks write."""

from __future__ import annotations

import io
import json

import pytest
from pydantic import BaseModel

from tinkex_cookbook import SpecError, StageError
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.pipeline import (
    ConsoleSink,
    Context,
    JsonlMetricsSink,
    MemorySink,
    Runner,
    StageRegistry,
    Telemetry,
)
from tinkex_cookbook.spec import Experiment, LoopSpec, StageSpec


class Cfg(BaseModel):
    pass


class RecordingPorts:
    """A port lookup that records every port asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __getitem__(self, port: str) -> object:
        self.asked.append(port)
        return f"<{port}>"


def run(stages: list, registry: StageRegistry, ports: object = None) -> tuple[Context, MemorySink]:
    sink = MemorySink()
    ctx = Context(config=Cfg(), ports=ports or RecordingPorts(), telemetry=Telemetry([sink]))
    Runner(registry).run(Experiment(name="t", recipe="t", config={}, stages=stages), ctx)
    return ctx, sink


def test_each_call_asks_only_for_the_declared_ports() -> None:
    seen: list = []
    registry = StageRegistry()
    registry.register("two", lambda ctx, a, b: seen.append((a, b)), ports=("a", "b"))
    registry.register("none", lambda ctx: seen.append(()))
    ports = RecordingPorts()
    run([LoopSpec(name="l", var="i", count=2, body=[StageSpec(name="two"), StageSpec(name="none")])],
        registry, ports)
    assert ports.asked == ["a", "b", "a", "b"]
    assert seen == [("<a>", "<b>"), (), ("<a>", "<b>"), ()]


def test_a_port_that_cannot_be_built_fails_as_the_stage() -> None:
    class Broken:
        def __getitem__(self, port: str) -> object:
            raise LookupError(f"no adapter for {port}")

    registry = StageRegistry()
    registry.register("needs", lambda ctx, store: None, ports=("store",))
    with pytest.raises(StageError, match="stage 'needs' failed: LookupError: no adapter for store"):
        run([StageSpec(name="needs")], registry, Broken())


def test_every_can_key_on_any_state_value_and_skips_zero() -> None:
    calls: list = []
    registry = StageRegistry()
    registry.register("mark", lambda ctx: calls.append(ctx.state["batch"]))
    run([LoopSpec(name="l", var="batch", count=7, body=[StageSpec(name="mark", every=2, every_key="batch")])],
        registry)
    assert calls == [2, 4, 6]


def test_zero_count_loop_runs_nothing_and_its_stages_are_not_completed() -> None:
    registry = StageRegistry()
    registry.register("a", lambda ctx: None)
    registry.register("b", lambda ctx: None)
    sink = MemorySink()
    ctx = Context(config=Cfg(), ports=RecordingPorts(), telemetry=Telemetry([sink]))
    spec = Experiment(name="t", recipe="t", config={},
                      stages=[LoopSpec(name="l", var="i", count=0, body=[StageSpec(name="b")]), StageSpec(name="a")])
    assert Runner(registry).run(spec, ctx) == ["a"]
    assert "i" not in ctx.state


def test_nested_loop_variables_track_the_current_iteration() -> None:
    seen: list = []
    registry = StageRegistry()
    registry.register("see", lambda ctx: seen.append((ctx.state["outer"], ctx.state["inner"])))
    run([LoopSpec(name="o", var="outer", count=2, body=[
        LoopSpec(name="n", var="inner", count=3, body=[StageSpec(name="see")])])], registry)
    assert seen == [(o, i) for o in range(2) for i in range(3)]


def test_stage_options_and_need_errors_name_the_stage() -> None:
    got: list = []
    registry = StageRegistry()
    registry.register("opts", lambda ctx: got.append(dict(ctx.options())))
    registry.register("needy", lambda ctx: ctx.need("model"))
    with pytest.raises(StageError) as caught:
        run([StageSpec(name="opts", options={"k": [1, 2]}), StageSpec(name="needy")], registry)
    assert got == [{"k": [1, 2]}]
    assert isinstance(caught.value.__cause__, SpecError)
    assert "stage 'needy' needs 'model'" in str(caught.value)


def test_artifact_keys_live_under_the_run_prefix() -> None:
    telemetry = Telemetry()
    assert Context(Cfg(), RecordingPorts(), telemetry, run_prefix="runs/a").artifact_key("m.jsonl") == "runs/a/m.jsonl"
    assert Context(Cfg(), RecordingPorts(), telemetry).artifact_key("m.jsonl") == "m.jsonl"


def test_duplicate_stage_registration_needs_replace() -> None:
    registry = StageRegistry()
    registry.register("a", lambda ctx: None)
    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.register("a", lambda ctx: None)
    registry.register("a", lambda ctx: None, replace=True)
    assert registry.names() == ["a"] and "a" in registry


def test_metrics_sink_writes_nothing_without_metric_events() -> None:
    store = MemoryBlobStore()
    telemetry = Telemetry([JsonlMetricsSink(store, "r/metrics.jsonl", flush_seconds=0)])
    telemetry.emit("workflow.start")
    telemetry.emit("train.checkpoint", step=1)
    telemetry.close()
    assert store.blobs == {}


def test_metrics_sink_keeps_the_rows_it_resumes_from_and_drops_later_ones() -> None:
    store = MemoryBlobStore()
    earlier = [{"event": "train.step", "step": s} for s in (1, 2, 3)] + [{"event": "train.eval", "step": 2}]
    store.write("r/metrics.jsonl", "".join(json.dumps(r) + "\n" for r in earlier).encode())
    sink = JsonlMetricsSink(store, "r/metrics.jsonl")
    telemetry = Telemetry([sink])
    telemetry.emit("train.resume", step=2)
    telemetry.emit("train.step", step=3, loss=0.5)
    sink.close()
    rows = [json.loads(line) for line in store.read("r/metrics.jsonl").splitlines()]
    assert rows == [*earlier[:2], earlier[3], {"event": "train.step", "loss": 0.5, "step": 3}]


def test_console_sink_prints_steps_and_checkpoints_only() -> None:
    out = io.StringIO()
    telemetry = Telemetry([ConsoleSink(out)])
    telemetry.emit("stage.start", stage="x")
    telemetry.emit("train.step", step=3, total_steps=10, loss=0.123456, note="text")
    telemetry.emit("train.checkpoint", step=3, name="000003")
    assert out.getvalue().splitlines() == ["step 3/10 loss=0.1235", "train.checkpoint name=000003 step=3"]
