"""Runtime.run end to end on the `test` manifest: stages, events, errors, laziness, artifacts."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from tinkex_cookbook import (
    AdapterUnavailableError,
    ConfigError,
    Experiment,
    MissingSecretError,
    Runtime,
    SlBasic,
    StageError,
    UnknownAdapterError,
    UnknownManifestError,
    UnknownPortError,
)
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.datasets.memory import MemoryDatasetStore
from tinkex_cookbook.adapters.datasets.noop import synthetic_conversation
from tinkex_cookbook.pipeline import MemorySink
from tinkex_cookbook.ports import PORT_PROTOCOLS
from tinkex_cookbook.runtime import Settings
from tinkex_cookbook.runtime.builtin_adapters import builtin_registry
from tinkex_cookbook.runtime.registry import AdapterEntry

SMALL = {"save_every": 2, "eval_every": 2, "batch_size": 8, "test_size": 16}


def test_run_completes_every_stage_in_spec_order() -> None:
    spec = Runtime.build_spec(SlBasic, SMALL)
    result = Runtime.run(SlBasic, SMALL, manifest="test")
    assert result.completed_stages == spec.stage_names()
    assert result.state["step"] == result.state["total_steps"] == 10


def test_events_arrive_in_order() -> None:
    names = Runtime.run(SlBasic, SMALL, manifest="test").event_names
    assert names[0] == "workflow.start" and names[-1] == "workflow.stop"
    open_stage = None
    for name in names:
        if name == "stage.start":
            assert open_stage is None
            open_stage = name
        elif name == "stage.stop":
            assert open_stage is not None
            open_stage = None
    assert names.index("train.epoch") < names.index("train.step") < names.index("train.checkpoint")


def test_metrics_rows_follow_steps_and_checkpoints_follow_their_step() -> None:
    result = Runtime.run(SlBasic, SMALL, manifest="test")
    steps = [row["step"] for row in result.metrics if "train_mean_nll" in row]
    assert steps == list(range(1, 11))
    data = [(e.name, e.data.get("step")) for e in result.events if e.name.startswith("train.")]
    for position, (name, step) in enumerate(data):
        if name == "train.checkpoint":
            assert ("train.step", step) in data[:position]


def test_loss_reflects_the_data_it_was_given() -> None:
    short = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}] * 40
    long = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "~" * 50}]}] * 40
    losses = []
    for rows in (short, long):
        store = MemoryDatasetStore({"no_robots": rows})
        result = Runtime.run(SlBasic, SMALL, manifest="test", ports={"dataset_store": store})
        losses.append(next(row["train_mean_nll"] for row in result.metrics if row["event"] == "train.step"))
    assert losses[0] != losses[1]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"manifest": "nope"}, UnknownManifestError, ["'nope'", "'default'", "'local'", "'prod'", "'test'"]),
        ({"manifest": "test", "ports": {"blob_store": "nope"}}, UnknownAdapterError, ["'nope'", "'local'", "'noop'"]),
        ({"manifest": "test", "ports": {"nope": "noop"}}, UnknownPortError, ["'nope'", "'blob_store'"]),
    ],
)
def test_bad_names_raise_typed_errors_listing_choices(kwargs: dict, error: type, words: list[str]) -> None:
    with pytest.raises(error) as caught:
        Runtime.run(SlBasic, {}, **kwargs)
    assert all(word in str(caught.value) for word in words)


@pytest.mark.parametrize(
    ("cfg", "words"),
    [
        ({"nope": 1}, ["unknown config key 'nope'", "'learning_rate'"]),
        ({"learning_rate": -1}, ["learning_rate", "-1"]),
        ({"renderer_name": "nope"}, ["renderer_name", "'nope'", "llama3"]),
        (["batch_size=zero"], ["batch_size", "zero"]),
    ],
)
def test_bad_config_raises_config_error(cfg: object, words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        Runtime.run(SlBasic, cfg, manifest="test")
    assert all(word in str(caught.value) for word in words)


@pytest.mark.parametrize("manifest", ["default", "prod"])
def test_tinker_manifests_need_the_api_key_before_any_work(manifest: str) -> None:
    sink = MemorySink()
    with pytest.raises(MissingSecretError, match="TINKER_API_KEY"):
        Runtime.run(SlBasic, {}, manifest=manifest, sinks=[sink])
    assert sink.events == []


def test_unshipped_adapter_fails_clearly_without_leaking_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = builtin_registry()
    registry.register(AdapterEntry("dataset_store", "future", lambda options, settings: None, shipped=False))
    monkeypatch.setattr(Runtime, "registry", registry)
    settings = Settings(tinker_api_key="tml-marker-123")
    with pytest.raises(AdapterUnavailableError) as caught:
        Runtime.run(SlBasic, {}, manifest="default", ports={"dataset_store": "future"}, settings=settings)
    assert "'future'" in str(caught.value) and "tml-marker-123" not in str(caught.value)


def test_manifest_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKEX_MANIFEST", "test")
    assert Runtime.run(SlBasic, SMALL).manifest.name == "test"
    monkeypatch.setenv("TINKEX_MANIFEST", "nope")
    with pytest.raises(UnknownManifestError):
        Runtime.run(SlBasic, SMALL)


class Counting:
    """Registers adapters that count how often they are built and closed."""

    def __init__(self) -> None:
        self.built: dict[str, int] = {}
        self.closed: dict[str, int] = {}

    def factory(self, port: str, make: type):
        def build(options: object, settings: Settings) -> object:
            self.built[port] = self.built.get(port, 0) + 1
            adapter = make()
            adapter.close = lambda: self.closed.__setitem__(port, self.closed.get(port, 0) + 1)
            return adapter

        return build


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Counting:
    from tinkex_cookbook.adapters.vectors.memory import MemoryVectorStore

    counter = Counting()
    registry = builtin_registry()
    registry.register(AdapterEntry("blob_store", "counting", counter.factory("blob_store", MemoryBlobStore)))
    registry.register(AdapterEntry("vector_store", "counting", counter.factory("vector_store", MemoryVectorStore)))
    monkeypatch.setattr(Runtime, "registry", registry)
    return counter


def test_adapters_are_built_lazily_once_and_closed(counting: Counting) -> None:
    Runtime.run(SlBasic, SMALL, manifest="test", ports={"blob_store": "counting", "vector_store": "counting"})
    assert counting.built == {"blob_store": 1}
    assert counting.closed == {"blob_store": 1}


def test_dry_run_prints_the_plan_and_builds_nothing(counting: Counting) -> None:
    out = io.StringIO()
    result = Runtime.run(SlBasic, {}, manifest="test", ports={"blob_store": "counting"}, dry_run=True, out=out)
    assert result.dry_run and result.completed_stages == []
    assert "blob_store        counting" in out.getvalue() and "save_final" in out.getvalue()
    assert counting.built == {}


def test_instance_overrides_are_used_and_not_closed() -> None:
    rows = [synthetic_conversation("mine", "train", i) for i in range(40)]
    store = MemoryDatasetStore({"no_robots": rows})
    store.close = lambda: pytest.fail("the runtime closed an adapter it did not build")
    result = Runtime.run(SlBasic, SMALL, manifest="test", ports={"dataset_store": store})
    assert result.state["num_batches"] == 3


def test_instance_override_must_satisfy_the_port() -> None:
    with pytest.raises(TypeError, match="DatasetStore"):
        Runtime.run(SlBasic, {}, manifest="test", ports={"dataset_store": object()})


def test_open_gives_every_port_as_its_protocol() -> None:
    with Runtime.open("test") as ports:
        for port, protocol in PORT_PROTOCOLS.items():
            assert isinstance(getattr(ports, port), protocol) and ports[port] is getattr(ports, port)
        with pytest.raises(UnknownPortError, match="'blob_store'"):
            ports["nope"]


def test_open_builds_only_the_ports_read_once_and_closes_them_on_exit(counting: Counting) -> None:
    with Runtime.open("test", {"blob_store": "counting", "vector_store": "counting"}) as ports:
        assert counting.built == {}
        assert ports.blob_store is ports.blob_store
        assert counting.built == {"blob_store": 1} and counting.closed == {}
    assert counting.closed == {"blob_store": 1}


def test_an_adapter_stays_open_for_its_block_through_a_garbage_collection(counting: Counting) -> None:
    """The adapter, not the ports, is what a script keeps; the container must not be collected (and the
    adapter closed under the script: a deadlock once) until the block ends."""
    import gc

    with Runtime.open("test", {"blob_store": "counting"}) as ports:
        store = ports.blob_store
        del ports
        gc.collect()
        assert counting.closed == {}
        store.write("a", b"1")
    assert counting.closed == {"blob_store": 1}


def test_open_closes_its_adapters_when_the_block_raises(counting: Counting) -> None:
    with pytest.raises(ZeroDivisionError), Runtime.open("test", {"blob_store": "counting"}) as ports:
        ports.blob_store.write("a", b"1")
        1 / 0  # noqa: B018
    assert counting.closed == {"blob_store": 1}


def test_a_port_read_after_its_block_is_a_clear_error() -> None:
    with Runtime.open("test") as ports:
        pass
    with pytest.raises(ConfigError, match=r"'training_client'.*inside the `with Runtime.open"):
        ports.training_client


def test_open_checks_secrets_of_the_ports_read_and_those_they_are_built_on(monkeypatch: pytest.MonkeyPatch) -> None:
    with Runtime.open("default") as ports:  # binds tinker, which needs TINKER_API_KEY
        assert ports.blob_store.uri("x").endswith("runs/x")  # reading runs needs no key
        with pytest.raises(MissingSecretError, match="TINKER_API_KEY"):
            ports.training_client
    registry = builtin_registry()
    registry.register(AdapterEntry("blob_store", "keyed", lambda options, settings: MemoryBlobStore(),
                                   secrets=(("TINKER_API_KEY", "tinker_api_key"),)))
    registry.register(AdapterEntry("training_client", "needy", lambda options, settings, blob_store: None,
                                   needs=("blob_store",)))
    monkeypatch.setattr(Runtime, "registry", registry)
    with Runtime.open("test", {"training_client": "needy", "blob_store": "keyed"}) as ports:
        with pytest.raises(MissingSecretError, match="'keyed'"):
            ports.training_client


def test_open_serves_and_never_closes_adapters_passed_in() -> None:
    store = MemoryDatasetStore({})
    store.close = lambda: pytest.fail("the runtime closed an adapter it did not build")
    with Runtime.open("test", {"dataset_store": store}) as ports:
        assert ports.dataset_store is store


def test_eval_runs_setup_and_one_evaluation() -> None:
    result = Runtime.eval(SlBasic, SMALL, manifest="test")
    assert result.completed_stages[-1] == "evaluate"
    assert [row["step"] for row in result.metrics] == [0]


def test_run_folder_holds_spec_manifest_metrics_checkpoints(tmp_path: Path) -> None:
    cfg = {**SMALL, "log_path": "exp1"}
    result = Runtime.run(SlBasic, cfg, manifest="test", ports={"blob_store": {"adapter": "local", "root": str(tmp_path)}})
    run_dir = tmp_path / "exp1"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints.jsonl", "config.json", "loss.html", "manifest.json", "metrics.jsonl", "run.log", "samples.jsonl",
        "spec.json", "summary.json",
    ]
    assert json.loads((run_dir / "config.json").read_text()) == result.experiment.config
    assert "<svg" in (run_dir / "loss.html").read_text() and "train.checkpoint" in (run_dir / "run.log").read_text()
    assert Experiment.from_json((run_dir / "spec.json").read_text()) == result.experiment
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows == result.metrics
    checkpoints = (run_dir / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(c)["step"] for c in checkpoints] == [2, 4, 6, 8, 10, 10]
    assert result.artifacts["metrics.jsonl"] == str(run_dir / "metrics.jsonl")


def test_malformed_row_names_the_stage_and_the_row() -> None:
    rows = [{"messages": [{"role": "user"}]} for _ in range(40)]
    with pytest.raises(StageError) as caught:
        Runtime.run(SlBasic, SMALL, manifest="test", ports={"dataset_store": MemoryDatasetStore({"no_robots": rows})})
    # every row is read in load_dataset, before the session opens
    assert "load_dataset" in str(caught.value) and re.search(r"row \d+, message 0", str(caught.value))
    assert "content" in str(caught.value)


def test_too_few_rows_for_a_batch_is_a_clear_error() -> None:
    rows = [synthetic_conversation("x", "train", i) for i in range(20)]
    with pytest.raises(StageError, match="fewer than batch_size=8"):
        Runtime.run(SlBasic, SMALL, manifest="test", ports={"dataset_store": MemoryDatasetStore({"no_robots": rows})})


def test_an_adapter_that_needs_another_port_gets_the_runs_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinkex_cookbook.adapters.training.noop import NoopTrainingService

    seen: dict[str, object] = {}

    def build(options: object, settings: Settings, blob_store: object) -> NoopTrainingService:
        seen["blob_store"] = blob_store
        return NoopTrainingService()

    registry = builtin_registry()
    registry.register(AdapterEntry("training_client", "needy", build, needs=("blob_store",)))
    monkeypatch.setattr(Runtime, "registry", registry)
    store = MemoryBlobStore()
    Runtime.run(SlBasic, SMALL, manifest="test", ports={"training_client": "needy", "blob_store": store})
    assert seen["blob_store"] is store


@pytest.mark.parametrize("manifest", ["default", "prod"])
def test_a_dry_run_needs_no_secret_and_its_plan_names_each_missing_one(
        manifest: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real run refuses (``test_tinker_manifests_need_the_api_key_before_any_work``); its plan does not."""
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    result = Runtime.run(SlBasic, {}, manifest=manifest, dry_run=True, out=io.StringIO())
    assert "warning: needs TINKER_API_KEY (not set): a real run would fail" in result.plan
