"""Shared test helpers for crash-and-resume tests: a dying optimizer, a local run folder, timing-free metric rows,
a dead pid; and a diverging optimizer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

from tinkex_cookbook.adapters.training.noop import NoopTrainingClient, NoopTrainingService
from tinkex_cookbook.ports import OptimStepResponse, ResolvedFuture

TIMING = ("step_seconds", "tokens_per_second")


def crash_on_optim_step(client: Any, crash_at: int) -> Any:
    """Make ``client`` raise when its ``crash_at``-th optimizer step is submitted, like a killed process."""
    original, submitted = client.optim_step, [0]

    def optim_step(params: Any) -> Any:
        submitted[0] += 1
        if submitted[0] == crash_at:
            raise RuntimeError("killed")
        return original(params)

    client.optim_step = optim_step
    return client


class CrashAfter(NoopTrainingService):
    """The noop training backend, dying when asked for optimizer step ``crash_at``, like a process killed mid-run."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.crash_at = crash_at

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None) -> Any:
        return crash_on_optim_step(super().create_lora_training_client(base_model, rank, seed), self.crash_at)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def local_blobs(root: Any) -> dict[str, Any]:
    """``ports=`` binding the run's blob store to files under ``root``."""
    return {"blob_store": {"adapter": "local", "root": str(root)}}


def metric_rows(lines: Iterable[str]) -> list[dict[str, Any]]:
    """``metrics.jsonl`` rows without wall-clock fields, which differ between otherwise equal runs."""
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def crashing_local_service(root: Any, crash_at: int) -> Any:
    """The local torch backend (one thread) over a local blob root, whose ``crash_at``-th optimizer step dies."""
    from tinkex_cookbook.adapters.blobs.local import LocalBlobStore
    from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService

    service = LocalTorchTrainingService(LocalBlobStore(root), threads=1)
    create = service.create_lora_training_client

    def create_crashing(base_model: str, rank: int = 32, seed: int | None = None) -> Any:
        return crash_on_optim_step(create(base_model, rank, seed), crash_at)

    service.create_lora_training_client = create_crashing  # type: ignore[method-assign]
    return service


class SignalAt(NoopTrainingService):
    """The noop training backend, sending this process ``sig`` when optimizer step ``at`` is submitted (Ctrl-C
    mid-step); with ``again``, a second one when the stop's checkpoint is being saved (Ctrl-C twice)."""

    def __init__(self, at: int, sig: int = signal.SIGINT, again: bool = False) -> None:
        super().__init__()
        self.at, self.sig, self.again = at, sig, again

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None) -> Any:
        client: Any = super().create_lora_training_client(base_model, rank, seed)
        optim_step, save_state, submitted = client.optim_step, client.save_state, [0]

        def signalling_optim_step(params: Any) -> Any:
            submitted[0] += 1
            if submitted[0] == self.at:
                signal.raise_signal(self.sig)
            return optim_step(params)

        def signalling_save_state(name: str) -> Any:
            if self.again and submitted[0] >= self.at:
                signal.raise_signal(self.sig)
            return save_state(name)

        client.optim_step, client.save_state = signalling_optim_step, signalling_save_state
        return client


class SignalOnStep:
    """A telemetry sink sending this process ``sig`` when step ``step``'s metrics are logged: Ctrl-C during a
    step, for any recipe (one whose optimizer steps are not its steps, e.g. RL skipping a batch, too)."""

    def __init__(self, step: int, sig: int = signal.SIGINT) -> None:
        self.step, self.sig = step, sig

    def handle(self, event: Any) -> None:
        if event.name == "train.step" and event.data.get("step") == self.step:
            signal.raise_signal(self.sig)

    def close(self) -> None:
        pass


class DivergingClient(NoopTrainingClient):
    """The noop client, whose optimizer step ``at`` reports ``value`` as its gradient norm."""

    def __init__(self, service: NoopTrainingService, base_model: str, rank: int, at: int, value: float) -> None:
        super().__init__(service, base_model, rank)
        self.at, self.value = at, value

    def optim_step(self, adam_params: Any) -> ResolvedFuture[OptimStepResponse]:
        response = super().optim_step(adam_params).result()
        if self.state.optim_steps == self.at:
            return ResolvedFuture(OptimStepResponse({**response.metrics, "grad_norm": self.value}))
        return ResolvedFuture(response)


class Diverging(NoopTrainingService):
    def __init__(self, at: int, value: float) -> None:
        super().__init__()
        self.at, self.value = at, value

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None) -> Any:
        return DivergingClient(self, base_model, rank, self.at, self.value)
