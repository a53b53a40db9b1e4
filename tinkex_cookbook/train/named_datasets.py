"""Named datasets: the public sets the reference recipes train on, by short name.

``dataset=gsm8k`` is a name, not a path: ``NAMED_DATASETS`` maps it to a hub id, its
configurations, its split names and how one of its rows becomes a chat row (``messages``) for
supervised training, or a preference row for DPO. The dataset store does the loading, so where
the rows come from is the manifest's choice:

* the store is asked for the short name first (``NAME/SPLIT.jsonl`` under the ``local`` store's
  root, a ``MemoryDatasetStore`` entry, or a local folder of that name for the ``hf`` store): your
  own export wins;
* else for the hub id, with each configuration in turn (the ``hf`` store reads it from the Hugging
  Face cache, offline; the ``local`` store from ``HUB_ID/CONFIG/SPLIT.jsonl``).

Only a store's "not found" (``DatasetNotFoundError``) moves on to the hub id: a file that is there
and broken is reported as it is. When neither is there, the error says how to download the set
once or export it (``provide_hint``, shared with the public evaluation sets). A row that already
has a ``messages`` list is used as it is, whatever the set.

    name               hub id                                  rows -> chat                  license
    no_robots          HuggingFaceH4/no_robots                 messages                      CC-BY-NC-4.0
    tulu3-sft-mixture  allenai/tulu-3-sft-mixture              messages                      ODC-BY-1.0
    gsm8k              openai/gsm8k (main)                     question -> answer            MIT
    MATH               EleutherAI/hendrycks_math (7 subjects)  problem -> solution           MIT
    hh-rlhf            Anthropic/hh-rlhf                       the chosen conversation       MIT
    UltraFeedback      HuggingFaceH4/ultrafeedback_binarized   the chosen conversation       MIT
                       (train -> train_prefs, test -> test_prefs)
    HelpSteer          nvidia/HelpSteer2                       prompt -> response            CC-BY-4.0

For DPO, ``hh-rlhf`` and ``UltraFeedback`` rows are preference rows already; ``HelpSteer`` pairs
are built as the reference's HelpSteer2 builder does: the responses to one prompt, the most
helpful chosen and the least helpful rejected, when their helpfulness differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tinkex_cookbook.errors import DatasetError, DatasetNotFoundError, NameTakenError
from tinkex_cookbook.ports import Dataset, DatasetStore, Row
from tinkex_cookbook.train.preference_data import parse_preference_row

ChatMapping = Callable[[Row, int], Row]
"""A raw row and its index -> a row with ``messages``; a ``DatasetError`` names the row and the fix."""
PairsMapping = Callable[[list[Row]], list[Row]]
"""Raw rows -> preference rows (``prompt``/``chosen``/``rejected`` or a shape ``preference_data`` parses)."""


def provide_hint(purpose: str, hub_id: str, config: str | None, split: str, local_name: str, rows_need: str,
                 pass_file: bool = True) -> str:
    """How to get a public set onto a machine without network: download once into the cache, or export."""
    args = ", ".join(f'"{a}"' for a in (hub_id, config) if a)
    download = f"python -c 'import datasets; datasets.load_dataset({args})'"
    export = (f"python -c 'import datasets; datasets.load_dataset({args}, split=\"{split}\")"
              f".to_json(\"{split}.jsonl\")'")
    place = f"save it as {local_name}/{split}.jsonl under the local dataset store's root"
    where = f"pass dataset=/path/to/{split}.jsonl (or {place})" if pass_file else place
    return (f"{purpose}: download it once with `{download}` on a machine with network (it lands in the Hugging "
            f"Face cache; use that HF_HOME here, with the hf dataset store), or export the split with `{export}` "
            f"and {where}. Rows need {rows_need}.")


def keep_row(row: Row, index: int) -> Row:
    """A dataset that is not named: rows are used as they are (rendering checks their ``messages``)."""
    return row


@dataclass(frozen=True)
class NamedDataset:
    """A public set: where it lives on the hub and how its rows become training rows."""

    name: str
    hub_id: str
    chat: ChatMapping
    rows_need: str
    license: str
    configs: tuple[str, ...] = ()
    """Configurations loaded in turn and concatenated; none: the set's default one."""
    splits: Mapping[str, str] = field(default_factory=dict)
    """A split name a run uses -> the hub's (``train`` -> ``train_prefs``); others pass through."""
    pairs: PairsMapping | None = None
    """Preference rows for DPO, when the set has them."""

    def hub_split(self, split: str) -> str:
        return self.splits.get(split, split)

    def how_to_provide(self, split: str) -> str:
        config = self.configs[0] if len(self.configs) == 1 else None
        hint = provide_hint(f"To train on {self.name} ({self.hub_id})", self.hub_id, config, split, self.name,
                            self.rows_need, pass_file=False)
        if len(self.configs) > 1:
            hint += f" The hub set has one configuration per part ({', '.join(self.configs)}); export them all into one file."
        return f"{hint} License: {self.license}."


@dataclass(frozen=True)
class Source:
    """One dataset a run reads: the store's datasets for it (one per configuration) and its row mapping."""

    label: str
    parts: tuple[Dataset, ...]
    chat: ChatMapping = keep_row

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def rows(self) -> Iterator[tuple[int, Row]]:
        """``(index, chat row)`` as the parts are iterated: lazily for a streamed dataset."""
        index = 0
        for part in self.parts:
            for row in part:
                yield index, self.chat(row, index)
                index += 1

    def to_list(self) -> list[Row]:
        rows = [row for part in self.parts for row in part.to_list()]
        return [self.chat(row, index) for index, row in enumerate(rows)]


def open_source(store: DatasetStore, name: str, split: str, *, streaming: bool = False) -> Source:
    """``name`` from the store: a named set by its short name, else by its hub id; any other name as it is."""
    options: dict[str, Any] = {"streaming": True} if streaming else {}
    named = NAMED_DATASETS.get(name)
    if named is None:
        return Source(name, (store.load_dataset(name, split, **options),))
    hub_split = named.hub_split(split)
    try:
        return Source(name, (store.load_dataset(name, hub_split, **options),), named.chat)
    except DatasetNotFoundError:
        pass
    try:
        parts = tuple(store.load_dataset(named.hub_id, hub_split, **options, **({"config": c} if c else {}))
                      for c in named.configs or (None,))
    except DatasetNotFoundError as exc:
        raise DatasetNotFoundError(f"{exc}\n{named.how_to_provide(hub_split)}") from exc
    return Source(name, parts, named.chat)


def load_preference_rows(store: DatasetStore, name: str, split: str) -> list[Row]:
    """Rows for DPO: a named set's preference rows (built from scores for ``HelpSteer``), else the rows."""
    source = open_source(store, name, split)
    named = NAMED_DATASETS.get(name)
    rows = [row for part in source.parts for row in part.to_list()]
    if named is None:
        return rows
    if named.pairs is None:
        raise DatasetError(f"dataset {name!r} ({named.hub_id}) has no preference pairs: it is a supervised set. "
                           f"Fix: train on it with sl_basic, or use one of {', '.join(preference_sets())} for DPO")
    return named.pairs(rows)


def preference_sets() -> list[str]:
    return sorted(n for n, d in NAMED_DATASETS.items() if d.pairs is not None)


# --- row mappings ---------------------------------------------------------------------------------


def _text(row: Row, index: int, key: str, dataset: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"row {index} of {dataset}, field {key!r}: expected text, found {value!r:.40} "
                           f"(keys {sorted(row)}). Fix: give every row a non-empty {key!r}, or a 'messages' list")
    return value


def _has_messages(row: Row) -> bool:
    return isinstance(row.get("messages"), list) and bool(row["messages"])


def question_answer(dataset: str, question: str, answer: str) -> ChatMapping:
    """A user message from ``row[question]``, the assistant's from ``row[answer]``."""

    def chat(row: Row, index: int) -> Row:
        if _has_messages(row):
            return row
        return {"messages": [{"role": "user", "content": _text(row, index, question, dataset)},
                             {"role": "assistant", "content": _text(row, index, answer, dataset)}]}

    return chat


def chosen_conversation(row: Row, index: int) -> Row:
    """A preference row's preferred conversation (prompt + chosen reply): supervised data from a DPO set."""
    if _has_messages(row):
        return row
    return {"messages": list(parse_preference_row(row, index).chosen_conversation)}


def _as_pairs(rows: list[Row]) -> list[Row]:
    return rows


def helpsteer_pairs(rows: Sequence[Row]) -> list[Row]:
    """Per prompt, the most helpful response chosen over the least helpful one, when they differ (the
    reference's HelpSteer2 builder); prompts answered once, or equally well, give no pair."""
    by_prompt: dict[str, list[Row]] = {}
    for index, row in enumerate(rows):
        prompt = _text(row, index, "prompt", "HelpSteer")
        _text(row, index, "response", "HelpSteer")
        if not isinstance(row.get("helpfulness"), int | float):
            raise DatasetError(f"row {index} of HelpSteer, field 'helpfulness': expected a number, found "
                               f"{row.get('helpfulness')!r:.40}. Fix: give every row its helpfulness score")
        by_prompt.setdefault(prompt, []).append(row)
    pairs = []
    for prompt, answers in by_prompt.items():
        ranked = sorted(answers, key=lambda r: r["helpfulness"], reverse=True)
        if len(ranked) >= 2 and ranked[0]["helpfulness"] > ranked[-1]["helpfulness"]:
            pairs.append({"prompt": prompt, "chosen": ranked[0]["response"], "rejected": ranked[-1]["response"]})
    return pairs


MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")

NAMED_DATASETS: dict[str, NamedDataset] = {
    d.name: d for d in (
        NamedDataset("no_robots", "HuggingFaceH4/no_robots", keep_row, "a 'messages' list", "CC-BY-NC-4.0"),
        NamedDataset("tulu3-sft-mixture", "allenai/tulu-3-sft-mixture", keep_row, "a 'messages' list",
                     "ODC-BY-1.0"),
        NamedDataset("gsm8k", "openai/gsm8k", question_answer("gsm8k", "question", "answer"),
                     "'question' and 'answer'", "MIT", configs=("main",)),
        NamedDataset("MATH", "EleutherAI/hendrycks_math", question_answer("MATH", "problem", "solution"),
                     "'problem' and 'solution'", "MIT", configs=MATH_SUBJECTS),
        NamedDataset("hh-rlhf", "Anthropic/hh-rlhf", chosen_conversation,
                     "'chosen' and 'rejected' (HH-RLHF text)", "MIT", pairs=_as_pairs),
        NamedDataset("UltraFeedback", "HuggingFaceH4/ultrafeedback_binarized", chosen_conversation,
                     "'prompt', 'chosen' and 'rejected' (lists of messages)", "MIT",
                     splits={"train": "train_prefs", "test": "test_prefs"}, pairs=_as_pairs),
        NamedDataset("HelpSteer", "nvidia/HelpSteer2", question_answer("HelpSteer", "prompt", "response"),
                     "'prompt', 'response' and 'helpfulness'", "CC-BY-4.0", pairs=helpsteer_pairs),
    )
}
"""Named datasets by name; ``register_named_dataset`` adds your own."""


def register_named_dataset(dataset: NamedDataset, replace: bool = False) -> NamedDataset:
    if dataset.name in NAMED_DATASETS and not replace:
        raise NameTakenError(f"a named dataset {dataset.name!r} is already registered; pass replace=True to "
                             "replace it")
    NAMED_DATASETS[dataset.name] = dataset
    return dataset


__all__ = ["NAMED_DATASETS", "NamedDataset", "Source", "load_preference_rows", "open_source", "provide_hint",
           "register_named_dataset"]
