"""Does `serve` keep answering healthz while a hostile client attacks it? Latencies side by side.

The server runs in its own process on 127.0.0.1 (over the noop backend), as
`tinkex-cookbook serve` would, so the attacking threads here do not share its
interpreter. For each attack of ``tests/hostile_http.py``: healthz latencies
(each probe a fresh connection) with no attack, then during the attack.
Target: every probe answered, median under 100 ms.

    python -m bench.serve_hostile [--probes 50]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
from collections.abc import Callable
from multiprocessing.connection import Connection

from tests.hostile_http import (
    Attack,
    Latencies,
    Tally,
    body_flood,
    healthz_under_attack,
    idle_flood,
    request_flood,
    request_head,
    trickle,
)

KEY = "tml-bench-hostile-key-8Tz1"
MIB = 1 << 20


def _serve(port_out: Connection) -> None:
    from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
    from tinkex_cookbook.adapters.training.noop import NoopTrainingService
    from tinkex_cookbook.serve import ServeLimits, local_tinker

    server = local_tinker(NoopTrainingService(), MemoryBlobStore(), KEY, limits=ServeLimits(idle_timeout=2.0))
    port_out.send(server.base_url)
    server.serve_forever()


def _bomb(url: str, tally: Tally) -> Attack:
    import zstandard

    packer, zeros = zstandard.ZstdCompressor().compressobj(), bytes(MIB)
    bomb = b"".join(packer.compress(zeros) for _ in range(1024)) + packer.flush()  # 1 GiB of zeros, ~40 KB
    head = request_head("POST", "/api/v1/forward_backward", {
        "X-API-Key": KEY, "Content-Length": str(len(bomb)), "Content-Encoding": "zstd",
        "Content-Type": "application/x-protobuf"})
    return request_flood(url, tally, head, bomb)


ATTACKS: dict[str, Callable[[str, Tally], Attack]] = {
    "400 MB bodies, no key": lambda url, tally: body_flood(url, tally, {"Content-Length": "419430400"}),
    "Content-Length -1": lambda url, tally: body_flood(url, tally, {"Content-Length": "-1"}),
    "slowloris, 200 conns": lambda url, tally: trickle(url, tally, connections=200),
    "1 GiB zstd bombs, keyed": _bomb,
    "1100 idle connections": lambda url, tally: idle_flood(url, tally, connections=1100),
}


def _ms(latencies: Latencies) -> str:
    seconds = sorted(latencies.seconds)
    if not seconds:
        return f"{'-':>8} {'-':>8} {'-':>8} {latencies.failures:>5}"
    p95 = seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))]
    return (f"{statistics.median(seconds) * 1000:8.1f} {p95 * 1000:8.1f} {seconds[-1] * 1000:8.1f} "
            f"{latencies.failures:>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--probes", type=int, default=50)
    args = parser.parse_args()
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(send,), daemon=True)
    process.start()
    url = receive.recv()
    try:
        print(f"{'attack':<26} {'':<7} {'median':>8} {'p95':>8} {'worst':>8} {'fail':>5}   (ms)")
        for name, make in ATTACKS.items():
            baseline = healthz_under_attack(url, probes=args.probes)
            tally = Tally()
            attacked = healthz_under_attack(url, make(url, tally), probes=args.probes)
            print(f"{name:<26} {'quiet':<7} {_ms(baseline)}")
            print(f"{'':<26} {'attack':<7} {_ms(attacked)}   attacker: {tally.connections} connections, "
                  f"{tally.bytes_sent / MIB:.1f} MiB written to its sockets")
    finally:
        process.terminate()
        process.join()


if __name__ == "__main__":
    main()
