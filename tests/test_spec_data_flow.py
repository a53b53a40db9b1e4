"""Every shipped recipe's spec declares a data flow the runner accepts, and a spec with a writer taken
out fails before any port is built, naming the stage and the key it reads."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook import Runtime, SpecError
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.pipeline import STAGES, Runner
from tinkex_cookbook.recipes import get_recipe, parse_config
from tinkex_cookbook.runtime import Settings
from tinkex_cookbook.runtime.builtin_adapters import builtin_registry
from tinkex_cookbook.runtime.registry import AdapterEntry
from tinkex_cookbook.spec import Experiment, LoopSpec, Node

CONFIGS: dict[str, list[dict[str, Any]]] = {
    "sl_basic": [{"batch_size": 8}, {"test_size": 0, "save_every": 0, "eval_every": 0}],
    "rl_basic": [{"num_steps": 2, "batch_size": 2}, {"num_steps": 3, "batch_size": 2, "off_policy_steps": 1,
                                                      "kl_penalty_coef": 0.1, "save_every": 1}],
    "math_rl": [{"num_steps": 2, "batch_size": 2}],
    "dpo": [{"batch_size": 4}, {"test_size": 0, "eval_every": 0}],
    "distillation": [{"teacher_model": "meta-llama/Llama-3.2-1B", "num_steps": 2, "batch_size": 2},
                     {"teacher": "llm", "mode": "off_policy", "num_steps": 2, "batch_size": 2, "eval_size": 0}],
}
CASES = [(recipe, cfg) for recipe, cfgs in CONFIGS.items() for cfg in cfgs]


def specs(recipe: str, cfg: dict[str, Any]) -> tuple[Experiment, Experiment]:
    recipe_cls = get_recipe(recipe)
    config = parse_config(recipe_cls.Config, {"renderer_name": "role_colon", **cfg})
    return recipe_cls.build_spec(config), recipe_cls.build_eval_spec(config)


@pytest.mark.parametrize(("recipe", "cfg"), CASES)
def test_every_shipped_spec_and_eval_spec_validates(recipe: str, cfg: dict[str, Any]) -> None:
    for spec in specs(recipe, cfg):
        Runner(STAGES).validate(spec)
        Runner(STAGES).validate(Experiment.from_json(spec.to_json()))


@pytest.mark.parametrize("recipe", sorted(CONFIGS))
def test_eval_runs_for_every_recipe_on_the_test_manifest(recipe: str) -> None:
    cfg = {"renderer_name": "role_colon", **CONFIGS[recipe][0]}
    result = Runtime.eval(recipe, cfg, manifest="test")
    assert result.experiment.name.endswith(":eval")
    assert any(e.name == "train.eval" for e in result.events), result.event_names
    assert "save_final" not in result.completed_stages


def test_eval_loads_the_runs_final_checkpoint() -> None:
    store = MemoryBlobStore()
    cfg = {"renderer_name": "role_colon", "num_steps": 2, "batch_size": 2, "log_path": "runs/rl"}
    Runtime.run("rl_basic", cfg, manifest="test", ports={"blob_store": store})
    result = Runtime.eval("rl_basic", cfg, manifest="test", ports={"blob_store": store})
    assert [e.data["checkpoint"] for e in result.events if e.name == "train.resume"] == ["final"]
    assert [e.data["step"] for e in result.events if e.name == "train.eval"] == [2]


@pytest.mark.parametrize("recipe", sorted(CONFIGS))
def test_eval_of_a_run_needs_only_its_log_path_and_leaves_its_folder_as_it_was(recipe: str) -> None:
    """Evaluating a finished run reads its saved config and checkpoint, and writes nothing into its folder."""
    store = MemoryBlobStore()
    cfg = {"renderer_name": "role_colon", **CONFIGS[recipe][0], "save_every": 1, "log_path": "runs/r"}
    Runtime.run(recipe, cfg, manifest="test", ports={"blob_store": store})
    before = {key: store.read(key) for key in store.list()}
    result = Runtime.eval(recipe, {"log_path": "runs/r"}, manifest="test", ports={"blob_store": store})
    assert [e.data["checkpoint"] for e in result.events if e.name == "train.resume"] == ["final"]
    assert result.experiment.config["save_every"] == 1 and result.experiment.purpose == "eval"
    assert any(e.name == "train.eval" for e in result.events)
    assert {key: store.read(key) for key in store.list()} == before


def _without(nodes: list[Node], name: str) -> list[Node]:
    kept: list[Node] = []
    for node in nodes:
        if isinstance(node, LoopSpec):
            kept.append(node.model_copy(update={"body": _without(node.body, name)}))
        elif node.name != name:
            kept.append(node)
    return kept


def _writers(spec: Experiment) -> list[tuple[str, str]]:
    """(stage, key it writes) for every key some later stage of the spec reads."""
    names = spec.stage_names()
    reads = {key for name in names for key in STAGES.get(name).reads}
    return [(name, key.name) for name in names for key in STAGES.get(name).writes if key in reads]


def _only_writer(spec: Experiment, stage: str, key: str) -> bool:
    return [s for s, k in _writers(spec) if k == key] == [stage]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_removing_the_only_writer_of_a_read_key_fails_validation_naming_it(data: st.DataObject) -> None:
    recipe, cfg = data.draw(st.sampled_from(CASES))
    spec = data.draw(st.sampled_from(specs(recipe, cfg)))
    candidates = [(s, k) for s, k in _writers(spec) if _only_writer(spec, s, k)]
    stage, _ = data.draw(st.sampled_from(candidates))
    broken = spec.model_copy(update={"stages": _without(spec.stages, stage)})
    with pytest.raises(SpecError) as caught:
        Runner(STAGES).validate(broken)
    message = str(caught.value)
    assert re.match(r"(stage '\w+' reads (resource|state) '\w+'|loop '\w+' counts to state\['\w+'\]), which no "
                    r"stage before it writes; stages that write it: ", message), message
    assert stage in message.split("stages that write it: ")[1].split(", ")


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The blob stores built, through a ``recording`` adapter."""
    built: list[str] = []

    def factory(options: object, settings: Settings) -> MemoryBlobStore:
        built.append("blob_store")
        return MemoryBlobStore()

    registry = builtin_registry()
    registry.register(AdapterEntry("blob_store", "recording", factory))
    monkeypatch.setattr(Runtime, "registry", registry)
    return built


def test_a_spec_json_with_a_stage_removed_fails_before_any_port_is_built_and_in_dry_run(built: list[str]) -> None:
    spec, _ = specs("sl_basic", CONFIGS["sl_basic"][0])
    data = json.loads(spec.to_json())
    data["stages"] = [node for node in data["stages"] if node.get("name") != "build_dataset"]
    broken = Experiment.model_validate(data)
    expected = "stage 'resume' reads state 'total_steps', which no stage before it writes; stages that write it: "
    for dry_run in (False, True):
        out = io.StringIO()
        with pytest.raises(SpecError, match=re.escape(expected)) as caught:
            Runtime.run_spec(broken, manifest="test", ports={"blob_store": "recording"}, dry_run=dry_run, out=out)
        assert "build_dataset" in str(caught.value) and out.getvalue() == ""
    assert built == []
