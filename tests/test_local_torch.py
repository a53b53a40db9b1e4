"""The local torch backend: Tinker semantics on a tiny real-vocabulary model, on CPU.

Every test builds its own service, so none depends on another's training.
Batches are a few short sentences, so each step takes milliseconds.
"""

from __future__ import annotations

import inspect
import shutil
import warnings
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch

from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.training.local_generation import Request, plan_batches
from tinkex_cookbook.adapters.training.local_models import (
    cache_keyword,
    decoder_states,
    resolve_model,
    tiny_models,
    token_logprobs,
)
from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService
from tinkex_cookbook.adapters.training.lora import (
    LoRAHead,
    LoRALinear,
    lora_named_parameters,
    lora_state_dict,
)
from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, UnknownNameError
from tinkex_cookbook.ports import (
    AdamParams,
    Datum,
    ModelInput,
    SamplingClient,
    SamplingParams,
    TensorData,
    TrainingClient,
    TrainingService,
)
from tinkex_cookbook.train.datum import conversation_to_datum, weighted_nll
from tinkex_cookbook.train.renderers import get_renderer
from tinkex_cookbook.train.tokenizer_sources import LLAMA3, get_tokenizer

MODEL = "tiny-llama3"
TEXTS = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Local training on CPU should be small, fast and deterministic.",
    "A third sentence, longer than the others, so the batch needs right padding.",
)
ADAM = AdamParams(learning_rate=1e-3)
CHATS = (
    ("Hi there!", "Hello! How can I help you today?"),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Can you recommend a book?", "Try The Hobbit, it is a fun adventure."),
    ("How are you?", "I am doing well, thank you for asking."),
    ("What is two plus two?", "Two plus two is four."),
    ("Tell me a joke.", "Why did the chicken cross the road? To get to the other side."),
    ("What color is the sky?", "On a clear day the sky is blue."),
    ("Good night!", "Good night, sleep well!"),
)


def llama_tokenizer():
    return get_tokenizer(tiny_models()[MODEL].tokenizer)


@pytest.fixture
def service():
    with LocalTorchTrainingService(MemoryBlobStore(), seed=0) as svc:
        yield svc


def sl_datum(tokens: list[int], weights: list[float] | None = None) -> Datum:
    return Datum(ModelInput.from_ints(tokens[:-1]), {
        "target_tokens": TensorData.from_list(tokens[1:], "int64"),
        "weights": TensorData.from_list(weights or [1.0] * (len(tokens) - 1), "float32"),
    })


def rl_datum(tokens: list[int], sampler_logprobs: list[float], advantages: list[float]) -> Datum:
    return Datum(ModelInput.from_ints(tokens[:-1]), {
        "target_tokens": TensorData.from_list(tokens[1:], "int64"),
        "logprobs": TensorData.from_list(sampler_logprobs, "float32"),
        "advantages": TensorData.from_list(advantages, "float32"),
    })


def batch(client: TrainingClient) -> list[Datum]:
    tokenizer = client.get_tokenizer()
    return [sl_datum(tokenizer.encode(text)) for text in TEXTS]


def logprobs_of(client: TrainingClient, data: list[Datum]) -> list[np.ndarray]:
    outputs = client.forward(data, "cross_entropy").result().loss_fn_outputs
    return [out["logprobs"].to_numpy() for out in outputs]


def loss_of(client: TrainingClient, data: list[Datum], loss_fn: str, config: dict | None = None) -> float:
    return client.forward(data, loss_fn, config).result().metrics["loss:sum"]


def same(left: list[np.ndarray], right: list[np.ndarray]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(left, right, strict=True))


def train(client: TrainingClient, data: list[Datum], steps: int) -> None:
    """Submit every step at once, then wait for the last (calls run in order)."""
    for _ in range(steps):
        client.forward_backward(data, "cross_entropy")
        last = client.optim_step(ADAM)
    last.result()


# --- ports and factory ---------------------------------------------------------------------------


def test_service_and_clients_satisfy_the_ports(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    assert isinstance(service, TrainingService)
    assert isinstance(client, TrainingClient)
    assert isinstance(service.create_sampling_client(base_model=MODEL), SamplingClient)
    assert isinstance(client.save_weights_and_get_sampling_client("s"), SamplingClient)
    info = client.get_info()
    assert (info.base_model, info.lora_rank) == (MODEL, 4) and info.model_id.startswith("tiny-llama3-seed0-")
    assert info.tokenizer_id == "meta-llama/Llama-3.2-1B"
    assert service.create_lora_training_client(MODEL, rank=4).get_info().model_id != info.model_id


def test_service_options() -> None:
    store = MemoryBlobStore()
    threads = torch.get_num_threads()
    try:
        with LocalTorchTrainingService(store, "/models", 3, 2) as built:
            assert (built.blob_store, built.models_dir, built.seed, built.threads) == (store, "/models", 3, 2)
    finally:
        torch.set_num_threads(threads)


# --- models and LoRA -----------------------------------------------------------------------------


def test_tiny_models_use_real_vocabularies() -> None:
    for name in tiny_models():
        model, tokenizer = resolve_model(name, seed=0)
        assert model.config.vocab_size == tokenizer.vocab_size > (260 if name == "tiny-bytes" else 128_000)
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_unknown_model_says_where_to_put_a_folder_and_what_ships(tmp_path: Path) -> None:
    service = LocalTorchTrainingService(MemoryBlobStore(), models_dir=str(tmp_path))
    with pytest.raises(UnknownNameError) as caught:
        service.create_lora_training_client("acme/llm-7b")
    message = str(caught.value)
    assert "'acme/llm-7b'" in message and "not in the model catalog" in message
    assert "SmolLM2-135M-Instruct" in message and "hub_client" in message
    assert "acme--llm-7b" in message and str(tmp_path) in message


def test_lora_starts_as_identity_and_trains_only_adapters(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    data = batch(client)
    base = service.create_sampling_client(base_model=MODEL)
    expected = base.compute_logprobs(ModelInput.from_ints(data[0].model_input.to_ints())).result()[1:]
    np.testing.assert_allclose(logprobs_of(client, data)[0][:-1], expected, atol=1e-4)
    wrapped = [m for m in client.model.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 2 * 7 + 1  # q, k, v, o, gate, up, down in each of 2 layers, and the head
    assert isinstance(client.model.get_output_embeddings(), LoRAHead)
    embedding = client.model.get_input_embeddings().weight
    assert client.model.get_output_embeddings().base.weight is embedding  # still tied, and frozen
    frozen = {n: p.clone() for n, p in client.model.named_parameters() if not p.requires_grad}
    train(client, data, 2)
    assert all(torch.equal(p, frozen[n]) for n, p in client.model.named_parameters() if n in frozen)
    trainable = {n for n, p in client.model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in lora_named_parameters(client.model)}
    assert {"lm_head.lora_a", "lm_head.lora_b"} <= trainable


def test_fresh_head_adapter_leaves_logprobs_unchanged(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=8)
    head = client.model.get_output_embeddings()
    assert isinstance(head, LoRAHead) and not head.lora_b.any()
    tokens = torch.tensor([client.get_tokenizer().encode(TEXTS[2])])
    with torch.no_grad():
        hidden = decoder_states(client.model, tokens[:, :-1])[0][0]
        adapted, _ = token_logprobs(head, hidden, tokens[0, 1:])
        plain, _ = token_logprobs(head.base, hidden, tokens[0, 1:])
    torch.testing.assert_close(adapted, plain, rtol=0, atol=1e-6)


def test_fused_head_gradients_match_autograd(service: LocalTorchTrainingService) -> None:
    """The chunked head's LoRA gradients equal plain autograd through the full logits.

    The reference runs in float64 on a copy of the same model: float32 autograd
    over a 128k vocabulary is itself off by ~1e-5, more than the fused path.
    """
    client = service.create_lora_training_client(MODEL, rank=4)
    head = client.model.get_output_embeddings()
    with torch.no_grad():
        head.lora_b.copy_(0.01 * torch.randn(head.lora_b.shape, generator=torch.Generator().manual_seed(1)))
    tokens = client.get_tokenizer().encode(TEXTS[0])
    weights = np.linspace(0.5, 1.5, len(tokens) - 1)
    client.forward_backward([sl_datum(tokens, weights.tolist())], "cross_entropy").result()
    fused = {name: p.grad for name, p in lora_named_parameters(client.model)}

    model = deepcopy(client.model).double()
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=torch.tensor([tokens[:-1]]), use_cache=False).logits[0]
    logprobs = torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens[1:])[:, None]).squeeze(1)
    (-(torch.from_numpy(weights) * logprobs).sum()).backward()
    for name in ("lm_head.lora_a", "lm_head.lora_b"):
        assert fused[name].abs().max() > 0
        torch.testing.assert_close(fused[name].double(), model.get_parameter(name).grad, rtol=1e-4, atol=1e-6)


# --- losses --------------------------------------------------------------------------------------


def test_cross_entropy_matches_its_logprobs_and_by_hand(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    train(client, batch(client), 2)
    tokens = client.get_tokenizer().encode(TEXTS[0])
    weights = [0.0] * 5 + [1.0] * (len(tokens) - 6)
    out = client.forward_backward([sl_datum(tokens, weights)], "cross_entropy").result()
    logprobs = out.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert out.loss_fn_output_type == "cross_entropy"
    assert out.metrics["loss:sum"] == pytest.approx(float(-(np.array(weights) * logprobs).sum()), rel=1e-5)
    with torch.no_grad():
        logits = client.model(input_ids=torch.tensor([tokens[:-1]]), use_cache=False).logits[0]
    by_hand = torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens[1:])[:, None]).squeeze(1)
    np.testing.assert_allclose(logprobs, by_hand.numpy(), atol=1e-4)
    assert out.metrics["loss:sum"] == pytest.approx(float(-(torch.tensor(weights) * by_hand).sum()), rel=1e-5)


def test_padding_does_not_change_a_datums_logprobs(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    data = batch(client)
    together = logprobs_of(client, data)
    for datum, batched in zip(data, together, strict=True):
        assert batched.shape == (datum.model_input.length,)
        np.testing.assert_allclose(logprobs_of(client, [datum])[0], batched, atol=1e-5)


def test_loss_falls_with_training(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=8)
    data = batch(client)
    first = client.forward(data, "cross_entropy").result().metrics["loss:sum"]
    train(client, data, 20)
    assert client.forward(data, "cross_entropy").result().metrics["loss:sum"] < 0.9 * first


def test_chat_batch_loss_falls_by_nats_with_the_head_adapter(service: LocalTorchTrainingService) -> None:
    """30 steps at lr 1e-2 on 8 short chats: ~11.8 -> ~3.7 nats/token (4.0 leaves room for BLAS noise).

    With a frozen unembedding the same run barely moved (~0.1 nat).
    """
    client = service.create_lora_training_client(MODEL, rank=8)
    renderer = get_renderer("llama3", client.get_tokenizer())
    data = [conversation_to_datum([{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
                                  renderer, max_length=None) for user, reply in CHATS]

    def mean_nll() -> float:
        outputs = client.forward(data, "cross_entropy").result().loss_fn_outputs
        total, weight = weighted_nll([out["logprobs"] for out in outputs], data)
        return total / weight

    first = mean_nll()
    adam = AdamParams(learning_rate=1e-2)
    for _ in range(30):
        client.forward_backward(data, "cross_entropy")
        client.optim_step(adam)
    assert first - mean_nll() > 4.0


def test_importance_sampling_and_ppo_documented_values(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    tokens = client.get_tokenizer().encode(TEXTS[1])
    own = logprobs_of(client, [sl_datum(tokens)])[0]
    advantages = np.linspace(-1.0, 1.0, len(own)).astype(np.float32)
    ratio = 2.0
    same_policy = [rl_datum(tokens, list(own), list(advantages))]
    doubled = [rl_datum(tokens, list(own - np.log(ratio)), list(advantages))]  # ratio 2 on every token
    assert loss_of(client, same_policy, "importance_sampling") == pytest.approx(-advantages.sum(), abs=1e-4)
    assert loss_of(client, same_policy, "ppo") == pytest.approx(-advantages.sum(), abs=1e-4)
    assert loss_of(client, doubled, "importance_sampling") == pytest.approx(-2 * advantages.sum(), abs=1e-4)
    ppo_value = -np.minimum(ratio * advantages, 1.2 * advantages).sum()
    assert loss_of(client, doubled, "ppo") == pytest.approx(ppo_value, abs=1e-4)
    wide = {"clip_low_threshold": 0.5, "clip_high_threshold": 3.0}
    assert loss_of(client, doubled, "ppo", wide) == pytest.approx(-ratio * advantages.sum(), abs=1e-4)
    assert loss_of(client, same_policy, "cispo") == pytest.approx(float(-(own * advantages).sum()), abs=1e-5)


def test_ppo_clipped_tokens_get_no_gradient(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    train(client, batch(client), 1)  # B != 0, so A gets gradient too
    tokens = client.get_tokenizer().encode(TEXTS[1])
    own = logprobs_of(client, [sl_datum(tokens)])[0]
    ones = [1.0] * len(own)
    client.forward_backward([rl_datum(tokens, list(own - np.log(2.0)), ones)], "ppo").result()
    assert client.optim_step(ADAM).result().metrics["grad_norm"] == 0.0
    client.forward_backward([rl_datum(tokens, list(own), ones)], "ppo").result()
    assert client.optim_step(ADAM).result().metrics["grad_norm"] > 0.0


def test_bad_loss_calls_fail_clearly(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    data = batch(client)
    with pytest.raises(ValueError, match=r"unknown loss_fn 'dpo'.*'cross_entropy'.*'ppo'"):
        client.forward_backward(data, "dpo")
    with pytest.raises(ValueError, match="clip_high_threshold"):
        client.forward_backward(data, "ppo", {"clip": 0.1})
    with pytest.raises(ValueError, match=r"datum 0 has no loss_fn_inputs\['logprobs'\]"):
        client.forward_backward(data, "importance_sampling").result()
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, "):
        client.forward([sl_datum([1, 2, 10**7])], "cross_entropy").result()


# --- ordering, determinism, checkpoints ----------------------------------------------------------


def test_calls_can_be_submitted_ahead_and_run_in_order() -> None:
    """Three step pairs submitted before any result give what the same calls awaited one by one give."""
    sequential, ahead = (LocalTorchTrainingService(MemoryBlobStore()) for _ in range(2))
    expected = []
    client = sequential.create_lora_training_client(MODEL, rank=4)
    data = batch(client)
    for _ in range(3):
        expected.append(client.forward_backward(data, "cross_entropy").result().metrics["loss:sum"])
        client.optim_step(ADAM).result()
    client = ahead.create_lora_training_client(MODEL, rank=4)
    futures = [(client.forward_backward(data, "cross_entropy"), client.optim_step(ADAM)) for _ in range(3)]
    results = [(fb.result().metrics["loss:sum"], opt.result().metrics["optim_steps"]) for fb, opt in futures]
    assert results == list(zip(expected, [1.0, 2.0, 3.0], strict=True))
    assert expected[0] > expected[1] > expected[2]
    sequential.close()
    ahead.close()


def test_same_seed_gives_identical_weights_and_a_new_seed_does_not() -> None:
    runs, weights = [], []
    for seed in (0, 0, 1):
        with LocalTorchTrainingService(MemoryBlobStore(), seed=seed) as service:
            client = service.create_lora_training_client(MODEL, rank=4)
            data = batch(client)
            train(client, data, 3)
            runs.append(logprobs_of(client, data))
            weights.append(lora_state_dict(client.model))
    assert same(runs[0], runs[1])
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_save_and_load_state_resume_exactly(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    data = batch(client)
    train(client, data, 2)
    path = client.save_state("step2").result().path
    assert path == f"local://local_torch/{client.get_info().model_id}/step2/state.safetensors"
    assert service.blob_store.exists(path.removeprefix("local://"))
    saved = logprobs_of(client, data)
    train(client, data, 2)
    uninterrupted = logprobs_of(client, data)

    with LocalTorchTrainingService(service.blob_store) as other:
        resumed = other.create_lora_training_client(MODEL, rank=4, seed=7)
        resumed.load_state(path).result()
        assert same(logprobs_of(resumed, data), saved)
        train(resumed, data, 2)
        assert same(logprobs_of(resumed, data), uninterrupted)
        assert resumed.optim_step(ADAM).result().metrics["optim_steps"] == 2 + 2 + 1


def test_missing_or_corrupt_checkpoints_name_the_path(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    with pytest.raises(BlobNotFoundError, match="local://local_torch/nowhere/state.safetensors"):
        client.load_state("local://local_torch/nowhere/state.safetensors").result()
    service.blob_store.write("local_torch/bad/state.safetensors", b"not a checkpoint")
    with pytest.raises(BlobStoreError, match="'local://local_torch/bad/state.safetensors' is corrupt"):
        client.load_state("local://local_torch/bad/state.safetensors").result()
    with pytest.raises(ValueError, match="not a local_torch checkpoint path"):
        client.load_state("tinker://elsewhere").result()
    sampler_path = client.save_weights_for_sampler("s").result().path
    with pytest.raises(ValueError, match="sampler weights only"):
        client.load_state(sampler_path).result()
    other_rank = service.create_lora_training_client(MODEL, rank=8)
    with pytest.raises(ValueError, match="rank"):
        other_rank.load_state(client.save_state("r4").result().path).result()


# --- sampling ------------------------------------------------------------------------------------


def test_sampling_is_deterministic_per_seed_and_reloads(service: LocalTorchTrainingService) -> None:
    client = service.create_lora_training_client(MODEL, rank=4)
    train(client, batch(client), 2)
    sampler = client.save_weights_and_get_sampling_client("w")
    prompt = ModelInput.from_ints(client.get_tokenizer().encode("Once upon a time"))
    params = SamplingParams(max_tokens=6, temperature=1.0, seed=11)
    first = sampler.sample(prompt, 3, params).result()
    assert first == sampler.sample(prompt, 3, params).result()
    assert first != sampler.sample(prompt, 3, SamplingParams(max_tokens=6, seed=12)).result()
    assert all(len(s.tokens) == 6 and s.stop_reason == "length" for s in first.sequences)
    reloaded = service.create_sampling_client(
        model_path=f"local://local_torch/{client.get_info().model_id}/w/sampler.safetensors")
    assert reloaded.sample(prompt, 3, params).result() == first


def test_greedy_sample_logprobs_match_compute_logprobs(service: LocalTorchTrainingService) -> None:
    sampler = service.create_sampling_client(base_model=MODEL)
    prompt = llama_tokenizer().encode("Hello there")
    greedy = SamplingParams(max_tokens=5, temperature=0)
    first, second = sampler.sample(ModelInput.from_ints(prompt), 2, greedy).result().sequences
    assert first.tokens == second.tokens
    scored = sampler.compute_logprobs(ModelInput.from_ints([*prompt, *first.tokens])).result()
    assert scored[0] is None and len(scored) == len(prompt) + 5
    np.testing.assert_allclose(scored[len(prompt):], first.logprobs, atol=1e-4)


def test_kv_cache_path_is_warning_free_and_equals_a_full_forward() -> None:
    """The cache keyword follows the installed transformers (``cache`` from 5.25, ``past_key_values``
    before); decoding through it gives the hidden states of a full forward, and neither sampling nor a
    training step raises a deprecation warning on any supported release."""
    model, tokenizer = resolve_model(MODEL)
    tokens = tokenizer.encode(TEXTS[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full, no_cache = decoder_states(model, torch.tensor([tokens]))
        prefix, cache = decoder_states(model, torch.tensor([tokens[:-2]]), use_cache=True)
        step, cache = decoder_states(model, torch.tensor([[tokens[-2]]]), cache)
        last, _ = decoder_states(model, torch.tensor([[tokens[-1]]]), cache)
        with LocalTorchTrainingService(MemoryBlobStore(), seed=0) as service:
            client = service.create_lora_training_client(MODEL, rank=4)
            train(client, batch(client), 1)
            sampler = client.save_weights_and_get_sampling_client("w")
            sampler.sample(ModelInput.from_ints(tokens), 2, SamplingParams(max_tokens=4, seed=1)).result()
    assert no_cache is None and cache is not None
    assert cache_keyword(type(model.base_model)) in inspect.signature(model.base_model.forward).parameters
    torch.testing.assert_close(torch.cat([prefix, step, last], 1), full, atol=1e-5, rtol=1e-5)


def test_stop_tokens_and_stop_strings(service: LocalTorchTrainingService) -> None:
    sampler = service.create_sampling_client(base_model=MODEL)
    tokenizer = llama_tokenizer()
    prompt = ModelInput.from_ints(tokenizer.encode("Count: one two"))
    free = sampler.sample(prompt, 1, SamplingParams(max_tokens=6, temperature=0)).result().sequences[0]
    by_token = SamplingParams(max_tokens=6, temperature=0, stop=(free.tokens[2],))
    stopped = sampler.sample(prompt, 1, by_token).result().sequences[0]
    assert stopped.tokens == free.tokens[: free.tokens.index(free.tokens[2]) + 1]
    assert stopped.stop_reason == "stop"
    text = tokenizer.decode(list(free.tokens[:3]))
    by_string = SamplingParams(max_tokens=6, temperature=0, stop=text[-2:])
    stopped = sampler.sample(prompt, 1, by_string).result().sequences[0]
    assert stopped.stop_reason == "stop" and len(stopped.tokens) <= 3
    assert text[-2:] in tokenizer.decode(list(stopped.tokens))


# --- local Hugging Face folders -----------------------------------------------------------------


def test_loads_a_local_hugging_face_folder(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "models" / "acme--tiny"
    source = LLAMA3.folder_path()
    config = LlamaConfig(vocab_size=128_257, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=True)
    torch.manual_seed(5)
    saved = LlamaForCausalLM(config)
    saved.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, folder / name)

    with LocalTorchTrainingService(MemoryBlobStore(), models_dir=str(tmp_path / "models")) as service:
        client = service.create_lora_training_client("acme/tiny", rank=2)
        tokens = client.get_tokenizer().encode(TEXTS[0])
        assert client.get_tokenizer().vocab_size == 128_257
        ours = logprobs_of(client, [sl_datum(tokens)])[0]
        with torch.no_grad():
            logits = saved.eval()(input_ids=torch.tensor([tokens[:-1]]), use_cache=False).logits[0]
        expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens[1:])[:, None]).squeeze(1)
        np.testing.assert_allclose(ours, expected.numpy(), atol=1e-4)
        train(client, [sl_datum(tokens)], 1)


def test_queued_prompts_decode_together_and_match_each_alone(service: LocalTorchTrainingService) -> None:
    """Prompts of different lengths sampled in one batch (left-padded) give what each gives alone."""
    sampler = service.create_sampling_client(base_model=MODEL)
    tokenizer = llama_tokenizer()
    prompts = [ModelInput.from_ints(tokenizer.encode(text)) for text in (TEXTS[0], "Hi", TEXTS[2])]
    greedy = [SamplingParams(max_tokens=n, temperature=0) for n in (6, 3, 5)]
    alone = [sampler.sample(p, 2, g).result() for p, g in zip(prompts, greedy, strict=True)]
    futures = [sampler.sample(p, 2, g) for p, g in zip(prompts, greedy, strict=True)]
    together = [f.result() for f in futures]
    for one, batched, params in zip(alone, together, greedy, strict=True):
        assert [s.tokens for s in batched.sequences] == [s.tokens for s in one.sequences]
        assert all(len(s.tokens) == params.max_tokens and s.stop_reason == "length" for s in batched.sequences)
        for a, b in zip(one.sequences, batched.sequences, strict=True):
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_batches_are_fixed_by_call_order_so_samples_repeat(service: LocalTorchTrainingService) -> None:
    sampler = service.create_sampling_client(base_model=MODEL)
    prompts = [ModelInput.from_ints(llama_tokenizer().encode(t)) for t in TEXTS]

    def burst() -> list[tuple[tuple[int, ...], ...]]:
        futures = [sampler.sample(p, 3, SamplingParams(max_tokens=4, temperature=1.0, seed=i))
                   for i, p in enumerate(prompts)]
        return [tuple(s.tokens for s in f.result().sequences) for f in futures]

    assert burst() == burst()


def test_a_queue_is_cut_into_batches_in_call_order_within_the_cache_budget() -> None:
    """Rows x (longest prompt + longest reply) stays within the budget; a request over it runs alone."""
    def request(prompt: int, count: int) -> Request:
        return Request([1] * prompt, count, SamplingParams(max_tokens=10), torch.Generator(), None)

    queue = [request(10, 1), request(5, 2), request(30, 1), request(100, 1), request(4, 1)]
    batches = plan_batches(queue, 60)
    assert [[queue.index(r) for r in batch] for batch in batches] == [[0, 1], [2], [3], [4]]
    assert plan_batches(queue, 10**6) == [queue] and plan_batches([], 60) == []


def test_ports_opened_by_a_script_keep_working_through_a_garbage_collection() -> None:
    """Ports handed to a script once lived on while the runtime's container was collected: the collector
    then closed the local backend while its model-loading lock was held, and the script hung forever.
    ``Runtime.open`` keeps the container alive for its block; reading a port after it is a clear error."""
    import gc
    import threading

    from tinkex_cookbook import ConfigError, Runtime

    answers: list[object] = []

    def script() -> None:
        with Runtime.open(manifest="local", ports={"blob_store": "noop"}) as ports:
            service = ports.training_client
            gc.collect()
            sampler = service.create_sampling_client(base_model=MODEL)
            gc.collect()
            answers.append(sampler.sample(ModelInput.from_ints([1, 2, 3]), 1, SamplingParams(max_tokens=2)).result())
        with pytest.raises(ConfigError, match="inside the `with Runtime.open"):
            ports.training_client
        answers.append("closed")

    worker = threading.Thread(target=script, daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the local backend hung while its ports were open"
    assert len(answers) == 2 and answers[-1] == "closed"
