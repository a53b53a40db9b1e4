"""The runner: checks an experiment's stage tree, then walks it with a context.

The runner owns the loops; stages stay small. Before the first stage runs,
``validate`` checks every stage is registered and every key a stage reads is
written by a stage before it (a loop's first pass sees only what came before
the loop and what earlier stages of its body wrote; the stages after a loop see
its body's writes), and that each loop's count is written before the loop. So a
spec with a stage missing fails before any port is built, naming the stage and
the key. A stage that raises stops the run with a ``StageError`` that names the
stage; the original error is chained as its cause.

A requested stop (``ctx.stop``: Ctrl-C, SIGTERM) is read at the iteration boundaries
of each loop that has ``on_stop`` stages (before each iteration and after the last):
the stages running finish, the loop runs its ``on_stop`` (a step loop's checkpoint),
and the run ends with ``RunStoppedError`` and a ``workflow.stopped`` event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tinkex_cookbook.errors import RunStoppedError, SpecError, StageError
from tinkex_cookbook.pipeline.context import Context, Key
from tinkex_cookbook.pipeline.registry import STAGES, StageRegistry
from tinkex_cookbook.spec import Experiment, LoopSpec, Node, StageSpec


MESSAGE_CHARS = 2000
"""How much of a failed run's error its ``workflow.exception`` event keeps (for ``run.log``)."""


class Runner:
    def __init__(self, registry: StageRegistry = STAGES) -> None:
        self._registry = registry

    def validate(self, spec: Experiment) -> None:
        """Every stage registered, every read written earlier, every loop count written before its loop."""
        for name in spec.stage_names():
            self._registry.get(name)
        self._check_flow(spec.stages, set())

    def _check_flow(self, nodes: Sequence[Node], written: set[Key[Any]]) -> None:
        """Add what ``nodes`` write to ``written``, failing at the first read nothing before it wrote."""
        for node in nodes:
            if isinstance(node, LoopSpec):
                if node.count_key is not None and Key(node.count_key, state=True) not in written:
                    raise SpecError(
                        f"loop {node.name!r} counts to state[{node.count_key!r}], which no stage before it "
                        f"writes{self._written_by(Key(node.count_key, state=True))}"
                    )
                if node.start_key is not None:
                    self._require_counter(f"loop {node.name!r} start_key", node.start_key, written)
                written.add(Key(node.var, state=True))
                self._check_flow(node.body, written)
                self._check_flow(node.on_stop, written)  # after an iteration, or before the first
                continue
            entry = self._registry.get(node.name)
            if node.every is not None:
                self._require_counter(f"stage {node.name!r} every_key", node.every_key, written)
            for key in entry.reads:
                if key not in written:
                    raise SpecError(
                        f"stage {node.name!r} reads {key!r}, which no stage before it writes"
                        f"{self._written_by(key)}"
                    )
            written.update(entry.writes)

    def _require_counter(self, what: str, name: str, written: set[Key[Any]]) -> None:
        """A spec's ``every_key`` or ``start_key`` names a state value a stage before it writes (or an enclosing
        loop's variable): a misspelt one would silently never fire, or never resume."""
        if Key(name, state=True) not in written:
            known = sorted(key.name for key in written if key.state)
            writers = self._written_by(Key(name, state=True))
            raise SpecError(f"{what} is {name!r}, which no stage before it writes{writers}; "
                            f"state values written by then: {', '.join(known) or 'none'}")

    def _written_by(self, key: Key[Any]) -> str:
        writers = self._registry.writers(key)
        return f"; stages that write it: {', '.join(writers)}" if writers else "; no registered stage writes it"

    def run(self, spec: Experiment, ctx: Context[Any]) -> list[str]:
        """Run every stage; return the stage names completed, in first-completion order."""
        self.validate(spec)
        completed: dict[str, None] = {}
        ctx.emit("workflow.start", experiment=spec.name, recipe=spec.recipe)
        started = time.monotonic()
        try:
            self._walk(spec.stages, ctx, completed)
        except RunStoppedError:
            ctx.emit("workflow.stopped", step=ctx.state.get("step"), reason=ctx.stop.reason)
            raise
        except BaseException as exc:
            ctx.emit("workflow.exception", error=type(exc).__name__, stage=ctx.stage and ctx.stage.name,
                     message=str(exc)[:MESSAGE_CHARS])
            raise
        finally:
            ctx.access = None
        ctx.emit("workflow.stop", experiment=spec.name, seconds=time.monotonic() - started)
        return list(completed)

    def _walk(self, nodes: Sequence[Node], ctx: Context[Any], completed: dict[str, None]) -> None:
        for node in nodes:
            if isinstance(node, LoopSpec):
                self._loop(node, ctx, completed)
            elif _due(node, ctx):
                self._stage(node, ctx)
                completed[node.name] = None

    def _loop(self, loop: LoopSpec, ctx: Context[Any], completed: dict[str, None]) -> None:
        count = loop.count if loop.count is not None else ctx.state.get(loop.count_key or "")
        if not isinstance(count, int):
            raise SpecError(
                f"loop {loop.name!r} counts from state[{loop.count_key!r}], which no stage set "
                f"before the loop; state has {sorted(ctx.state)}"
            )
        start = ctx.state.pop(loop.start_key, 0) if loop.start_key else 0
        for index in range(start, count):
            self._stop_if_asked(loop, ctx, completed)
            ctx.state[loop.var] = index
            self._walk(loop.body, ctx, completed)
        self._stop_if_asked(loop, ctx, completed)

    def _stop_if_asked(self, loop: LoopSpec, ctx: Context[Any], completed: dict[str, None]) -> None:
        """At an iteration boundary: if a stop was asked for and the loop says what it needs, run that
        (every stage of it, whatever its ``every``) and stop the run."""
        if not loop.on_stop or not ctx.stop.requested:
            return
        self._walk([_unconditional(node) for node in loop.on_stop], ctx, completed)
        step = ctx.state.get("step")
        if not isinstance(step, int):
            raise RunStoppedError(f"run stopped at an iteration boundary of loop {loop.name!r} ({ctx.stop.reason})")
        saved = f"step {step} is checkpointed" if step else "no step had finished"
        raise RunStoppedError(f"run stopped after step {step} ({ctx.stop.reason}): {saved}; a resume continues "
                              f"at step {step + 1}")

    def _stage(self, spec: StageSpec, ctx: Context[Any]) -> None:
        entry = self._registry.get(spec.name)
        ctx.stage, ctx.access = spec, entry.access()
        started = time.monotonic()
        try:  # the emits too: a sink that fails (its blob store down) is named by the stage it stopped
            ctx.emit("stage.start", stage=spec.name)
            entry.fn(ctx, **{port: ctx.ports[port] for port in entry.ports})
            ctx.emit("stage.stop", stage=spec.name, seconds=time.monotonic() - started)
        except Exception as exc:
            raise StageError(f"stage {spec.name!r} failed: {type(exc).__name__}: {exc}") from exc


def _unconditional(node: Node) -> Node:
    return node.model_copy(update={"every": None}) if isinstance(node, StageSpec) else node


def _due(spec: StageSpec, ctx: Context[Any]) -> bool:
    if spec.every is None:
        return True
    value = ctx.state.get(spec.every_key, 0)
    return isinstance(value, int) and value > 0 and value % spec.every == 0
