"""Graders for public evaluation sets (``tinkex_cookbook.train.rl.eval_graders``): ``choice``,
``ifeval``, ``math_verify``, and the agreement of ``boxed_sympy`` with math-verify."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex_cookbook.errors import ConfigError
from tinkex_cookbook.train.rl.eval_graders import (
    IFEVAL_INSTRUCTIONS,
    ChoiceAnswer,
    IfEvalAnswer,
    count_sentences,
    extract_choice,
    ifeval_results,
    parse_ifeval_reference,
)
from tinkex_cookbook.train.rl.graders import GRADERS, Grader, get_grader

# --- choice -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "letter"), [
    ("B", "B"),
    ("b", "B"),
    ("(B)", "B"),
    ("C.", "C"),
    ("The answer is B.", "B"),
    ("Answer: b) Paris", "B"),
    ("answer: a. Paris", "A"),
    ("**C**", "C"),
    ("I think **(D)** is right", "D"),
    ("**B) Paris** is the capital.", "B"),
    ("The correct option is **C**.", "C"),
    ("So the answer is (a).", "A"),
    ('The answer is "D".', "D"),
    ("The answer is A because water boils at 100.", "A"),
    ("Let me check A... no. Option C fails too. The answer is B", "B"),  # the last explicit answer
    ("The final answer: \\boxed{D}", "D"),
    ("\\boxed{\\text{C}}", "C"),
    ("B) Paris", "B"),
    ("(C) Jupiter, the largest planet.", "C"),
    ("D. Ampere", "D"),
    ("Paris is the capital, so I'd pick (B).", "B"),
    ("the answer is c", "C"),
    ("The answer is I.", "I"),  # a tenth-choice letter when allowed
])
def test_extract_choice(reply: str, letter: str) -> None:
    assert extract_choice(reply) == letter
    assert ChoiceAnswer().grade(reply, letter) and ChoiceAnswer().check_format(reply)


@pytest.mark.parametrize("reply", [
    "A good question! Let me think.",  # a capital that starts a sentence is not a choice
    "I think it is Paris.",
    "The answer is a bit unclear.",
    "Answer: I am not sure.",
    "Answer with the letter of the choice.",
    "The answer is 42.",
    "Either (A) or (B), I cannot tell.",
    "",
    "   ",
    "Paris",
])
def test_extract_choice_refuses_what_is_no_answer(reply: str) -> None:
    assert extract_choice(reply) is None
    assert not ChoiceAnswer().check_format(reply)


def test_a_reply_that_starts_with_a_choice_picks_it() -> None:
    assert extract_choice("(A) is wrong and (B) is right") == "A"  # step 4 comes before step 5: documented


def test_choice_letters_bound_what_counts() -> None:
    four = ChoiceAnswer(letters="ABCD")
    assert extract_choice("The answer is E.", "ABCD") is None
    assert not four.grade("E", "E")
    assert four.grade("The answer is (d)", "D") and four.grade("D", "(D)")
    assert not four.grade("B", "C") and not four.grade("B", "not a letter")


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_choice_never_raises(text: str) -> None:
    letter = extract_choice(text)
    assert letter is None or (len(letter) == 1 and letter in "ABCDEFGHIJ")
    grader = ChoiceAnswer()
    assert isinstance(grader.grade(text, "B"), bool) and isinstance(grader.check_format(text), bool)
    if grader.grade(text, "B"):
        assert grader.check_format(text)


TEMPLATES = ["{L}", "({L})", "The answer is {L}.", "Answer: {l}) something", "**{L}**", "{L}. something",
             "After thinking it over, the correct answer is ({L}).", "Final answer: {L}"]


@given(st.sampled_from("ABCD"), st.sampled_from(TEMPLATES), st.sampled_from(["", "Let me think. ", "Hmm.\n"]))
def test_choice_finds_the_letter_in_every_template(letter: str, template: str, preamble: str) -> None:
    reply = template.format(L=letter, l=letter.lower())
    if not template.startswith(("{L}", "({L})")):  # a leading letter is only a choice at the start
        reply = preamble + reply
    assert extract_choice(reply) == letter


# --- ifeval: each instruction -------------------------------------------------------------------

IFEVAL_CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    ("punctuation:no_comma", {}, "No commas here at all.", True),
    ("punctuation:no_comma", {}, "Well, there is one.", False),
    ("change_case:english_lowercase", {}, "all lower case, 123 digits ok.", True),
    ("change_case:english_lowercase", {}, "One capital.", False),
    ("change_case:english_capital", {}, "ALL CAPITALS, 42 TIMES!", True),
    ("change_case:english_capital", {}, "ALMOST aLL", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "one two three four", True),
    ("length_constraints:number_words", {"num_words": 4, "relation": "less than"}, "one two three four", False),
    ("length_constraints:number_words", {"num_words": 4, "relation": "at least"}, "don't stop-now, ok", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "don't stop-now", False),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, "One. Two!", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"}, "One. Two!", False),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
     "Dr. Smith came. He sat down? Yes!", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "One.\n***\nTwo.\n***\nThree.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "***\nOne.\n***\nTwo.\n***", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nOne.\n***\nTwo.\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "One.\n***\n\n***\nThree.", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "night"},
     "The keeper climbed.\n\n\"Night, at last,\" he said.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "night"},
     "The keeper climbed.\n\nDay came.", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "night"},
     "The keeper climbed.\n\nNight fell.", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "Intro\n* one\n* two\n- three", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* one\n* two\n**bold** not a bullet", False),
    ("detectable_format:title", {}, "<<A Poem of Leaves>>\nLeaves fall.", True),
    ("detectable_format:title", {}, "<< >> and <<\n>>", False),
    ("detectable_format:json_format", {}, '```json\n{"name": "Ada", "age": 36}\n```', True),
    ("detectable_format:json_format", {}, '{"name": "Ada"} and more', False),
    ("detectable_format:constrained_response", {}, "Well... My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "Yes it is.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and ** **", False),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nread\nSECTION 2\nrest", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 3},
     "SECTION 1\nread\nSECTION 2\nrest", False),
    ("combination:two_responses", {}, "Sweet Rise\n******\nCrumb & Co", True),
    ("combination:two_responses", {}, "Sweet Rise\n******\nSweet Rise", False),
    ("combination:two_responses", {}, "A\n******\n\n******\nB", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a riddle about a clock."},
     "write a riddle about a clock. I have hands but no arms.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a riddle about a clock."}, "Here: a riddle.", False),
    ("keywords:existence", {"keywords": ["durable", "light"]}, "A DURABLE and Lightweight bottle.", True),
    ("keywords:existence", {"keywords": ["durable", "cheap"]}, "A durable bottle.", False),
    ("keywords:existence", {"keywords": ["c++"]}, "I write C++ daily.", True),  # literal, not a regex
    ("keywords:forbidden_words", {"forbidden_words": ["lion", "tiger"]}, "Lionfish and tigers swim by.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["lion", "tiger"]}, "A Lion roared.", False),
    ("keywords:frequency", {"keyword": "together", "frequency": 3, "relation": "at least"},
     "Together we win, together we stand, all together.", True),
    ("keywords:frequency", {"keyword": "together", "frequency": 2, "relation": "less than"},
     "Together, together.", False),
    ("keywords:letter_frequency", {"letter": "e", "let_frequency": 3, "let_relation": "at least"}, "Eee", True),
    ("keywords:letter_frequency", {"letter": "e", "let_frequency": 3, "let_relation": "less than"}, "eEe", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "RUN hard and NEVER stop", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "RUN hard and NEVER stop", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Thanks! Any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("startend:quotation", {}, '  "Octopuses have three hearts."  ', True),
    ("startend:quotation", {}, '"', False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "See you!\n\nP.S. Bring snacks.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "See you! PS bring snacks", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye\nP.P.S. cookies", True),
    ("detectable_content:postscript", {"postscript_marker": "Note:"}, "Bye\nnote: cookies", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name].", False),
]


@pytest.mark.parametrize(("instruction", "kwargs", "reply", "followed"), IFEVAL_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(IFEVAL_CASES)])
def test_ifeval_instruction(instruction: str, kwargs: dict[str, Any], reply: str, followed: bool) -> None:
    answer = json.dumps({"instruction_id_list": [instruction], "kwargs": [kwargs]})
    assert ifeval_results(reply, answer) == [followed]
    assert IfEvalAnswer().grade(reply, answer) is followed
    assert IfEvalAnswer().check_format(reply, answer)


def test_every_supported_instruction_has_cases() -> None:
    assert {case[0] for case in IFEVAL_CASES} == set(IFEVAL_INSTRUCTIONS)
    assert len(IFEVAL_INSTRUCTIONS) == 24 and "language:response_language" not in IFEVAL_INSTRUCTIONS


@pytest.mark.parametrize(("text", "sentences"), [
    ("", 0), ("One", 1), ("One.", 1), ("One. Two", 2), ("Hi! How are you? Fine.", 3),
    ("Dr. Smith met Mrs. Jones.", 1), ("It costs 3.50 dollars. Cheap.", 2), ("Use e.g. this. Done.", 2),
    ('He said "stop." Then left.', 2), ("J. R. R. Tolkien wrote it.", 1), ("A list\nwith lines\nno stops", 1),
])
def test_count_sentences(text: str, sentences: int) -> None:
    assert count_sentences(text) == sentences


def test_ifeval_needs_every_instruction() -> None:
    answer = json.dumps({"instruction_id_list": ["punctuation:no_comma", "startend:quotation"], "kwargs": [{}, {}]})
    grader = IfEvalAnswer()
    assert grader.grade('"no commas"', answer)
    assert ifeval_results('"yes, a comma"', answer) == [False, True]
    assert not grader.grade('"yes, a comma"', answer)


def test_ifeval_reads_hugging_face_rows_with_null_kwargs() -> None:
    """google/IFEval gives every row every kwargs key, the unused ones null."""
    keys = ["num_words", "relation", "keywords", "end_phrase", "num_highlights", "postscript_marker"]
    row_kwargs = [{**dict.fromkeys(keys), "num_words": 5, "relation": "less than"}, dict.fromkeys(keys)]
    answer = json.dumps({"instruction_id_list": ["length_constraints:number_words", "punctuation:no_comma"],
                         "kwargs": row_kwargs})
    assert parse_ifeval_reference(answer) == [("length_constraints:number_words", {"num_words": 5,
                                                                                    "relation": "less than"}),
                                              ("punctuation:no_comma", {})]
    assert IfEvalAnswer().grade("short reply", answer)
    as_floats = json.dumps({"instruction_id_list": ["length_constraints:number_words"],
                            "kwargs": [{"num_words": 5.0, "relation": "less than"}]})
    assert IfEvalAnswer().grade("short reply", as_floats) and IfEvalAnswer().check_format("x", as_floats)


@pytest.mark.parametrize("answer", [
    json.dumps({"instruction_id_list": ["language:response_language"], "kwargs": [{"language": "en"}]}),
    json.dumps({"instruction_id_list": ["no:such_thing"], "kwargs": [{}]}),
    json.dumps({"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 5}]}),
    json.dumps({"instruction_id_list": ["length_constraints:number_words"],
                "kwargs": [{"num_words": 5, "relation": "at most"}]}),
    json.dumps({"instruction_id_list": ["keywords:existence"], "kwargs": [{"keywords": "not a list"}]}),
    json.dumps({"instruction_id_list": ["detectable_format:number_bullet_lists"], "kwargs": [{"num_bullets": 2.5}]}),
    json.dumps({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}, {}]}),
    json.dumps({"instruction_id_list": [], "kwargs": []}),
    "not json", "[1, 2]", "",
])
def test_ifeval_unknown_or_broken_references_fail_without_raising(answer: str) -> None:
    grader = IfEvalAnswer()
    assert not grader.grade("a reply with no commas", answer)
    assert not grader.check_format("a reply with no commas", answer)
    assert grader.check_format("a reply with no commas")  # without the reference: a non-empty reply
    assert not all(ifeval_results("a reply with no commas", answer) or [False])


SAMPLE_KWARGS = {
    "length_constraints:number_words": {"num_words": 10, "relation": "at least"},
    "length_constraints:number_sentences": {"num_sentences": 2, "relation": "less than"},
    "length_constraints:number_paragraphs": {"num_paragraphs": 2},
    "length_constraints:nth_paragraph_first_word": {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "a"},
    "detectable_format:number_bullet_lists": {"num_bullets": 2},
    "detectable_format:number_highlighted_sections": {"num_highlights": 1},
    "detectable_format:multiple_sections": {"section_spliter": "Section", "num_sections": 2},
    "detectable_content:number_placeholders": {"num_placeholders": 1},
    "detectable_content:postscript": {"postscript_marker": "P.S."},
    "keywords:existence": {"keywords": ["a"]},
    "keywords:forbidden_words": {"forbidden_words": ["a"]},
    "keywords:frequency": {"keyword": "a", "frequency": 2, "relation": "at least"},
    "keywords:letter_frequency": {"letter": "a", "let_frequency": 2, "let_relation": "less than"},
    "change_case:capital_word_frequency": {"capital_frequency": 1, "capital_relation": "at least"},
    "combination:repeat_prompt": {"prompt_to_repeat": "Say a"},
    "startend:end_checker": {"end_phrase": "bye"},
}


@given(st.sampled_from(sorted(IFEVAL_INSTRUCTIONS)), st.text(max_size=200))
@settings(max_examples=300)
def test_ifeval_never_raises(instruction: str, reply: str) -> None:
    answer = json.dumps({"instruction_id_list": [instruction], "kwargs": [SAMPLE_KWARGS.get(instruction, {})]})
    assert IfEvalAnswer().check_format("x", answer)  # the sample arguments are valid
    results = ifeval_results(reply, answer)
    assert len(results) == 1 and isinstance(results[0], bool)
    assert IfEvalAnswer().grade(reply, answer) is results[0]


def test_aliases_and_registry() -> None:
    assert {"exact", "sympy", "choice", "ifeval", "math_verify"} <= set(GRADERS)
    assert get_grader("exact").grade(" 42 ", "42") and get_grader("exact").name == "exact_match"
    assert get_grader("sympy").name == "boxed_sympy"
    for name in ("choice", "ifeval"):
        assert isinstance(get_grader(name), Grader) and get_grader(name).name == name


# --- math-verify ---------------------------------------------------------------------------------


def test_math_verify_missing_is_a_config_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)  # import math_verify now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tinkex-cookbook\[math\]'"):
        get_grader("math_verify")


# (reply, gold, verdict): boxed_sympy and math-verify agree on every pair, and so does boxed on those
# not in SYMBOLIC (it has no symbolic step)
SHARED_SAMPLE: list[tuple[str, str, bool]] = [
    (r"The answer is \boxed{42}.", "42", True),
    (r"\boxed{41}", "42", False),
    (r"so \boxed{-3}", "-3", True),
    (r"\boxed{3}", "-3", False),
    (r"\boxed{-5}", "5", False),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", True),
    (r"\boxed{0.5}", r"\frac{1}{2}", True),
    (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", True),
    (r"\boxed{1/2}", r"\frac{1}{2}", True),
    (r"\boxed{\frac{2}{4}}", r"\frac{1}{2}", True),
    (r"\boxed{\frac{1}{3}}", r"\frac{1}{2}", False),
    (r"\boxed{\frac12}", "0.5", True),
    (r"\boxed{0.5}", "1/2", True),
    (r"\boxed{-\frac{3}{4}}", r"-\frac{3}{4}", True),
    (r"\boxed{\frac{-3}{4}}", r"-\frac{3}{4}", True),
    (r"\boxed{-0.75}", r"-\frac{3}{4}", True),
    (r"\boxed{\frac{7}{2}}", "3.5", True),
    (r"\boxed{1.5}", r"\frac{3}{2}", True),
    (r"\boxed{0.333333}", r"\frac{1}{3}", True),
    (r"\boxed{\sqrt{2}}", r"\sqrt{2}", True),
    (r"\boxed{\sqrt2}", r"\sqrt{2}", True),
    (r"\boxed{2\sqrt{3}}", r"2\sqrt{3}", True),
    (r"\boxed{\sqrt{3}}", r"2\sqrt{3}", False),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt3}{2}", True),
    (r"\boxed{1,000}", "1000", True),
    (r"\boxed{1000}", "1,000", True),
    (r"\boxed{1,000,000}", "1000000", True),
    (r"\boxed{12345}", "12,345", True),
    (r"\boxed{\$1,000}", "1000", True),
    (r"\boxed{10\text{ dollars}}", "10", True),
    (r"\boxed{10 \text{ cm}}", "10", True),
    (r"\boxed{12}", r"12\text{ inches}", True),
    (r"\boxed{5 dollars}", "5", False),
    (r"\boxed{\$18}", "18", True),
    (r"$\boxed{18}$ dollars", "18", True),
    (r"\boxed{50\%}", "50", True),
    (r"\boxed{50}", r"50\%", True),
    (r"\boxed{90^\circ}", "90", True),
    (r"\boxed{5.0}", "5", True),
    (r"\boxed{5.00001}", "5", False),
    (r"\boxed{007}", "7", True),
    (r"\boxed{ 7 }", "7", True),
    (r"\boxed{1.23}", "1.230", True),
    (r"no answer here", "42", False),
    (r"\boxed{}", "42", False),
    (r"first \boxed{4} then \boxed{3}", "4", False),
    (r"\boxed{x=5}", "5", True),
    (r"\boxed{y=2x+1}", "2x+1", True),
    (r"\boxed{x+1}", "x+1", True),
    (r"\boxed{(1,2)}", "(1,2)", True),
    (r"\boxed{(2,1)}", "(1,2)", False),
    (r"\boxed{[1,3)}", "[1,3)", True),
    (r"\boxed{(1,3)}", "[1,3)", False),
    (r"\boxed{\{1,2\}}", r"\{1,2\}", True),
    (r"\boxed{\pi}", r"\pi", True),
    (r"\boxed{3.14}", r"\pi", False),
    (r"\boxed{\frac{\pi}{2}}", r"\frac{\pi}{2}", True),
    (r"\boxed{3\pi}", r"3\pi", True),
    (r"\boxed{\infty}", r"\infty", True),
    (r"\boxed{\text{Monday}}", r"\text{Monday}", True),
    (r"\boxed{\text{B}}", "B", True),
    (r"\boxed{\text{(B)}}", r"\text{(B)}", True),
    # equal only symbolically: boxed_sympy and math-verify say yes; boxed (no sympy) says no
    (r"\boxed{\sqrt{12}}", r"2\sqrt{3}", True),
    (r"\boxed{1+x}", "x+1", True),
    (r"\boxed{2x+x}", "3x", True),
    (r"\boxed{x^2-1}", "(x-1)(x+1)", True),
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{\sqrt{2}}{2}", True),
    (r"\boxed{16}", r"\sqrt{256}", True),
    (r"\boxed{10^{3}}", "1000", True),
    (r"\boxed{1\frac{1}{2}}", r"\frac{3}{2}", True),
]
SYMBOLIC = SHARED_SAMPLE[-8:]

# (reply, gold, ours (boxed and boxed_sympy), math-verify's verdict): where they differ, on purpose
DOCUMENTED_DIFFERENCES: list[tuple[str, str, bool, bool]] = [
    # no \boxed{}: ours grade the format the task asks for; math-verify falls back to the last number
    ("The answer is 42.", "42", False, True),
    # several boxes: ours take the last; math-verify takes them all, as a set {3, 4}
    (r"first \boxed{3} then \boxed{4}", "4", True, False),
    # a comma list: ours compare it in order (a tuple); math-verify as an unordered set
    (r"\boxed{3, 2}", "2,3", False, True),
    # a percentage: ours drop the % sign (MATH writes 50\% for 50); math-verify also reads 50% as 0.5
    (r"\boxed{0.5}", r"50\%", False, True),
    # ours refuse exponents of more than one digit before sympy (a cost bound); math-verify evaluates them
    (r"\boxed{2^{10}}", "1024", False, True),
    # a set membership "x \in ...": math-verify keeps the set, ours compare the whole text
    (r"\boxed{x \in [1,3)}", "[1,3)", False, True),
    # a truncated, unclosed box: ours find no answer; math-verify reads what follows
    (r"\boxed{\frac{1}{2}", "1/2", False, True),
    # scientific notation: ours read 1e3 as 1000; math-verify as 1*e*3 (Euler's number)
    (r"\boxed{1e3}", "1000", True, False),
]

@pytest.fixture(scope="module")
def mv() -> Any:
    return pytest.importorskip("math_verify")


def _mv_verdict(mv: Any, reply: str, gold: str) -> bool:
    """math-verify as its README shows: gold parsed from LaTeX in a math environment, then verify."""
    from tinkex_cookbook.train.rl.eval_graders import gold_latex

    return bool(mv.verify(mv.parse(gold_latex(gold)), mv.parse(reply)))


@pytest.mark.parametrize(("reply", "gold", "verdict"), SHARED_SAMPLE)
def test_boxed_graders_agree_with_math_verify(mv: Any, reply: str, gold: str, verdict: bool) -> None:
    assert _mv_verdict(mv, reply, gold) is verdict
    assert get_grader("boxed_sympy").grade(reply, gold) is verdict
    symbolic = (reply, gold, verdict) in SYMBOLIC
    assert get_grader("boxed").grade(reply, gold) is (verdict and not symbolic)
    assert get_grader("math_verify").grade(reply, gold) is verdict


@pytest.mark.parametrize(("reply", "gold", "ours", "theirs"), DOCUMENTED_DIFFERENCES)
def test_documented_differences_from_math_verify(mv: Any, reply: str, gold: str, ours: bool, theirs: bool) -> None:
    assert get_grader("boxed").grade(reply, gold) is ours
    assert get_grader("boxed_sympy").grade(reply, gold) is ours
    assert _mv_verdict(mv, reply, gold) is theirs
    assert get_grader("math_verify").grade(reply, gold) is theirs


def test_math_verify_grader(mv: Any) -> None:
    grader = get_grader("math_verify")
    assert isinstance(grader, Grader) and grader.name == "math_verify"
    assert grader.grade(r"We get $x = \frac{1}{2}$, so \boxed{0.5}", r"\frac12")
    assert grader.grade(r"\boxed{\frac{1}{2}}", r"$\frac{1}{2}$")  # a gold already in $...$ is kept
    assert not grader.grade(r"\boxed{3}", "4")
    assert grader.check_format(r"\boxed{3}") and not grader.check_format("no math at all")
    assert not grader.grade("", "4") and not grader.grade(r"\boxed{4}", "")


def test_math_verify_grades_off_the_main_thread(mv: Any) -> None:
    """math-verify's timeouts use signal.alarm, which raises in other threads: the grader turns them off there."""
    results: list[object] = []

    def grade() -> None:
        grader = get_grader("math_verify")
        results.extend([grader.grade(r"\boxed{\frac{2}{4}}", "0.5"), grader.grade(r"\boxed{3}", "4"),
                        grader.check_format(r"\boxed{3}")])

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=60)
    assert results == [True, False, True]


@given(st.text(max_size=80), st.text(max_size=20))
@settings(max_examples=40, deadline=None)
def test_math_verify_never_raises(reply: str, gold: str) -> None:
    pytest.importorskip("math_verify")
    grader = get_grader("math_verify")
    assert isinstance(grader.grade(reply, gold), bool) and isinstance(grader.check_format(reply), bool)
