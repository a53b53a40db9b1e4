"""Tokenizers the cookbook can build without any download.

``ByteTokenizer`` maps UTF-8 bytes to ids 0..255 and a fixed list of special
strings to the ids after them. It backs the noop training backend so every
renderer and recipe runs end to end in tests; real models use the tokenizer
files of their own (loaded from local files, never fetched at test time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer as Backend

LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)
CHAT_SPECIAL_TOKENS: tuple[str, ...] = LLAMA3_SPECIAL_TOKENS + (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
    "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
    "<|start|>", "<|message|>", "<|end|>", "<|channel|>", "<|return|>", "<|call|>", "<|constrain|>",
    "<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>",
    "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_section_begin|>",
    "<|tool_call_section_end|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>",
)
"""Every special token a built-in renderer writes, so each renderer runs on the noop backend."""


class ByteTokenizer:
    """UTF-8 bytes plus named special tokens; deterministic and vocabulary-stable."""

    def __init__(
        self,
        special_tokens: Sequence[str] = CHAT_SPECIAL_TOKENS,
        bos_token: str | None = "<|begin_of_text|>",
        eos_token: str | None = "<|end_of_text|>",
    ) -> None:
        self._special_to_id = {tok: 256 + i for i, tok in enumerate(special_tokens)}
        self._id_to_special = {i: tok for tok, i in self._special_to_id.items()}
        self._split = re.compile(
            "(" + "|".join(re.escape(t) for t in sorted(special_tokens, key=len, reverse=True)) + ")"
        ) if special_tokens else None
        self.bos_token = bos_token
        self.eos_token = eos_token

    @property
    def vocab_size(self) -> int:
        return 256 + len(self._special_to_id)

    @property
    def bos_token_id(self) -> int | None:
        return self._special_to_id.get(self.bos_token) if self.bos_token else None

    @property
    def eos_token_id(self) -> int | None:
        return self._special_to_id.get(self.eos_token) if self.eos_token else None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self.bos_token_id] if add_special_tokens and self.bos_token_id is not None else []
        pieces = self._split.split(text) if self._split else [text]
        for piece in pieces:
            special = self._special_to_id.get(piece)
            ids.extend([special] if special is not None else piece.encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        buffer = bytearray()
        for token in ids:
            if token < 256:
                buffer.append(token)
                continue
            out.append(buffer.decode("utf-8", errors="replace"))
            buffer.clear()
            out.append(self._id_to_special.get(token, ""))
        out.append(buffer.decode("utf-8", errors="replace"))
        return "".join(out)


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` read with the ``tokenizers`` library.

    Encodes and decodes exactly as ``transformers``' fast tokenizer built from
    the same file does (special tokens kept on decode, no space clean-up), which
    is what the reference renderers see, without importing ``transformers``.
    """

    def __init__(
        self, backend: Backend, bos_token: str | None, eos_token: str | None, name: str = "",
        chat_template: str | None = None,
    ) -> None:
        self._backend = backend
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.name_or_path = name
        self.chat_template = chat_template
        """The model's own Jinja chat template, when its files carry one (renderers read defaults off it)."""

    @classmethod
    def from_json(cls, tokenizer_json: str, config: dict | None = None, name: str = "") -> HFTokenizer:
        from tokenizers import Tokenizer as Backend

        config = config or {}
        template = config.get("chat_template")
        return cls(Backend.from_str(tokenizer_json), _token_text(config.get("bos_token")),
                   _token_text(config.get("eos_token")), name, template if isinstance(template, str) else None)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name_or_path!r}, vocab_size={self.vocab_size})"

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def bos_token_id(self) -> int | None:
        return self.convert_tokens_to_ids(self.bos_token) if self.bos_token else None

    @property
    def eos_token_id(self) -> int | None:
        return self.convert_tokens_to_ids(self.eos_token) if self.eos_token else None

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=False)

    def save(self, folder: Path) -> list[Path]:
        """``tokenizer.json``, ``tokenizer_config.json`` and the chat template, as transformers reads them,
        so an exported model carries the exact tokenizer it was trained with."""
        folder.mkdir(parents=True, exist_ok=True)
        config: dict[str, object] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
        config |= {k: v for k, v in (("bos_token", self.bos_token), ("eos_token", self.eos_token)) if v}
        files = [folder / "tokenizer.json", folder / "tokenizer_config.json"]
        files[0].write_text(self._backend.to_str())
        files[1].write_text(json.dumps(config, indent=2))
        if self.chat_template:
            files.append(folder / "chat_template.jinja")
            files[-1].write_text(self.chat_template)
        return files

    def add_special_tokens(self, tokens: Sequence[str]) -> None:
        """Register extra special tokens (ids appended after the vocabulary)."""
        from tokenizers import AddedToken

        self._backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])


def _token_text(value: object) -> str | None:
    """A config's bos/eos entry: either the token text or ``{"content": text, ...}``."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None
