"""Runner and telemetry contracts beyond ``test_pipeline.py``: which ports a stage asks for,
loop and ``every`` details, context helpers, and what the metric and console sinks write."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from tinkex_cookbook import SpecError, StageError
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.pipeline import (
    ConsoleSink,
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
    registry.register("two", lambda ctx, blob_store, llm_client: seen.append((blob_store, llm_client)))
    registry.register("none", lambda ctx: seen.append(()))
    ports = RecordingPorts()
    run([LoopSpec(name="l", var="i", count=2, body=[StageSpec(name="two"), StageSpec(name="none")])],
        registry, ports)
    assert ports.asked == ["blob_store", "llm_client"] * 2
    assert seen == [("<blob_store>", "<llm_client>"), (), ("<blob_store>", "<llm_client>"), ()]


def test_a_parameter_that_is_not_a_port_is_a_registration_error() -> None:
    with pytest.raises(SpecError, match="stage 'odd': parameter 'store' is not a port.*'blob_store'"):
        StageRegistry().register("odd", lambda ctx, store: None)


def test_a_port_that_cannot_be_built_fails_as_the_stage() -> None:
    class Broken:
        def __getitem__(self, port: str) -> object:
            raise LookupError(f"no adapter for {port}")

    registry = StageRegistry()
    registry.register("needs", lambda ctx, blob_store: None)
    with pytest.raises(StageError, match="stage 'needs' failed: LookupError: no adapter for blob_store"):
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


MODEL: Key[str] = Key("model")
OTHER: Key[str] = Key("other")


def test_stage_options_and_a_declared_read_nothing_wrote_name_the_stage() -> None:
    got: list = []
    registry = StageRegistry()
    registry.register("opts", lambda ctx: got.append(dict(ctx.options())))
    registry.register("maybe", lambda ctx: None, writes=(MODEL,))
    registry.register("needy", lambda ctx: ctx.need(MODEL), reads=(MODEL,))
    with pytest.raises(StageError) as caught:  # declared written, but this run's writer did not write it
        run([StageSpec(name="opts", options={"k": [1, 2]}), StageSpec(name="maybe"), StageSpec(name="needy")],
            registry)
    assert got == [{"k": [1, 2]}]
    assert isinstance(caught.value.__cause__, SpecError)
    assert "stage 'needy' needs resource 'model', which no earlier stage wrote" in str(caught.value)


def test_a_read_with_no_earlier_writer_fails_validation_naming_stage_key_and_writers() -> None:
    registry = StageRegistry()
    registry.register("make", lambda ctx: ctx.put(MODEL, "m"), writes=(MODEL,))
    registry.register("use", lambda ctx: ctx.need(MODEL), reads=(MODEL,))
    with pytest.raises(SpecError, match="stage 'use' reads resource 'model', which no stage before it writes; "
                                        "stages that write it: make"):
        run([StageSpec(name="use"), StageSpec(name="make")], registry)
    with pytest.raises(SpecError, match="no registered stage writes it"):
        run([StageSpec(name="use")], _only_reader())


def _only_reader() -> StageRegistry:
    registry = StageRegistry()
    registry.register("use", lambda ctx: ctx.need(MODEL), reads=(MODEL,))
    return registry


def test_a_loop_body_sees_earlier_body_writes_and_later_stages_see_the_body() -> None:
    registry = StageRegistry()
    registry.register("make", lambda ctx: ctx.put(MODEL, "m"), writes=(MODEL,))
    registry.register("use", lambda ctx: ctx.need(MODEL), reads=(MODEL,))
    run([LoopSpec(name="l", var="i", count=2, body=[StageSpec(name="make"), StageSpec(name="use")]),
         StageSpec(name="use")], registry)
    with pytest.raises(SpecError, match="stage 'use' reads resource 'model'"):  # a first pass reads it unwritten
        run([LoopSpec(name="l", var="i", count=2, body=[StageSpec(name="use"), StageSpec(name="make")])], registry)


@pytest.mark.parametrize(("fn", "message"), [
    (lambda ctx: ctx.get(OTHER), "stage 'sneaky' reads resource 'other' but does not declare it"),
    (lambda ctx: ctx.put(OTHER, "x"), "stage 'sneaky' writes resource 'other' but does not declare it"),
    (lambda ctx: ctx.discard(MODEL), "stage 'sneaky' writes resource 'model' but does not declare it"),
])
def test_undeclared_reads_and_writes_fail_while_the_stage_runs(fn: Callable[..., None], message: str) -> None:
    registry = StageRegistry()
    registry.register("make", lambda ctx: ctx.put(MODEL, "m"), writes=(MODEL,))
    registry.register("sneaky", fn, reads=(MODEL,))
    with pytest.raises(StageError, match=message) as caught:
        run([StageSpec(name="make"), StageSpec(name="sneaky")], registry)
    assert isinstance(caught.value.__cause__, SpecError)


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


def test_the_builtin_stage_table_is_what_the_stage_modules_register() -> None:
    """A shipped stage is found through ``BUILTIN_STAGES`` without importing every module, so the table must name
    exactly the stages each module defines."""
    import importlib

    from tinkex_cookbook.pipeline.registry import BUILTIN_STAGES, STAGES

    for module in set(BUILTIN_STAGES.values()):
        importlib.import_module(module)
    registered = {name: STAGES.get(name).fn.__module__ for name in STAGES.names()
                  if STAGES.get(name).fn.__module__.startswith("tinkex_cookbook.pipeline.stages.")}
    assert registered == BUILTIN_STAGES


def test_a_plugin_stage_is_found_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage from an installed distribution's ``tinkex_cookbook.stages`` entry point; a plain function gets
    its ports from its signature."""
    from tinkex_cookbook import registry as shared

    def fake_entry_points(group: str, path: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
        return (("team_stage", f"{__name__}:_plugin_stage_fn", "team-plugin"),) if group == "stages.test" else ()

    monkeypatch.setattr(shared, "installed_entry_points", fake_entry_points)
    registry = StageRegistry(group="stages.test")
    entry = registry.get("team_stage")
    assert entry.fn is _plugin_stage_fn and entry.ports == ("blob_store",)
    assert registry.names() == ["team_stage"]


def _plugin_stage_fn(ctx: object, blob_store: object) -> None:
    """A stage a plugin would ship."""
