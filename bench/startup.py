"""Cold start: how long a fresh interpreter takes to answer ``--help`` and to run a recipe on ``test``.

Each figure is the median wall time of ``--repeat`` fresh ``python`` processes,
measured side by side in one run, beside the import time of tinker-cookbook's
supervised trainer when it is importable (set ``--reference-python`` to an
interpreter that has it, e.g. a separate venv). Targets: both of ours < 0.5 s.

    python -m bench.startup [--repeat 5] [--reference-python /path/to/python]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HELP = [sys.executable, "-m", "tinkex_cookbook.cli", "--help"]
RUN_TEST = [sys.executable, "-c",
            "from tinkex_cookbook import Runtime, SlBasic; Runtime.run(SlBasic, {}, manifest='test')"]
REFERENCE = "import tinker_cookbook.supervised.train"
FLOOR = [sys.executable, "-c", "import numpy, pydantic_settings, dependency_injector.containers, yaml"]
"""The libraries every run needs (datums, settings, the container, manifests): the floor under our figure."""


def cold(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reference-python", default=sys.executable,
                        help="an interpreter with tinker-cookbook installed (default: this one)")
    args = parser.parse_args()
    cold(HELP, 1)  # warm the bytecode caches once
    ours = {"tinkex-cookbook --help": cold(HELP, args.repeat),
            "Runtime.run(SlBasic, {}, manifest='test')": cold(RUN_TEST, args.repeat)}
    floor = cold(FLOOR, args.repeat)
    for name, seconds in ours.items():
        print(f"{name:<44} {seconds:6.3f} s  {'ok' if seconds < 0.5 else 'over the 0.5 s target'}")
    print(f"{'  of which importing the libraries alone':<44} {floor:6.3f} s  "
          "(numpy, pydantic-settings, dependency-injector, pyyaml)")
    try:
        reference = cold([args.reference_python, "-c", REFERENCE], args.repeat)
    except subprocess.CalledProcessError:
        print("tinker-cookbook is not importable here; pass --reference-python to compare")
        return
    print(f"{'import tinker_cookbook.supervised.train':<44} {reference:6.3f} s")
    for name, seconds in ours.items():
        print(f"  reference / {name}: {reference / seconds:5.1f}x")


if __name__ == "__main__":
    main()
