"""Reading a config file of many keys: the repeated-key check against plain ``yaml.safe_load``.

The check used to compare each key with every key before it, so 40,000 keys took 15 s where loading
them takes about one; now each key is looked up in a set. Printed per key count: the time to load
the file with the check (``load_config_file``), without it (``yaml.safe_load`` of the same text), and
their ratio, which stays near 1 as the count grows (it grew with the count before).

    python -m bench.yaml_keys [--keys 10000 20000 40000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tinkex_cookbook.runtime.config_file import load_config_file


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def row(keys: int, folder: Path, runs: int = 3) -> tuple[int, float, float]:
    text = "".join(f"k{i}: {i}\n" for i in range(keys))
    path = folder / f"keys{keys}.yaml"
    path.write_text(text)
    return keys, best_of(runs, lambda: load_config_file(path)), best_of(runs, lambda: yaml.safe_load(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000, 20_000, 40_000])
    args = parser.parse_args()
    print(f"{'keys':>7} {'checked s':>10} {'plain s':>8} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for keys, checked, plain in (row(n, Path(folder)) for n in args.keys):
            print(f"{keys:>7} {checked:>10.2f} {plain:>8.2f} {checked / plain:>6.2f}")


if __name__ == "__main__":
    main()
