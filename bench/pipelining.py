"""Does the SL loop hide backend latency? Wall time of a run against the backend's busy time.

A latency-injected backend wraps the noop one: each forward_backward and
optim_step travels ``--rtt / 2`` to a single server worker, computes there for
``--compute`` seconds, and travels back. With submit-ahead pipelining the next
step is already queued when the worker finishes, so the run's wall time is
close to the worker's busy time (ratio near 1.0: the latency is hidden);
``pipeline_depth=0`` (await every step) is shown beside it, paying the round
trip every step.

    python -m bench.pipelining [--compute 0.03] [--rtt 0.04] [--steps 48]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.adapters.datasets.noop import SyntheticChatDatasetStore
from tinkex_cookbook.adapters.training.noop import NoopTrainingService


class Delayed:
    """A reply that reaches the client ``delay`` seconds after the server finished it."""

    def __init__(self, future, delay: float) -> None:
        self._future, self._delay = future, delay

    def result(self, timeout: float | None = None):
        value, finished = self._future.result(timeout)
        time.sleep(max(0.0, finished + self._delay - time.perf_counter()))
        return value

    def done(self) -> bool:
        return self._future.done()


class SlowService(NoopTrainingService):
    """A remote-like backend: requests take ``rtt / 2`` to arrive and to answer, and ``compute``
    seconds on one server worker, one call at a time. ``busy`` adds up the compute."""

    def __init__(self, compute: float, rtt: float) -> None:
        super().__init__()
        self.compute, self.rtt, self.busy = compute, rtt, 0.0
        self._worker = ThreadPoolExecutor(max_workers=1)

    def _remote(self, call):
        arrives = time.perf_counter() + self.rtt / 2

        def serve():
            time.sleep(max(0.0, arrives - time.perf_counter()))
            started = time.perf_counter()
            time.sleep(self.compute)
            value = call().result()
            finished = time.perf_counter()
            self.busy += finished - started
            return value, finished

        return Delayed(self._worker.submit(serve), self.rtt / 2)

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None):
        client = super().create_lora_training_client(base_model, rank, seed)
        fwd, opt = client.forward_backward, client.optim_step
        client.forward_backward = lambda data, loss_fn, cfg=None: self._remote(lambda: fwd(data, loss_fn, cfg))
        client.optim_step = lambda params: self._remote(lambda: opt(params))
        return client

    def close(self) -> None:
        self._worker.shutdown()


def measure(compute: float, rtt: float, steps: int, depth: int) -> tuple[float, float]:
    service = SlowService(compute, rtt)
    cfg = {"batch_size": 4, "test_size": 0, "save_every": 0, "eval_every": 0, "pipeline_depth": depth}
    store = SyntheticChatDatasetStore(rows=4 * steps)
    started = time.perf_counter()
    Runtime.run(SlBasic, cfg, manifest="test", ports={"training_client": service, "dataset_store": store})
    wall = time.perf_counter() - started
    service.close()
    return wall, service.busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compute", type=float, default=0.03, help="server seconds per call")
    parser.add_argument("--rtt", type=float, default=0.04, help="network round trip per call")
    parser.add_argument("--steps", type=int, default=48)
    args = parser.parse_args()
    for depth in (1, 0):
        wall, busy = measure(args.compute, args.rtt, args.steps, depth)
        print(f"pipeline_depth={depth}: wall {wall:.3f}s  backend busy {busy:.3f}s  ratio {wall / busy:.3f}x")


if __name__ == "__main__":
    main()
