"""Does the SL loop keep a Tinker server busy? Measured through the official SDK against `serve`.

`serve` runs on 127.0.0.1 over a backend whose single worker computes each
forward_backward and optim_step for ``--compute`` seconds (so its busy time is
known exactly), and adds ``--latency`` seconds to every HTTP request, as a
network would. Three loops train the same number of steps through the SDK:

- ours: ``Runtime.run(SlBasic, ...)`` on the ``tinker`` adapter (submit-ahead, ``pipeline_depth=1``);
- reference: tinker-cookbook's supervised loop shape (submit ``forward_backward`` and
  ``optim_step``, keep ``1 + submit_ahead`` batches pending, drain the oldest), written
  directly on the SDK, since the cookbook itself needs hub downloads to start;
- ours with ``pipeline_depth=0`` (await every step), to show what pipelining hides.

For each: the training loop's span at the server (first training request in to last
result out) over the worker's busy time. Target: ours <= 1.05x.

    python -m bench.tinker_pipelining [--compute 0.05] [--latency 0.02] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import deque
from dataclasses import dataclass

from bench.pipelining import SlowService
from tinkex_cookbook import Runtime, SlBasic
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.datasets.noop import SyntheticChatDatasetStore
from tinkex_cookbook.serve import FaultPlan, LocalTinker, local_tinker

KEY = "tml-bench-local-key-4c2e"
MODEL = "meta-llama/Llama-3.2-1B"  # a packaged tokenizer; the noop backend takes any name
BATCH = 4


class TimedService(SlowService):
    """``SlowService`` without simulated network (the HTTP server adds that), also noting the loop's span."""

    def __init__(self, compute: float) -> None:
        super().__init__(compute, rtt=0.0)
        self.first_call: float | None = None
        self.last_done = 0.0

    def _remote(self, call):
        self.first_call = self.first_call or time.perf_counter()
        delayed = super()._remote(call)
        inner = delayed._future

        def finished(future) -> None:
            self.last_done = max(self.last_done, future.result()[1])

        inner.add_done_callback(finished)
        return delayed


@dataclass
class Timing:
    loop: str
    span: float
    busy: float

    def line(self) -> str:
        return f"{self.loop:<34} span {self.span:7.3f}s  busy {self.busy:7.3f}s  ratio {self.span / self.busy:6.3f}x"


def _server(compute: float, latency: float) -> tuple[LocalTinker, TimedService]:
    service = TimedService(compute)
    server = local_tinker(service, MemoryBlobStore(), KEY, faults=FaultPlan(latency=latency))
    return server.start(), service


def _timing(name: str, service: TimedService) -> Timing:
    return Timing(name, service.last_done - (service.first_call or 0.0), service.busy)


def ours(compute: float, latency: float, steps: int, depth: int) -> Timing:
    server, service = _server(compute, latency)
    try:
        cfg = {"model_name": MODEL, "batch_size": BATCH, "test_size": 0, "save_every": 0, "eval_every": 0,
               "pipeline_depth": depth, "max_length": 64}
        ports = {"training_client": {"adapter": "tinker", "base_url": server.base_url},
                 "dataset_store": SyntheticChatDatasetStore(rows=BATCH * steps)}
        Runtime.run(SlBasic, cfg, manifest="test", ports=ports)
    finally:
        server.stop()
        service.close()
    return _timing(f"ours (pipeline_depth={depth})", service)


def reference_loop(compute: float, latency: float, steps: int, submit_ahead: int = 1) -> Timing:
    """tinker-cookbook's supervised loop: submit a batch, drain the oldest once ``1 + submit_ahead`` wait."""
    import tinker
    from tinker import types

    server, service = _server(compute, latency)
    sdk = tinker.ServiceClient(api_key=KEY, base_url=server.base_url)
    try:
        client = sdk.create_lora_training_client(base_model=MODEL, rank=32).result()
        tokens = list(range(1000, 1064))
        datum = types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                            loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 63})
        pending: deque = deque()
        for _ in range(steps):
            pending.append((client.forward_backward([datum] * BATCH, "cross_entropy"),
                            client.optim_step(types.AdamParams(learning_rate=1e-4))))
            if len(pending) >= 1 + submit_ahead:
                fwd, optim = pending.popleft()
                fwd.result(), optim.result()
        while pending:
            fwd, optim = pending.popleft()
            fwd.result(), optim.result()
    finally:
        sdk.close("success").result()
        server.stop()
        service.close()
    return _timing(f"reference loop (submit_ahead={submit_ahead})", service)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compute", type=float, default=0.05, help="worker seconds per training call")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every HTTP request")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("TINKER_TELEMETRY", "0")
    os.environ["TINKER_API_KEY"] = KEY
    print(f"serve on 127.0.0.1, {args.steps} steps, worker {args.compute}s per call, "
          f"+{args.latency}s per HTTP request")
    timings = [
        ours(args.compute, args.latency, args.steps, depth=1),
        reference_loop(args.compute, args.latency, args.steps),
        ours(args.compute, args.latency, args.steps, depth=0),
    ]
    for timing in timings:
        print(timing.line())
    print(f"ours / reference span: {timings[0].span / timings[1].span:.3f}x")


if __name__ == "__main__":
    main()
