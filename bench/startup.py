"""Cold start: how long a fresh interpreter takes to answer ``--help`` and to run a recipe on ``test``.

Every command runs once per round and the rounds repeat, so a noisy moment on
the machine slows all of them alike. Each figure is the best of ``--repeat``
rounds, the usual reading of timings (anything slower is the machine doing
something else), with the median beside it. Targets: both of ours < 0.5 s. The
reference is the import time of tinker-cookbook's supervised trainer, when an
interpreter that has it is given.

A user runs an installed package, so ``--fresh-venv`` builds a throwaway venv
with a plain ``pip install`` of this checkout (no extras) and measures that. The
dev venv reads slower: its test extras install werkzeug, which
dependency-injector imports whenever it is present.

    python -m bench.startup [--repeat 9] [--fresh-venv | --python PATH] [--reference-python PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

HELP = "tinkex-cookbook --help"
RUN_TEST = "Runtime.run(SlBasic, {}, manifest='test')"
RUN_SNIPPET = f"from tinkex_cookbook import Runtime, SlBasic; {RUN_TEST}"
FLOOR = "  of which importing the libraries alone"
REFERENCE = "import tinker_cookbook.supervised.train"
TARGET = 0.5
CHECKOUT = Path(__file__).resolve().parents[1]


def commands(python: str, reference_python: str | None) -> dict[str, list[str]]:
    measured = {
        HELP: [python, "-m", "tinkex_cookbook.cli", "--help"],
        RUN_TEST: [python, "-c", RUN_SNIPPET],
        # What every run needs (datums, settings, the container, manifests): the floor under ours.
        FLOOR: [python, "-c", "import numpy, pydantic_settings, dependency_injector.containers, yaml"],
    }
    if reference_python:
        measured[REFERENCE] = [reference_python, "-c", REFERENCE]
    return measured


def rounds(measured: dict[str, list[str]], repeat: int, cwd: str) -> dict[str, list[float]]:
    """Run each command once per round, from a folder outside the checkout."""
    times: dict[str, list[float]] = {name: [] for name in measured}
    for name, command in measured.items():  # one unmeasured pass warms the disk and bytecode caches
        subprocess.run(command, check=True, cwd=cwd, capture_output=True)
    for _ in range(repeat):
        for name, command in measured.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, cwd=cwd, capture_output=True)
            times[name].append(time.perf_counter() - started)
    return times


def fresh_venv(root: Path) -> str:
    """A venv holding this checkout installed the way a user installs it."""
    venv.create(root, with_pip=True)
    python = str(root / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(CHECKOUT)], check=True)
    return python


def reference_importable(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import tinker_cookbook"], check=False, capture_output=True)
    return probe.returncode == 0


def report(times: dict[str, list[float]]) -> None:
    print(f"{'':<44} {'best':>7} {'median':>8}")
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        verdict = ""
        if name in (HELP, RUN_TEST):
            verdict = "ok" if best < TARGET else f"over the {TARGET} s target"
        print(f"{name:<44} {best:6.3f}s {median:7.3f}s  {verdict}")
        if name == FLOOR:
            print(f"{'':<44} (numpy, pydantic-settings, dependency-injector, pyyaml)")
    if REFERENCE not in times:
        print("tinker-cookbook is not importable here; pass --reference-python to compare")
        return
    reference = min(times[REFERENCE])
    for name in (HELP, RUN_TEST):
        print(f"  reference / {name}: {reference / min(times[name]):5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--python", default=sys.executable,
                       help="the interpreter to measure (default: this one)")
    where.add_argument("--fresh-venv", action="store_true",
                       help="measure a throwaway venv with this checkout pip-installed, no extras")
    parser.add_argument("--reference-python", default=sys.executable,
                        help="an interpreter with tinker-cookbook installed (default: this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        python = fresh_venv(Path(scratch) / "venv") if args.fresh_venv else args.python
        reference = args.reference_python if reference_importable(args.reference_python) else None
        report(rounds(commands(python, reference), args.repeat, cwd=scratch))


if __name__ == "__main__":
    main()
