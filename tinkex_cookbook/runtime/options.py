"""How to run a spec, apart from what it runs: one value instead of a parameter list per entry point.

``Runtime.run``, ``run_spec`` and ``eval`` take ``RunOptions``' fields as keyword
arguments (``Runtime.run(SlBasic, cfg, manifest="prod", verbose=True)``), or a
whole ``RunOptions`` as ``options=`` for code that builds one and runs several
specs with it; not both, since which would win is a guess (change a field with
``dataclasses.replace(options, manifest="prod")``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, TypedDict

from tinkex_cookbook.errors import choices
from tinkex_cookbook.pipeline import Sink
from tinkex_cookbook.pipeline.stopping import StopRequest
from tinkex_cookbook.runtime.settings import Settings

PortsInput = Mapping[str, Any] | None
"""Per-port overrides: an adapter name, ``{"adapter": name, **options}``, or a ready-made adapter object."""


@dataclass(frozen=True)
class RunOptions:
    """Where a run happens and where its events go.

    ``settings`` is read from the environment when the options are made, once per run.
    """

    manifest: str | None = None
    """A shipped manifest's name or a YAML path; unset: ``TINKEX_MANIFEST``, else ``default``."""
    ports: PortsInput = None
    dry_run: bool = False
    """Print the plan (manifest, bindings, stages) and build nothing."""
    verbose: bool = False
    quiet: bool = False
    """The config's sinks (``wandb_project``, ``trackio_project``) keep their libraries' console lines off."""
    settings: Settings = field(default_factory=Settings)
    sinks: Sequence[Sink] = ()
    """Extra telemetry sinks (e.g. ``WandbSink``), after the run folder's own."""
    out: TextIO | None = None
    """Where a dry run prints its plan (default: stdout)."""
    stop: StopRequest | None = None
    """Set it (from another thread) to stop the run at its next step boundary, checkpointed; the run then
    raises ``RunStoppedError``. Ctrl-C and SIGTERM set it too while a run holds the main thread."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sinks", tuple(self.sinks))  # a caller's list, copied: the options stay frozen

    @classmethod
    def of(cls, options: RunOptions | None = None, **fields: Any) -> RunOptions:
        """``options``, else the ``fields``; an unknown field, or fields given beside ``options``, is a
        TypeError naming them."""
        unknown = sorted(set(fields) - set(RUN_OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown run option {unknown[0]!r}; run options are {choices(RUN_OPTION_NAMES)}")
        if options is not None and fields:
            given = ", ".join(f"{name}=" for name in sorted(fields))
            raise TypeError(f"options= and {given} given together; pass one: set the field in the options "
                            f"(dataclasses.replace(options, {min(fields)}=...)) or drop options=")
        return options if options is not None else cls(**fields)


class RunFields(TypedDict, total=False):
    """``RunOptions``' fields as keyword arguments, so type checkers see the entry points' keywords."""

    manifest: str | None
    ports: PortsInput
    dry_run: bool
    verbose: bool
    quiet: bool
    settings: Settings
    sinks: Sequence[Sink]
    out: TextIO | None
    stop: StopRequest | None


RUN_OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunOptions))
assert RUN_OPTION_NAMES == tuple(RunFields.__annotations__), "RunFields must list RunOptions' fields"
