"""Tokenizer sources: packaged vocabularies offline, local folders, the hub port; parity with transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook import Runtime, SlBasic, UnknownNameError, register_renderer
from tinkex_cookbook.adapters.hub.noop import NoopHubClient
from tinkex_cookbook.train.renderers import renderer_names
from tinkex_cookbook.train.renderers.llama3 import Llama3Renderer
from tinkex_cookbook.train.tokenizer_sources import PACKAGED_TOKENIZERS, get_tokenizer

EXPECTED = {
    "meta-llama/Llama-3.2-1B": ("<|begin_of_text|>", 128000, "<|end_of_text|>", 128001),
    "Qwen/Qwen3-8B": (None, None, "<|im_end|>", 151645),
    "deepseek-ai/DeepSeek-V3": ("<｜begin▁of▁sentence｜>", 0, "<｜end▁of▁sentence｜>", 1),
}


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_packaged_tokenizers_load_offline_with_their_special_tokens(model: str) -> None:
    tokenizer = get_tokenizer(model)
    assert (tokenizer.bos_token, tokenizer.bos_token_id, tokenizer.eos_token, tokenizer.eos_token_id) == EXPECTED[model]
    assert tokenizer.decode(tokenizer.encode("Hello, world!", add_special_tokens=False)) == "Hello, world!"


def test_every_registered_model_has_a_source_that_resolves() -> None:
    for source in set(PACKAGED_TOKENIZERS.values()):
        text, config = source.read()
        assert text and config.get("eos_token"), source


def test_the_byte_level_tokenizer_round_trips_any_text_and_keeps_chat_specials() -> None:
    tokenizer = get_tokenizer("tinkex/bytes")
    assert tokenizer.vocab_size == 261 and tokenizer.eos_token_id == tokenizer.encode("<|eot_id|>")[0]

    @given(st.text(max_size=50))
    def round_trip(text: str) -> None:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == list(text.encode()) and tokenizer.decode(ids) == text

    round_trip()


def tiny_tokenizer_files(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2, "</s>": 3}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "</s>"}}))
    return folder


def test_local_folder_and_hub_port_serve_other_models(tmp_path: Path) -> None:
    local = get_tokenizer("org/tiny", path=tiny_tokenizer_files(tmp_path / "tiny"))
    assert local.encode("hello world") == [1, 2] and local.eos_token_id == 3
    files = {name: (tmp_path / "tiny" / name).read_bytes() for name in ("tokenizer.json", "tokenizer_config.json")}
    hub = NoopHubClient(repos={"org/tiny": files})
    assert get_tokenizer("org/tiny", hub_client=hub).encode("world hello") == [2, 1]


def test_unknown_model_says_how_to_provide_a_tokenizer() -> None:
    with pytest.raises(UnknownNameError, match="org/unknown.*tokenizer.json.*register_tokenizer"):
        get_tokenizer("org/unknown")


transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pairs() -> list:
    out = []
    for model in EXPECTED:
        ours = get_tokenizer(model)
        theirs = transformers.PreTrainedTokenizerFast(
            tokenizer_object=ours._backend, bos_token=ours.bos_token, eos_token=ours.eos_token,
            clean_up_tokenization_spaces=False,
        )
        out.append((ours, theirs))
    return out


@given(st.text(max_size=60), st.booleans())
@settings(max_examples=100, deadline=None)
def test_encode_and_decode_match_transformers(pairs: list, text: str, special: bool) -> None:
    for ours, theirs in pairs:
        ids = ours.encode(text, add_special_tokens=special)
        assert ids == theirs.encode(text, add_special_tokens=special)
        assert ours.decode(ids) == theirs.decode(ids)


def test_a_registered_renderer_is_usable_by_name_in_a_recipe() -> None:
    register_renderer("my_llama", Llama3Renderer)
    assert "my_llama" in renderer_names()
    result = Runtime.run(SlBasic, {"renderer_name": "my_llama", "batch_size": 8}, manifest="test")
    assert result.state["step"] == result.state["total_steps"]


@pytest.mark.parametrize("name", ["role_colon", "llama3", "qwen3", "qwen3_disable_thinking", "deepseekv3",
                                  "gpt_oss", "kimi_k2", "chatml"])
def test_every_builtin_renderer_trains_end_to_end_on_the_test_manifest(name: str) -> None:
    result = Runtime.run(SlBasic, {"renderer_name": name, "batch_size": 8}, manifest="test")
    assert result.completed_stages[-1] == "save_final"
    steps = [row for row in result.metrics if row["event"] == "train.step"]
    assert 0 < steps[0]["train_mean_nll"] < 10
