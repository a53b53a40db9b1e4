"""Runtime contracts beyond ``test_runtime.py``: exact event/metric agreement, what a crashed run
leaves behind, adapter lifetimes across failures and runs, secrets kept out of run files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinkex_cookbook import Runtime, SlBasic, StageError
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.datasets.memory import MemoryDatasetStore
from tinkex_cookbook.adapters.datasets.noop import synthetic_conversation
from tinkex_cookbook.adapters.training.noop import NoopTrainingClient, NoopTrainingService
from tinkex_cookbook.pipeline import MemorySink
from tinkex_cookbook.runtime import Settings
from tinkex_cookbook.runtime.builtin_adapters import builtin_registry
from tinkex_cookbook.runtime.registry import AdapterEntry

SMALL = {"save_every": 2, "eval_every": 3, "batch_size": 8, "test_size": 16}  # 80 train rows: 10 steps


def local(root: Path) -> dict:
    return {"blob_store": {"adapter": "local", "root": str(root)}}


def test_metric_rows_are_exactly_the_metric_events() -> None:
    result = Runtime.run(SlBasic, SMALL, manifest="test")
    events = [{"event": e.name, **e.data} for e in result.events if e.name in ("train.step", "train.eval")]
    assert result.metrics == events and len(events) == 10 + 5  # evals before the first step, every 3 steps and after the last


def test_every_stage_start_is_closed_by_its_own_stop() -> None:
    events = Runtime.run(SlBasic, SMALL, manifest="test").events
    brackets = [(e.name, e.data["stage"]) for e in events if e.name.startswith("stage.")]
    starts, stops = brackets[0::2], brackets[1::2]
    assert {name for name, _ in starts} == {"stage.start"} and {name for name, _ in stops} == {"stage.stop"}
    assert [stage for _, stage in starts] == [stage for _, stage in stops]


def test_step_eval_and_checkpoint_steps_follow_the_config() -> None:
    result = Runtime.run(SlBasic, SMALL, manifest="test")
    steps = {name: [e.data["step"] for e in result.events if e.name == name]
             for name in ("train.step", "train.eval", "train.checkpoint")}
    assert steps["train.step"] == list(range(1, 11))
    assert steps["train.eval"] == [0, 3, 6, 9, 10]  # the base model, every eval_every steps, the last step
    assert [e.data["step"] for e in result.events if e.name == "train.summary"] == [10]
    assert steps["train.checkpoint"] == [2, 4, 6, 8, 10, 10]  # the last one is the final save
    assert "/final" in result.state["final_checkpoint"]


class FailingTrainingService(NoopTrainingService):
    """A noop backend whose optimizer step number ``fail_at`` raises."""

    fail_at = 5

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None):
        service = self

        class Client(NoopTrainingClient):
            def optim_step(self, adam_params):
                if self.state.optim_steps + 1 == service.fail_at:
                    raise ConnectionError("backend went away")
                return super().optim_step(adam_params)

        return Client(self, base_model, rank)


def test_crashed_run_keeps_metrics_and_checkpoints_up_to_the_failure(tmp_path: Path) -> None:
    sink = MemorySink()
    ports = {**local(tmp_path), "training_client": FailingTrainingService()}
    with pytest.raises(StageError, match="stage 'optim_step' failed: ConnectionError") as caught:
        Runtime.run(SlBasic, {**SMALL, "log_path": "crash"}, manifest="test", ports=ports, sinks=[sink])
    assert isinstance(caught.value.__cause__, ConnectionError)
    run_dir = tmp_path / "crash"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["event"] == "train.step"] == [1, 2, 3, 4]
    saved = [json.loads(line)["step"] for line in (run_dir / "checkpoints.jsonl").read_text().splitlines()]
    assert saved == [2, 4]
    assert sink.names()[-1] == "workflow.exception" and sink.events[-1].data["stage"] == "optim_step"


class Counter:
    def __init__(self) -> None:
        self.built = 0
        self.closed = 0

    def build(self, options: object, settings: Settings) -> MemoryBlobStore:
        self.built += 1
        store = MemoryBlobStore()
        store.close = self.close  # type: ignore[attr-defined]
        return store

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter()
    registry = builtin_registry()
    registry.register(AdapterEntry("blob_store", "counting", counter.build))
    monkeypatch.setattr(Runtime, "registry", registry)
    return counter


def test_adapters_are_closed_when_a_stage_fails(counter: Counter) -> None:
    rows = [{"messages": "not a list"} for _ in range(40)]
    with pytest.raises(StageError, match="load_dataset"):
        Runtime.run(SlBasic, SMALL, manifest="test",
                    ports={"blob_store": "counting", "dataset_store": MemoryDatasetStore({"no_robots": rows})})
    assert (counter.built, counter.closed) == (1, 1)


def test_each_run_builds_and_closes_its_own_adapters(counter: Counter) -> None:
    for _ in range(2):
        Runtime.run(SlBasic, SMALL, manifest="test", ports={"blob_store": "counting"})
    assert (counter.built, counter.closed) == (2, 2)


def test_default_manifest_runs_without_a_key_once_its_unshipped_ports_are_rebound(tmp_path: Path) -> None:
    ports = {**local(tmp_path), "training_client": "noop", "dataset_store": "noop", "hub_client": "noop"}
    result = Runtime.run(SlBasic, {**SMALL, "log_path": "d"}, manifest="default", ports=ports, settings=Settings())
    assert result.manifest.sources == ("default", "ports=")
    assert result.completed_stages[-1] == "save_final"


def test_no_secret_reaches_the_run_files_or_events(tmp_path: Path) -> None:
    settings = Settings(tinker_api_key="tml-marker-77", hf_token="hf-marker-77")
    result = Runtime.run(SlBasic, {**SMALL, "log_path": "s"}, manifest="test", ports=local(tmp_path),
                         settings=settings)
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert "spec.json" in result.artifacts and written
    assert "marker-77" not in written and "marker-77" not in repr(result.events)


def test_malformed_row_error_gives_the_rows_index_in_the_dataset() -> None:
    rows = [synthetic_conversation("x", "train", i) for i in range(40)]
    rows[20] = {"messages": [{"role": "user"}]}
    with pytest.raises(StageError, match=r"row 20\b"):
        Runtime.run(SlBasic, SMALL, manifest="test", ports={"dataset_store": MemoryDatasetStore({"no_robots": rows})})
