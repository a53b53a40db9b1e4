"""Answer graders for RL (``tinkex_cookbook.train.rl.graders``) and the shipped ``math_word_problems`` set.

Examples follow tinker-cookbook's ``math_env_test.py`` where the behaviour is the same; the
deliberate differences (see the module docstring) have their own tests.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook.adapters.datasets.local import SHIPPED, LocalDatasetStore, shipped_names
from tinkex_cookbook.errors import UnknownNameError
from tinkex_cookbook.train.rl.graders import (
    GRADERS,
    BoxedAnswer,
    Contains,
    ExactMatch,
    Grader,
    Gsm8kAnswer,
    NumericAnswer,
    extract_boxed,
    extract_gsm8k,
    get_grader,
    last_number,
    normalize_answer,
    numeric_equal,
    parse_number,
    reward,
    sympy_equal,
)

ROOT = Path(__file__).resolve().parents[1]
HAS_SYMPY = importlib.util.find_spec("sympy") is not None
needs_sympy = pytest.mark.skipif(not HAS_SYMPY, reason="sympy is not installed")

# --- extract_boxed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is \\boxed{42}", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\sqrt{\\frac{3}{4}}}", "\\sqrt{\\frac{3}{4}}"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed 7", "7"),
        ("\\boxed{}", ""),
        ("\\boxed{x^2 + 1}", "x^2 + 1"),
        ("{ \\boxed{5}", "5"),  # an unclosed brace before the box does not matter
        ("\\boxed{3} and later \\boxed{4", "3"),  # last *complete* box, as the reference
        ("\\boxed{\\boxed{1}}", "\\boxed{1}"),
        ("no answer here", None),
        ("\\boxed{12", None),
        ("\\fbox{3}", None),  # the reference does not read \fbox either
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_extract_boxed_differs_from_the_reference_on_purpose() -> None:
    # the reference raises "Unmatched }" for the whole response, and takes the first bare \boxed
    assert extract_boxed("a set {1,2}} so \\boxed{3}") == "3"
    assert extract_boxed("\\boxed 7 or rather \\boxed 8") == "8"


def test_extract_boxed_is_linear_on_long_text() -> None:
    text = "{" * 50_000 + "\\boxed{9}" + "}" * 60_000
    start = time.perf_counter()
    assert extract_boxed(text) == "9"
    assert time.perf_counter() - start < 1.0


# --- extract_gsm8k ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Some reasoning.\n#### 42", "42"),
        ("Calculation.\n#### 1,234", "1234"),
        ("####: 55", "55"),
        ("#### 10\nMore reasoning.\n#### 20", "20"),
        ("The total is #### 99 dollars.", "99 dollars."),
        ("#### -3\n", "-3"),
        ("no hash marks here", None),
        ("####   \nnothing after it", None),
    ],
)
def test_extract_gsm8k(text: str, expected: str | None) -> None:
    assert extract_gsm8k(text) == expected


# --- normalize_answer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  42  ", "42"),
        ("\\text{hello}", "hello"),
        ("\\frac12", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac{3}{4}", "\\frac{3}{4}"),
        ("\\$100", "100"),
        ("50\\%", "50"),
        ("x = 5", "5"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("10\\text{ dollars}", "10"),
        ("90^\\circ", "90"),
        ("0.5", "\\frac{1}{2}"),
        (".5", "\\frac{1}{2}"),
        ("3/4", "\\frac{3}{4}"),
        ("\\sqrt3", "\\sqrt{3}"),
        ("a\\!b", "ab"),
        ("$5", "$5"),  # a bare $ is the looser normalizer's job, as in the reference
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


# --- parse_number / numeric_equal -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42.0), ("-3", -3.0), ("+7", 7.0), ("−4", -4.0), ("0.50", 0.5), (".5", 0.5), ("42.", 42.0),
        ("1,234", 1234.0), ("1,000,000,000", 1e9), ("$1,000", 1000.0), ("\\$1,000", 1000.0),
        ("-$5", -5.0), ("3/4", 0.75), ("-3/4", -0.75), ("3 / 4", 0.75), ("\\frac{3}{4}", 0.75),
        ("-\\frac{3}{4}", -0.75), ("\\frac{-3}{4}", -0.75), ("\\dfrac34", 0.75), ("\\tfrac{1}{8}", 0.125),
        ("50%", 50.0), ("50\\%", 50.0), ("90^\\circ", 90.0), ("\\text{42}", 42.0), ("{42}", 42.0),
        (" 7 ", 7.0),
    ],
)
def test_parse_number(text: str, expected: float) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "-", "x", "1,23", "12,34,567", "1 3/4", "1/0", "\\frac{1}{0}", "inf", "nan", "1e3", "1_000",
     "seven", "42 dollars", "1" * 201, "9" * 400],
)
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [("0.50", "1/2"), ("0.5", "\\frac{1}{2}"), ("$1,000", "1000"), ("-3", "-3.0"), ("\\frac{2}{4}", "0.5"),
     ("1,000,000,000", "1000000000"), ("\\frac{3}{4}", "0.75"), ("1/3", "0.3333333333")],
)
def test_numeric_equal(a: str, b: str) -> None:
    assert numeric_equal(a, b) and numeric_equal(b, a)


def test_numeric_equal_rejects() -> None:
    assert not numeric_equal("0.5", "0.51")
    assert not numeric_equal("1/3", "0.333")
    assert not numeric_equal("x", "x")
    assert not numeric_equal("0", "1e-9")
    assert numeric_equal("100", "101", rel_tol=0.02)


# --- sympy_equal ------------------------------------------------------------------------------


@needs_sympy
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("2x+x", "3x", True),
        ("x^2+2x+1", "(x+1)^2", True),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
        ("2\\sqrt{3}", "\\sqrt{12}", True),
        ("1\\frac{1}{2}", "\\frac{3}{2}", True),  # mixed number
        ("\\frac{x+1}{x-1}", "(x+1)/(x-1)", True),
        ("(1,2)", "\\left(1, 2\\right)", True),
        ("(-\\infty, 3]", "(-\\infty,3]", True),
        ("x^2+1", "x^2", False),
        ("(1,2)", "(2,1)", False),
        ("(1,2)", "(1,2,3)", False),
        ("hello world", "hello there", None),  # more than two letters: never handed to sympy
        ("hello world", "Hello  World", True),  # the same after normalization: no sympy needed
        ("\\infty", "\\infty", True),  # though oo - oo is nan
    ],
)
def test_sympy_equal(a: str, b: str, expected: bool | None) -> None:
    assert sympy_equal(a, b) is expected


@needs_sympy
@pytest.mark.parametrize(
    "a",
    ["9**9**9", "9^9^9", "9^-9^9", "2^{10}", "2^(99)", "10!", "((x+y)^9)^9", "(((x+y)^9)^9)^9",
     "((x+1)/(y+2))^9-((x+2)/(y+1))^9+(x/(x+y))^9", "__import__('os').getcwd()", "1" * 201],
)
def test_sympy_equal_refuses_what_could_hang(a: str) -> None:
    start = time.perf_counter()
    assert sympy_equal(a, "1") is None
    assert time.perf_counter() - start < 1.0


def test_sympy_equal_without_sympy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sympy", None)  # makes "import sympy" raise ImportError
    assert sympy_equal("2x+x", "3x") is None
    assert BoxedAnswer(use_sympy=True).grade("\\boxed{0.5}", "1/2")  # still numeric


@pytest.mark.parametrize("module", ["graders.py", "eval_graders.py"])
def test_graders_import_only_the_standard_library_and_errors_at_module_level(module: str) -> None:
    source = (ROOT / "tinkex_cookbook" / "train" / "rl" / module).read_text()
    imported = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {
        "__future__", "math", "re", "warnings", "collections", "collections.abc", "dataclasses", "fractions",
        "functools", "json", "threading", "types", "typing", "tinkex_cookbook.errors",
        "tinkex_cookbook.train.rl.eval_graders",
    }


# --- graders ----------------------------------------------------------------------------------


def test_registry() -> None:
    assert set(GRADERS) == {"exact_match", "contains", "boxed", "boxed_sympy", "gsm8k", "numeric",
                            "exact", "sympy", "choice", "ifeval", "math_verify"}
    aliases = {"exact": "exact_match", "sympy": "boxed_sympy"}
    for name in set(GRADERS) - {"math_verify"}:  # an optional extra: tests/test_eval_graders.py
        grader = get_grader(name)
        assert isinstance(grader, Grader) and grader.name == aliases.get(name, name)
    assert get_grader("exact") == get_grader("exact_match")
    assert get_grader("sympy") == get_grader("boxed_sympy")
    assert get_grader("boxed_sympy") == BoxedAnswer(use_sympy=True, name="boxed_sympy")


def test_unknown_grader_names_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown grader 'bxoed'.*'boxed', 'boxed_sympy'.*'numeric'"):
        get_grader("bxoed")
    with pytest.raises(LookupError):
        get_grader("")


def test_graders_are_frozen() -> None:
    with pytest.raises(AttributeError):
        BoxedAnswer().use_sympy = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("so \\boxed{42}", "42", True),
        ("so \\boxed{43}", "42", False),
        ("\\boxed{\\frac{1}{2}}", "0.5", True),
        ("\\boxed{0.50}", "1/2", True),
        ("\\boxed{\\$1,000}", "1000", True),
        ("\\boxed{$1,000}", "1000", True),
        ("\\boxed{-7}", "-7", True),
        ("\\boxed{-7}", "7", False),
        ("\\boxed{5.0}", "5", True),
        ("\\boxed{5.1}", "5", False),
        ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", True),  # the reference refuses unreduced fractions
        ("\\boxed{\\text{yes}}", "yes", True),
        ("\\boxed{10\\text{ cm}}", "10", True),
        ("\\boxed{(1, 2)}", "(1,2)", True),
        ("\\boxed{\\pi/4}", "\\frac{\\pi}{4}", True),
        ("\\boxed{1} no wait \\boxed{2}", "2", True),
        ("\\boxed{1} no wait \\boxed{2}", "1", False),
        ("the answer is 42", "42", False),
        ("\\boxed{}", "42", False),
    ],
)
def test_boxed_answer(response: str, answer: str, expected: bool) -> None:
    assert BoxedAnswer().grade(response, answer) is expected


@needs_sympy
def test_boxed_answer_with_sympy() -> None:
    assert not BoxedAnswer().grade("\\boxed{2\\sqrt{3}}", "\\sqrt{12}")
    assert BoxedAnswer(use_sympy=True).grade("\\boxed{2\\sqrt{3}}", "\\sqrt{12}")
    assert BoxedAnswer(use_sympy=True).grade("\\boxed{x^2+2x+1}", "(x+1)^2")
    assert not BoxedAnswer(use_sympy=True).grade("\\boxed{x^2+2x}", "(x+1)^2")


def test_boxed_format() -> None:
    grader = BoxedAnswer()
    assert grader.check_format("\\boxed{}")  # an empty box is the right format, as in the reference
    assert grader.check_format("\\boxed 3")
    assert not grader.check_format("the answer is 3")


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("Reasoning.\n#### 1,234", "1234", True),
        ("#### 1234", "1,234", True),
        ("#### $18", "18", True),
        ("#### 18 dollars", "18", True),
        ("####: 0.5", "1/2", True),
        ("#### -3", "-3", True),
        ("#### 17", "18", False),
        ("#### 18\nactually\n#### 17", "18", False),
        ("18", "18", False),
    ],
)
def test_gsm8k_answer(response: str, answer: str, expected: bool) -> None:
    assert Gsm8kAnswer().grade(response, answer) is expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("91", "91"),
        ("64 + 67 = **131**", "131"),
        ("64 + 60 = 124, then 124 + 7 = 131. The answer is 131.", "131"),
        ("It costs $1,234.", "1,234"),
        ("10 - 3 = 7", "7"),
        ("so x = -5", "-5"),
        ("half is 1/2", "1/2"),
        ("half is \\frac{1}{2}", "\\frac{1}{2}"),
        ("1,2,3", "3"),
        ("no numeric answer", None),
    ],
)
def test_last_number(response: str, expected: str | None) -> None:
    assert last_number(response) == expected


def test_numeric_answer() -> None:
    grader = NumericAnswer()
    assert grader.grade("64 + 67 = **131**", "131")
    assert grader.grade("It costs $1,234.", "1234")
    assert grader.grade("so it is 0.50", "1/2")
    assert not grader.grade("5 - 3", "2")
    assert not grader.grade("none", "2") and not grader.check_format("none")


def test_exact_match_and_contains() -> None:
    assert ExactMatch().grade("  42 ", "42")
    assert ExactMatch().grade("\\text{yes}", "yes")
    assert ExactMatch().grade("$5", "5")
    assert not ExactMatch().grade("The answer is 42", "42")
    assert Contains().grade("The answer is 42.", "42")
    assert Contains().grade("so x = \\dfrac{1}{2}", "\\frac12")
    assert not Contains().grade("The answer is 41.", "42")
    assert not Contains().grade("anything", "   ")  # an empty answer is in every string: never a match
    assert not ExactMatch().check_format("  ") and Contains().check_format("x")


# --- reward -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format_ok", "correct", "expected"),
    [(True, True, 1.0), (False, True, 0.9), (True, False, 0.0), (False, False, -0.1)],
)
def test_reward(format_ok: bool, correct: bool, expected: float) -> None:
    assert reward(format_ok, correct) == expected
    assert reward(format_ok, correct, format_coef=0.0) == float(correct)


# --- properties -------------------------------------------------------------------------------

numbers = st.integers() | st.fractions()
no_box = st.text(max_size=40).filter(lambda t: "\\boxed" not in t)
mathy = st.lists(
    st.sampled_from(
        ["\\boxed{", "\\boxed ", "{", "}", "####", ":", "\n", " ", "-", ".", ",", "/", "$", "%", "\\frac",
         "\\sqrt", "^", "**", "(", ")", "x", "y", "=", "\\text{ ", "\\!", "0", "1", "2", "7", "12", "1,000"]
    )
    | st.text(max_size=3),
    max_size=14,
).map("".join)


def number_strings() -> st.SearchStrategy[str]:
    ints = st.integers(-10**15, 10**15)
    return st.one_of(
        ints.map(str),
        ints.map(lambda n: f"{n:,}"),
        ints.map(lambda n: f"${n:,}" if n >= 0 else f"-${-n:,}"),
        st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6)
        .map(str),
        st.tuples(ints, st.integers(1, 10**6)).map(lambda t: f"{t[0]}/{t[1]}"),
        st.tuples(st.integers(0, 10**6), st.integers(1, 10**6)).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
    )


@given(numbers, no_box, no_box)
@settings(max_examples=150)
def test_extract_boxed_reads_any_number_in_any_surroundings(
    n: int | Fraction, before: str, after: str
) -> None:
    assert extract_boxed(f"... \\boxed{{{n}}}") == str(n)
    assert extract_boxed(f"{before}\\boxed{{{n}}}{after}") == str(n)


@given(number_strings(), number_strings())
@settings(max_examples=150)
def test_numeric_equal_is_reflexive_and_symmetric(a: str, b: str) -> None:
    assert parse_number(a) is not None
    assert numeric_equal(a, a)
    assert numeric_equal(a, b) == numeric_equal(b, a)


@given(st.integers())
@settings(max_examples=100)
def test_thousands_separators_do_not_change_the_number(n: int) -> None:
    assert numeric_equal(f"{n:,}", str(n))
    assert NumericAnswer().grade(f"so the total is {n:,}.", str(n))


@given(st.integers(), st.text(max_size=40))
@settings(max_examples=100)
def test_extract_gsm8k_round_trip(n: int, reasoning: str) -> None:
    assert extract_gsm8k(f"{reasoning}\n#### {n:,}") == str(n)
    assert Gsm8kAnswer().grade(f"{reasoning}\n#### {n:,}", str(n))


FAST_GRADERS = [name for name in GRADERS if name not in {"boxed_sympy", "sympy", "math_verify"}]


@given(st.sampled_from(FAST_GRADERS), st.text(max_size=60) | mathy, st.text(max_size=20) | mathy)
@settings(max_examples=200)
def test_graders_never_raise_and_grade_implies_format(name: str, response: str, answer: str) -> None:
    grader = get_grader(name)
    ok, correct = grader.check_format(response), grader.grade(response, answer)
    assert isinstance(ok, bool) and isinstance(correct, bool)
    if correct:
        assert ok
    assert reward(ok, correct) in {-0.1, 0.9, 1.0, 0.0}


@needs_sympy
@given(mathy, mathy)
@settings(max_examples=60, deadline=None)
def test_sympy_grader_never_raises(response: str, answer: str) -> None:
    grader = get_grader("boxed_sympy")
    correct = grader.grade(response, answer)
    assert isinstance(correct, bool) and (grader.check_format(response) or not correct)
    assert sympy_equal(response, answer) in {True, False, None}


@given(st.booleans(), st.booleans())
def test_reward_values(format_ok: bool, correct: bool) -> None:
    assert reward(format_ok, correct) in {-0.1, 0.9, 1.0, 0.0}
    assert reward(format_ok, correct) == 0.1 * (float(format_ok) - 1) + float(correct)


# --- the shipped math_word_problems set -------------------------------------------------------


def load_generator():
    path = ROOT / "docs" / "scripts" / "make_math_problems.py"
    spec = importlib.util.spec_from_file_location("make_math_problems", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_math_word_problems_load_from_any_root() -> None:
    store = LocalDatasetStore(Path("/nonexistent"))
    train = list(store.load_dataset("math_word_problems", "train"))
    test = list(store.load_dataset("math_word_problems", "test"))
    assert (len(train), len(test)) == (200, 40)
    assert "math_word_problems" in shipped_names()
    questions = [row["question"] for row in train + test]
    assert len(set(questions)) == len(questions)  # unique, so test is disjoint from train
    for row in train + test:
        assert set(row) == {"question", "answer"}
        assert row["answer"].isdigit() and int(row["answer"]) > 0 and str(int(row["answer"])) == row["answer"]
        assert BoxedAnswer().grade(f"\\boxed{{{row['answer']}}}", row["answer"])
        assert NumericAnswer().grade(f"So the answer is {int(row['answer']):,}.", row["answer"])


def test_generator_reproduces_the_shipped_files() -> None:
    built = load_generator().build()
    for split in ("train", "test"):
        lines = (SHIPPED / "math_word_problems" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == built[split]
