"""Tokenizers the cookbook can build without any download.

``ByteTokenizer`` maps UTF-8 bytes to ids 0..255 and a fixed list of special
strings to the ids after them. It backs the noop training backend so every
renderer and recipe runs end to end in tests; real models use the tokenizer
files of their own (loaded from local files, never fetched at test time).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)


class ByteTokenizer:
    """UTF-8 bytes plus named special tokens; deterministic and vocabulary-stable."""

    def __init__(
        self,
        special_tokens: Sequence[str] = LLAMA3_SPECIAL_TOKENS,
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
