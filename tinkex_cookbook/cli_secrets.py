"""The command line's one guard for secrets: every argument is checked, every output is scrubbed.

``SecretGuardGroup`` is the click group of ``tinkex-cookbook``: each invocation (the script, ``python -m``,
typer's ``CliRunner``) first refuses an argument that holds a secret of the environment (a key pasted
as a config value, a ``--log-path``, a recipe name) with one line naming the argument and the variable,
never the value, so the secret reaches no file or folder name. Then, while the command runs, stdout
and stderr are ``ScrubbingStream``s and log records are scrubbed when made: every echo, error, usage
error, progress line, warning and traceback passes through the same scrub, whatever printed it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from typing import Any, TextIO

import typer
from typer.core import TyperGroup

from tinkex_cookbook.secrets import FIX, environment_secrets, scrub, secret_in

REFUSED_STATUS = 2
"""A refused argument exits like every other bad input of the command line."""


class ScrubbingStream:
    """A text stream that writes ``secrets`` as ``**********``. A secret split over several writes (a
    reply streamed token by token) is still caught: text that could begin one is held back until the
    next write shows it does not (or ``drain`` at the end lets it out)."""

    def __init__(self, stream: TextIO, secrets: Sequence[str]) -> None:
        self.stream = stream
        self.secrets = list(secrets)
        self._held = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as a text stream refuses it (click tells text from binary streams so)
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        clean = scrub(self._held + text, self.secrets)
        keep = self._secret_start(clean)
        self._held = clean[len(clean) - keep:] if keep else ""
        if len(clean) > keep:
            self.stream.write(clean[:len(clean) - keep])
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def drain(self) -> None:
        """Write what was held back: nothing follows, so it is no secret."""
        held, self._held = self._held, ""
        if held:
            self.stream.write(held)
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def _secret_start(self, text: str) -> int:
        """The length of the longest end of ``text`` that a secret begins with (0: none)."""
        longest = 0
        for secret in self.secrets:
            for size in range(min(len(secret) - 1, len(text)), longest, -1):
                if secret.startswith(text[len(text) - size:]):
                    longest = size
                    break
        return longest

    def __getattr__(self, name: str) -> Any:
        if name in ("buffer", "stream"):  # bytes written under the scrub would not be scrubbed
            raise AttributeError(name)
        return getattr(self.stream, name)


def argument_problem(args: Sequence[str], named: Mapping[str, str], value_options: AbstractSet[str] = frozenset()) -> str | None:
    """Why ``args`` are refused (an argument holds a secret), naming the argument, never the value; else None.
    ``value_options``: the options that take a value (``--manifest X``), so the value after one is named by it."""
    for index, arg in enumerate(args):
        name = secret_in(arg, named)
        if name is None:
            continue
        option, sep, _ = arg.partition("=")
        before = args[index - 1] if index else ""
        if sep and secret_in(option, named) is None:  # --log-path=VALUE, or a config override KEY=VALUE
            place = f"the value of {option.strip()}"
        elif before in value_options:
            place = f"the value of {before}"
        else:
            place = f"argument {index + 1}"
        return f"{place} holds the secret {name}; {FIX}"
    return None


def value_options(command: Any) -> set[str]:
    """Every option name of ``command`` and its subcommands that takes a value (not a flag)."""
    names: set[str] = set()
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "option" and not param.is_flag and not param.count:
            names.update(param.opts)
    for sub in getattr(command, "commands", {}).values():
        names |= value_options(sub)
    return names


@contextmanager
def scrubbed_output(secrets: Sequence[str]) -> Iterator[None]:
    """stdout, stderr and every log record made meanwhile, scrubbed of ``secrets``."""
    if not secrets or isinstance(sys.stdout, ScrubbingStream):
        yield
        return
    streams = sys.stdout, sys.stderr
    out, err = ScrubbingStream(streams[0], secrets), ScrubbingStream(streams[1], secrets)
    make_record = logging.getLogRecordFactory()

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.msg, record.args = scrub(record.getMessage(), secrets), None
        return record

    sys.stdout, sys.stderr = out, err
    logging.setLogRecordFactory(scrubbed_record)
    try:
        yield
    finally:
        logging.setLogRecordFactory(make_record)
        sys.stdout, sys.stderr = streams
        out.drain()
        err.drain()


def install_scrubbed_output() -> None:
    """For the whole process (the ``tinkex-cookbook`` script): a traceback Python prints as it exits is
    scrubbed too."""
    secrets = list(environment_secrets())
    if secrets and not isinstance(sys.stdout, ScrubbingStream):
        out, err = ScrubbingStream(sys.stdout, secrets), ScrubbingStream(sys.stderr, secrets)
        sys.stdout, sys.stderr = out, err
        import atexit

        atexit.register(err.drain)
        atexit.register(out.drain)


class SecretGuardGroup(TyperGroup):
    """The top-level command group: arguments holding a secret are refused, output is scrubbed."""

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any,
    ) -> Any:
        named = environment_secrets()
        given = list(sys.argv[1:] if args is None else args)
        with scrubbed_output(list(named)):
            problem = argument_problem(given, named, value_options(self))
            if problem is not None:
                if not standalone_mode:
                    raise typer.BadParameter(problem)
                typer.echo(f"error: {problem}", err=True)
                sys.exit(REFUSED_STATUS)
            return super().main(given, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
