"""What a user tunes on the local trainer: dtype, device, LoRA alpha and targets, micro-batches.

Each option changes only what it says: micro-batches give the one-pass gradients, bfloat16 keeps
the adapters and the optimizer in float32, targets pick the adapted linears, alpha scales the
update, and a device this machine lacks is refused before any work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_local_torch import batch, logprobs_of, sl_datum, train
from tinkex_cookbook import Runtime
from tinkex_cookbook.adapters.blobs.memory import MemoryBlobStore
from tinkex_cookbook.adapters.training.local_losses import plan_micro_batches
from tinkex_cookbook.adapters.training.local_torch import LocalTorchTrainingService, LocalTrainerOptions
from tinkex_cookbook.adapters.training.lora import LoRAHead, LoRALinear, lora_modules
from tinkex_cookbook.errors import ConfigError

MODEL = "tiny-llama3"


def service(**options: object) -> LocalTorchTrainingService:
    return LocalTorchTrainingService(MemoryBlobStore(), options=LocalTrainerOptions(**options))  # type: ignore[arg-type]


def grads(client: object) -> dict[str, torch.Tensor]:
    return {name: module.lora_b.grad.clone() for name, module in lora_modules(client.model)  # type: ignore[attr-defined]
            if module.lora_b.grad is not None}


def test_micro_batches_give_the_gradients_and_logprobs_of_one_pass() -> None:
    results = []
    for budget in (None, 40, 1):
        with service(micro_batch_tokens=budget) as svc:
            client = svc.create_lora_training_client(MODEL, rank=4)
            data = [*batch(client), sl_datum(client.get_tokenizer().encode("Short one."))]
            out = client.forward_backward(data, "cross_entropy").result()
            results.append(([o["logprobs"].to_numpy() for o in out.loss_fn_outputs], out.metrics["loss:sum"],
                            grads(client)))
    (whole, loss, grad), *parts = results
    for logprobs, part_loss, part_grad in parts:
        assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(whole, logprobs, strict=True))
        assert part_loss == pytest.approx(loss, rel=1e-5)
        assert all(torch.allclose(grad[k], part_grad[k], rtol=1e-4, atol=1e-5) for k in grad)


def test_micro_batches_group_similar_lengths_within_the_budget() -> None:
    assert plan_micro_batches([5, 50, 7, 48, 6], None) == [[0, 1, 2, 3, 4]]
    assert plan_micro_batches([5, 50, 7, 48, 6], 100) == [[1, 3], [2, 4, 0]]
    assert plan_micro_batches([500, 3], 100) == [[0], [1]]  # too long for the budget: alone


def test_alpha_scales_the_update_and_targets_pick_the_linears() -> None:
    with service(lora_alpha=8.0, lora_targets=("q_proj", "v_proj")) as svc:
        client = svc.create_lora_training_client(MODEL, rank=4)
        adapted = lora_modules(client.model)
        assert sorted({name.rpartition(".")[2] for name, _ in adapted}) == ["q_proj", "v_proj"]
        assert all(module.scale == 2.0 for _, module in adapted)
        assert not isinstance(client.model.get_output_embeddings(), LoRAHead)
        train(client, batch(client), 1)
    with service(lora_targets=("down_proj", "lm_head")) as svc:
        client = svc.create_lora_training_client(MODEL, rank=4)
        assert isinstance(client.model.get_output_embeddings(), LoRAHead)
        assert len([m for m in client.model.modules() if isinstance(m, LoRALinear)]) == 2 + 1


def test_unknown_targets_are_refused_with_the_model_s_linears() -> None:
    with service(lora_targets=("qproj",)) as svc, pytest.raises(ConfigError) as caught:
        svc.create_lora_training_client(MODEL, rank=4)
    assert "qproj" in str(caught.value) and "q_proj" in str(caught.value) and "lm_head" in str(caught.value)


def test_a_checkpoint_remembers_its_adapter_shape() -> None:
    store = MemoryBlobStore()
    options = LocalTrainerOptions(lora_alpha=8.0, lora_targets=("q_proj", "lm_head"))
    with LocalTorchTrainingService(store, options=options) as svc:
        client = svc.create_lora_training_client(MODEL, rank=4)
        train(client, batch(client), 2)
        state = client.save_state("s").result().path
        expected = logprobs_of(client, batch(client))
        sampler_path = client.save_weights_for_sampler("w").result().path
    with LocalTorchTrainingService(store) as plain:  # default alpha and targets: a sampler follows the file
        prompt = batch(plain.create_lora_training_client(MODEL, rank=4))[0].model_input
        scored = plain.create_sampling_client(model_path=sampler_path).compute_logprobs(prompt).result()
        np.testing.assert_allclose(scored[1:], expected[0][:-1], atol=1e-5)
        with pytest.raises(ValueError, match="lora_alpha, lora_targets"):
            plain.create_lora_training_client(MODEL, rank=4).load_state(state).result()
    with LocalTorchTrainingService(store, options=options) as same:
        resumed = same.create_lora_training_client(MODEL, rank=4)
        resumed.load_state(state).result()
        assert all(np.array_equal(a, b) for a, b in zip(logprobs_of(resumed, batch(resumed)), expected, strict=True))


def test_bfloat16_runs_the_base_in_bf16_and_keeps_adapters_and_head_in_float32() -> None:
    with service() as fp32, service(dtype="bfloat16") as bf16:
        reference = fp32.create_lora_training_client(MODEL, rank=4)
        client = bf16.create_lora_training_client(MODEL, rank=4)
        model = client.model
        assert model.model.layers[0].self_attn.q_proj.base.weight.dtype == torch.bfloat16
        assert all(p.dtype == torch.float32 for _, m in lora_modules(model) for p in (m.lora_a, m.lora_b))
        assert model.get_output_embeddings().base.weight.dtype == torch.float32
        data = batch(client)
        close = [np.abs(a - b).max() for a, b in zip(logprobs_of(client, data), logprobs_of(reference, data),
                                                     strict=True)]
        assert max(close) < 0.2  # bf16 rounding, nothing more
        before = logprobs_of(client, data)
        train(client, data, 3)
        assert sum(a.sum() for a in logprobs_of(client, data)) > sum(b.sum() for b in before)


@pytest.mark.parametrize("device, words", [
    ("cuda", ["'cuda' is not available", "CUDA device(s)", "device: cpu"]),
    ("mps", ["'mps' is not available", "MPS"]),
    ("tpu9", ["'tpu9' is not a device name", "cpu, cuda, cuda:N or mps"]),
])
def test_a_device_this_machine_lacks_is_refused_saying_what_it_has(device: str, words: list[str]) -> None:
    if device == "cuda" and torch.cuda.is_available() or device == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"this machine has {device}")
    with pytest.raises(ConfigError) as caught:
        LocalTrainerOptions(device=device)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_manifest_options_reach_the_trainer(tmp_path: Path) -> None:
    ports = {"blob_store": "noop", "training_client": {
        "adapter": "local_torch", "lora_alpha": 16, "lora_targets": ["o_proj"], "micro_batch_tokens": 64,
        "models_cache": str(tmp_path)}}
    with Runtime.open("local", ports) as opened:
        built = opened.training_client
        assert built.options == LocalTrainerOptions(lora_alpha=16.0, lora_targets=("o_proj",), micro_batch_tokens=64)
        assert built.sources.models_cache == tmp_path
    with pytest.raises(Exception, match="dtype"), Runtime.open(
            "local", {"training_client": {"adapter": "local_torch", "dtype": "float8"}}):
        pass  # options are checked when the ports are opened, before any adapter is built
