"""Every error the cookbook raises on purpose.

Each category also inherits the stdlib type it replaces, so callers that catch
``ValueError`` or ``LookupError`` keep working, and every error pickles (its
arguments are plain strings) so it crosses process boundaries intact::

    CookbookError
    ├── ConfigError (ValueError)            bad recipe config: names the key, value, fix
    │   └── RunFolderInUseError             another live run holds the log_path folder
    ├── ManifestError (ValueError)          bad or unknown manifest
    │   ├── UnknownManifestError (LookupError)
    │   ├── UnknownPortError (LookupError)
    │   └── UnknownAdapterError (LookupError)
    ├── AdapterUnavailableError (ImportError)   registered adapter whose extra is missing
    ├── MissingSecretError (ValueError)     a required secret is not set in the environment
    │   └── WeakSecretError                 a secret too short or guessable to guard a server
    ├── UnknownNameError (LookupError)      unknown recipe, stage, renderer ...
    ├── NameTakenError (ValueError)         a register_* call reuses a name without replace=True
    ├── PluginError (ImportError)           an installed plugin's entry point fails to load; names it
    ├── SpecError (ValueError)              malformed experiment spec
    ├── DatasetError (ValueError)           dataset missing or a malformed row (with its index)
    │   └── DatasetNotFoundError (LookupError)  the store has no dataset of that name and split
    ├── RendererError (ValueError)          a conversation a renderer cannot render or parse
    ├── BlobStoreError (OSError)
    │   ├── BlobNotFoundError (KeyError)
    │   └── InvalidKeyError (ValueError)    a key that escapes the store's root
    ├── TrainingBackendError (RuntimeError) a training/sampling backend request failed; names it
    ├── TrainingDivergedError (ArithmeticError) a step's loss or gradient norm is NaN or infinite
    ├── EvalError (RuntimeError)            an evaluation ran and failed (e.g. inspect marked its task failed)
    ├── StageError (RuntimeError)           a pipeline stage failed; names the stage
    └── RunStoppedError (RuntimeError)      a stop was asked for (Ctrl-C, SIGTERM): checkpointed, then stopped
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Any

SHOWN_CHARS = 60
"""How much of a bad value an error message quotes."""
SHOWN_PROBLEMS = 10
"""How many problems of one value an error lists (a file of 40,000 unknown keys is one mistake)."""
_BOUNDED = reprlib.Repr()
_BOUNDED.maxlevel, _BOUNDED.maxstring, _BOUNDED.maxother = 3, SHOWN_CHARS, SHOWN_CHARS
_BOUNDED.maxlist = _BOUNDED.maxtuple = _BOUNDED.maxdict = _BOUNDED.maxset = _BOUNDED.maxfrozenset = 8


class CookbookError(Exception):
    """Root of every error the cookbook raises on purpose."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``value``'s repr cut to ``limit`` characters, built without walking all of it.

    ``f"{value!r:.60}"`` renders the whole value first, and a value read from a file can be huge, nested
    a thousand deep, or share one list a billion times over; this looks at a few items of a few levels
    and never fails (an integer too long to print is named by its type).
    """
    try:
        text = _BOUNDED.repr(value)
    except (ValueError, RecursionError):  # an int past the interpreter's digit limit; a value nested too deep
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def choices(names: Iterable[str]) -> str:
    """Render valid names the same way in every error message."""
    listed = sorted(names)
    return ", ".join(repr(n) for n in listed) if listed else "(none)"


def did_you_mean(name: str, valid: Iterable[str], cutoff: float = 0.6) -> str:
    """``did you mean 'x'?`` naming the valid names closest to a mistyped one (all of them when several are
    as close, e.g. ``adam_beta1`` and ``adam_beta2``), or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=cutoff)
    if not close:
        return ""
    best = _similarity(name, close[0])
    tied = sorted(c for c in close if _similarity(name, c) == best)
    return "did you mean " + " or ".join(repr(c) for c in tied) + "?"


def _similarity(name: str, candidate: str) -> float:
    """The score ``difflib.get_close_matches`` ranks by."""
    return difflib.SequenceMatcher(None, candidate, name).ratio()


def validation_problems(exc: Any) -> str:
    """One line per pydantic validation error: ``field.path: message (got value)``."""
    problems, errors = [], exc.errors()
    for err in errors[:SHOWN_PROBLEMS]:
        where = shown(".".join(str(part) for part in err["loc"])) if err["loc"] else "top level"
        got = f" (got {shown(err['input'])})" if err["type"] != "extra_forbidden" else ""
        problems.append(f"{where}: {err['msg']}{got}")
    more = len(errors) - SHOWN_PROBLEMS
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


class ConfigError(CookbookError, ValueError):
    """A recipe config value is missing, unknown or invalid."""


class RunFolderInUseError(ConfigError):
    """Another run holds the run folder (its ``run.lock``); names the folder, the holder and the fix."""


class ManifestError(CookbookError, ValueError):
    """A manifest cannot be loaded, merged or validated."""


class UnknownManifestError(ManifestError, LookupError):
    """A manifest name matches no shipped manifest and no file."""


class UnknownPortError(ManifestError, LookupError):
    """A manifest or override names a port the cookbook does not have."""


class UnknownAdapterError(ManifestError, LookupError):
    """A manifest binds a port to an adapter name nobody registered."""


class AdapterUnavailableError(CookbookError, ImportError):
    """A registered adapter cannot be built here (missing extra, not yet shipped)."""


class MissingSecretError(CookbookError, ValueError):
    """A secret the bound adapters need is not set in the environment."""


class WeakSecretError(MissingSecretError):
    """A secret is set but too short or too guessable to guard a server; names the rule, never the value."""


class UnknownNameError(CookbookError, LookupError):
    """A name (recipe, stage, renderer, ...) matches nothing registered."""


class NameTakenError(CookbookError, ValueError):
    """A ``register_*`` call names something already registered; ``replace=True`` says it is meant."""


class PluginError(CookbookError, ImportError):
    """An installed plugin's entry point cannot be imported or points at the wrong kind of object."""


class SpecError(CookbookError, ValueError):
    """An experiment spec is malformed or cannot run."""


class DatasetError(CookbookError, ValueError):
    """A dataset is unavailable or one of its rows is malformed."""


class DatasetNotFoundError(DatasetError, LookupError):
    """The store has no dataset of that name and split (as opposed to one it found and could not read), so a
    caller may look elsewhere, e.g. under a named dataset's hub id."""


class RendererError(CookbookError, ValueError):
    """A conversation a renderer cannot render, or a response it cannot parse."""


class BlobStoreError(CookbookError, OSError):
    """A blob store read, write, list or delete failed."""


class BlobNotFoundError(BlobStoreError, KeyError):
    """The key has no blob."""

    def __str__(self) -> str:  # KeyError would quote the message
        return CookbookError.__str__(self)


class InvalidKeyError(BlobStoreError, ValueError):
    """The key is empty, absolute or escapes the store's root."""


class TrainingBackendError(CookbookError, RuntimeError):
    """A training or sampling request failed at the backend, after its retries; names the request."""


class TrainingDivergedError(CookbookError, ArithmeticError):
    """A training step's loss or gradient norm is NaN or infinite; names the step, the metric, the last
    checkpoint and the fix (a lower learning rate, in a new run folder). ``args``: the message, then (when
    known) the learning rate to try instead, as text, so a command line can print the command to rerun."""

    @property
    def lower_learning_rate(self) -> str:
        return str(self.args[1]) if len(self.args) > 1 else ""


class EvalError(CookbookError, RuntimeError):
    """An evaluation ran and failed (an inspect-ai task its runner marked failed); names the task and
    where its log is."""


class StageError(CookbookError, RuntimeError):
    """A pipeline stage raised; the message names the stage, the cause is chained."""


class RunStoppedError(CookbookError, RuntimeError):
    """A stop was asked for (Ctrl-C, SIGTERM, ``StopRequest.request``): the run saved a checkpoint at a step
    boundary and stopped. ``args``: the message, then (when known) the run folder's ``log_path`` and the
    name of the signal (``SIGINT``), so a command line can print the command that resumes it."""

    @property
    def log_path(self) -> str:
        return str(self.args[1]) if len(self.args) > 1 else ""

    @property
    def signal_name(self) -> str:
        return str(self.args[2]) if len(self.args) > 2 else ""


def error_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors behind it (causes, else contexts), outermost first, each once: libraries wrap
    the error that says what happened (a reset, a 503) in ones that do not."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
