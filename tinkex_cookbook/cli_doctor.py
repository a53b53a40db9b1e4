"""`tinkex-cookbook doctor`: is every port of a manifest ready to run here?

Registered in ``cli.py`` with ``app.command()(doctor)``. Imports nothing heavy until it runs,
so ``tinkex-cookbook --help`` stays fast.
"""

from __future__ import annotations

import typer

MANIFEST_HELP = "Manifest name or YAML path (default: $TINKEX_MANIFEST, else 'default')."


def doctor(
    manifest: str | None = typer.Option(None, "--manifest", "-m", help=MANIFEST_HELP),
) -> None:
    """Build every port's adapter of a manifest and run a cheap health check on it.

    Prints a table: port, adapter, status (ok, FAIL or skip) and hint. Secrets are never printed.
    Exit status: 0 when no port fails, 1 when one does, 2 when the manifest cannot be loaded.
    """
    from rich.console import Console

    from tinkex_cookbook.errors import CookbookError
    from tinkex_cookbook.runtime.doctor import diagnose, render
    from tinkex_cookbook.runtime.settings import Settings

    settings = None
    try:
        settings = Settings()  # a bad TINKEX_PORTS is a one-line error too, not a traceback
        report = diagnose(manifest, settings)
    except CookbookError as exc:
        message = settings.scrub(str(exc)) if settings is not None else str(exc)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
    render(report, Console())
    if not report.ok:
        raise typer.Exit(1)
