"""Rows for an evaluator: loaded from the dataset store, rows skipped and limited as the config says."""

from __future__ import annotations

from typing import Any

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.eval.base import DatasetEvalConfig, EvalEnv


def load_rows(config: DatasetEvalConfig, env: EvalEnv) -> list[tuple[int, dict[str, Any]]]:
    """``(index in the split, row)`` pairs; an empty selection is an error naming the dataset. A public
    set (GSM8K, MMLU ...) the store cannot load is an error saying how to provide it."""
    try:
        dataset = env.dataset_store.load_dataset(config.dataset, config.split)
    except DatasetError as exc:
        from tinkex_cookbook.eval.public import missing_data_hint

        hint = missing_data_hint(config.dataset)
        if hint is None:
            raise
        raise DatasetError(f"{exc}\n{hint}") from exc
    end = len(dataset) if config.limit is None else min(len(dataset), config.skip + config.limit)
    indices = list(range(config.skip, end))
    if not indices:
        raise DatasetError(f"dataset {config.dataset!r} ({config.split}) has {len(dataset)} rows; with "
                           f"skip={config.skip} none is left to evaluate. Fix: lower skip, or use a larger split")
    rows = dataset.select(indices).to_list()
    return list(zip(indices, rows, strict=True))
