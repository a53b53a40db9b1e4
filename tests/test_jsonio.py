"""Hostile JSON text becomes one typed error naming where, whatever the way it is broken."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinkex_cookbook.errors import DatasetError
from tinkex_cookbook.jsonio import dump, parse, problem


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        ("{", "not JSON"),
        ("[" * 5000 + "]" * 5000, "too deeply"),
        ("9" * 5000, "cannot be read .an integer of more than 4300 digits"),
    ],
)
def test_each_way_of_breaking_json_is_named(data: str | bytes, says: str) -> None:
    with pytest.raises(DatasetError, match=rf"^rows\.jsonl line 3 .*{says}"):
        parse(data, "rows.jsonl line 3", DatasetError)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_valid_json_round_trips(value: object) -> None:
    assert problem(dump(value)) == (value, None)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_dump_refuses_non_finite_numbers(number: float) -> None:
    with pytest.raises(ValueError):
        dump({"loss": number})
