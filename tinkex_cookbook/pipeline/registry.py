"""Stage registry: stage name -> function, the ports it takes and the data it reads and writes.

A stage is ``fn(ctx, **ports)``. The ports are read once, from the signature:
every parameter after ``ctx`` must be a port name, and the runner passes exactly
those. ``reads`` are keys an earlier stage of the spec must write (checked before
the run starts); ``optional`` are keys a stage uses when present (written later in
its own loop, or only on some paths); ``writes`` are the keys it may write.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tinkex_cookbook.errors import SpecError, choices
from tinkex_cookbook.pipeline.context import Access, Key
from tinkex_cookbook.ports import PORT_PROTOCOLS
from tinkex_cookbook.registry import Registry

StageFn = Callable[..., object]
"""``fn(ctx, **ports)``; what it returns is ignored."""
F = TypeVar("F", bound=StageFn)


@dataclass(frozen=True)
class StageEntry:
    name: str
    fn: StageFn
    ports: tuple[str, ...] = ()
    reads: tuple[Key[Any], ...] = ()
    optional: tuple[Key[Any], ...] = ()
    writes: tuple[Key[Any], ...] = ()

    def access(self) -> Access:
        return Access(self.name, frozenset(self.reads), frozenset(self.optional), frozenset(self.writes))


def signature_ports(name: str, fn: StageFn) -> tuple[str, ...]:
    """The port names ``fn`` takes after ``ctx``; anything else is a registration error."""
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise SpecError(f"stage {name!r}: its function takes no 'ctx' parameter; a stage is fn(ctx, **ports)")
    ports = tuple(p.name for p in params[1:])
    unknown = [p for p in ports if p not in PORT_PROTOCOLS]
    if unknown:
        raise SpecError(
            f"stage {name!r}: parameter {unknown[0]!r} is not a port; parameters after 'ctx' name the ports "
            f"the stage uses: {choices(PORT_PROTOCOLS)}"
        )
    return ports


_STAGE_MODULE = "tinkex_cookbook.pipeline.stages."
BUILTIN_STAGES: dict[str, str] = {
    **dict.fromkeys(("init_session", "init_tokenizer", "resume", "checkpoint", "save_final", "open_sampler",
                     "update_sampler", "log_step"), _STAGE_MODULE + "common"),
    **dict.fromkeys(("load_dataset", "build_dataset", "set_epoch", "get_batch", "forward_backward", "optim_step",
                     "log_step_metrics", "finish_steps", "evaluate_at_end", "evaluate"), _STAGE_MODULE + "supervised"),
    **dict.fromkeys(("open_stream", "build_stream", "get_stream_batch"), _STAGE_MODULE + "sl_stream"),
    **dict.fromkeys(("evaluate_base", "evaluate_final"), _STAGE_MODULE + "replies"),
    **dict.fromkeys(("rl_load_problems", "rl_build_envs", "rl_open_samplers", "rl_sample", "rl_train",
                     "rl_update_sampler", "rl_evaluate"), _STAGE_MODULE + "rl"),
    **dict.fromkeys(("dpo_load_pairs", "dpo_reference", "dpo_step", "dpo_evaluate"), _STAGE_MODULE + "dpo"),
    **dict.fromkeys(("evals_start", "run_evals", "evals_final"), _STAGE_MODULE + "evals"),
    "write_transcript": _STAGE_MODULE + "transcripts",
    **dict.fromkeys(("distill_setup", "distill_on_policy_step", "distill_off_policy_step", "distill_evaluate"),
                    _STAGE_MODULE + "distillation"),
}
"""Shipped stages -> the module that registers them (with ``@stage``) when imported on first lookup, so a
run imports only its recipe's stages; a test keeps this table equal to what the modules register."""


def _plugin_stage(name: str, fn: Any) -> StageEntry:
    """A plugin's entry point may name a plain ``fn(ctx, **ports)``; one decorated with ``@stage`` registers
    itself (with its reads and writes) when its module is imported."""
    if not callable(fn):
        raise TypeError(f"{fn!r} is not a stage function fn(ctx, **ports)")
    return StageEntry(name, fn, signature_ports(name, fn))


class StageRegistry:
    """Stage names -> entries, over the shared lazy ``Registry``: shipped stages by module, plugins from the
    ``tinkex_cookbook.stages`` entry-point group."""

    def __init__(self, builtins: Mapping[str, str] | None = None, group: str | None = None) -> None:
        self._registry: Registry[StageEntry] = Registry(
            "stage", builtins=builtins, group=group, adapt=_plugin_stage,
            hint="add your own with @stage or register_stage()",
        )

    def register(
        self, name: str, fn: StageFn, *, reads: Iterable[Key[Any]] = (), optional: Iterable[Key[Any]] = (),
        writes: Iterable[Key[Any]] = (), replace: bool = False,
    ) -> StageEntry:
        entry = StageEntry(name, fn, signature_ports(name, fn), tuple(reads), tuple(optional), tuple(writes))
        return self._registry.register(name, entry, replace=replace)

    def get(self, name: str) -> StageEntry:
        return self._registry.get(name)

    def names(self) -> list[str]:
        return self._registry.names()

    def writers(self, key: Key[Any]) -> list[str]:
        """Every known stage that declares it writes ``key`` (imports every stage module to find them)."""
        return sorted(entry.name for entry in self._registry.values() if key in entry.writes)

    def __contains__(self, name: object) -> bool:
        return name in self._registry


STAGES = StageRegistry(BUILTIN_STAGES, group="tinkex_cookbook.stages")


def stage(
    name: str, *, reads: Iterable[Key[Any]] = (), optional: Iterable[Key[Any]] = (), writes: Iterable[Key[Any]] = (),
) -> Callable[[F], F]:
    """Decorator: register ``fn`` as stage ``name`` in the global registry, with the data it reads and writes."""

    def register(fn: F) -> F:
        STAGES.register(name, fn, reads=reads, optional=optional, writes=writes)
        return fn

    return register


def register_stage(
    name: str, fn: F, *, reads: Iterable[Key[Any]] = (), optional: Iterable[Key[Any]] = (),
    writes: Iterable[Key[Any]] = (), replace: bool = False,
) -> F:
    STAGES.register(name, fn, reads=reads, optional=optional, writes=writes, replace=replace)
    return fn
