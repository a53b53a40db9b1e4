"""Graders for public evaluation sets: multiple-choice letters, IFEval instructions, math-verify.

Registered in ``GRADERS`` by ``graders.py`` (this module imports nothing from it)::

    choice        the answer letter of a multiple-choice reply ("B", "(B)", "The answer is B.",
                  "Answer: b) ...", "**C**"), compared with a reference letter
    ifeval        IFEval's instruction checks; the reference is JSON
                  {"instruction_id_list": [...], "kwargs": [{...}, ...]}, every instruction must hold
    math_verify   Hugging Face's math-verify package (the ``math`` extra): parse and verify

All three follow the ``Grader`` protocol: they never raise on any string.

``ifeval`` checks instructions as Google's IFEval reference code does (``instructions.py`` of
``google-research/instruction_following_eval``), strict variant, for the ids in
``IFEVAL_INSTRUCTIONS`` (every id of the reference registry but ``language:response_language``,
which needs ``langdetect``). Differences, each because the reference needs a package or data the
cookbook does not ship:

- ``length_constraints:number_sentences`` counts sentences with a regex splitter (a sentence ends
  at ``.``, ``!`` or ``?`` followed by space; common abbreviations and initials do not end one)
  instead of nltk's punkt model; the counts agree on plain prose and can differ on unusual text.
- ``change_case:english_capital`` and ``change_case:english_lowercase`` check the case only; the
  reference also asks ``langdetect`` that the reply is English.
- ``change_case:capital_word_frequency`` counts words as runs of word characters joined by ``-``,
  ``'`` or ``.`` (``U.S.``, ``DON'T``) instead of nltk's ``word_tokenize``, which splits ``DON'T``
  into two tokens.
- Keywords, forbidden words, section splitters and postscript markers are matched literally; the
  reference puts them into regular expressions unescaped (the same for the words in IFEval's data).
- An unknown instruction id, or missing or invalid arguments (the reference draws random ones),
  make that instruction fail and ``check_format(reply, answer)`` false.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tinkex_cookbook.errors import ConfigError

__all__ = [
    "IFEVAL_INSTRUCTIONS",
    "MATH_INSTALL_HINT",
    "ChoiceAnswer",
    "IfEvalAnswer",
    "MathVerifyAnswer",
    "extract_choice",
    "ifeval_results",
    "parse_ifeval_reference",
]

# ======================================================================
# Multiple choice
# ======================================================================

CHOICE_LETTERS = "ABCDEFGHIJ"
"""Letters a choice may have: four for MMLU, up to ten (MMLU-Pro)."""

# "answer is", "Answer:", "the correct option would be", "choice -", then the letter token
_ANCHORED = re.compile(
    r"\b(?:answer|option|choice)s?\b[ \t]*(?:(?:is|would\s+be|should\s+be|must\s+be|will\s+be)\b)?"
    r"[ \t]*[:=\-]?[ \t]*(?P<open>[(\[*{\"“]*)[ \t]*(?P<letter>[A-Za-z])(?![\w'])[ \t]*(?P<close>[)\]*}\"”]*)",
    re.IGNORECASE,
)
_AFTER_WORD = re.compile(r"[ \t]+([a-z]+)")
# "A" and "I" are English words: "The answer is A good ..." is not a choice; "A because ..." is
_CONNECTORS = frozenset({"because", "since", "as", "which", "is", "was", "and", "or", "so", "for"})
_END_OF_LINE = re.compile(r"[ \t]*[.!]?[ \t]*(?:\n|$)")
_BOXED_OR_BOLD = re.compile(
    r"\\boxed\{\s*(?:\\text\{\s*)?\(?(?P<boxed>[A-Za-z])\)?\s*\}?\s*\}"
    r"|\*\*\s*\(?(?P<bold>[A-Za-z])\s*\)?[.):]?\s*\*\*"
    r"|\*\*\s*\(?(?P<lead>[A-Z])[.)][ \t][^*\n]*\*\*"
)
_ONLY_LETTER = re.compile(r"\s*[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?\s*")
_LEADING = re.compile(r"\s*(?:\((?P<paren>[A-Za-z])\)|(?P<close>[A-Za-z])\)|(?P<dot>[A-Z])[.:])(?=\s|$)")
_PARENTHESIZED = re.compile(r"\(([A-Z])\)")


def extract_choice(text: str, letters: str = CHOICE_LETTERS) -> str | None:
    """The choice letter (upper case) a reply gives, or ``None``.

    Tried in order, each only with letters in ``letters``:

    1. the last letter after "answer", "option" or "choice" (optionally "is", "would be", ":",
       "-"; the letter may be wrapped in ``()``, ``[]`` or ``**``): "The answer is B.",
       "Answer: b) Paris", "the correct option is **C**". A lower-case letter counts only when
       wrapped, followed by a dot ("answer: a. Paris") or alone at the end of its line, and "A" or "I" followed by a lower-case word only
       when that word is a connector ("A because ..."), so "The answer is a bit ..." and
       "Answer: I think ..." give nothing here;
    2. the last ``\\boxed{C}`` or bold ``**C**`` / ``**(C)**`` / ``**C. Paris**``;
    3. a reply that is only a letter: "B", "(b)", "C.";
    4. a reply that starts with "(B) ...", "B) ..." or "B. ..." / "B: ...";
    5. a single distinct "(B)" anywhere in the reply.

    "A good question ..." gives ``None``: a capital that starts a sentence is not a choice.
    """
    if not isinstance(text, str) or not text:
        return None
    allowed = letters.upper()
    found: str | None = None
    for match in _ANCHORED.finditer(text):
        letter = match.group("letter")
        if letter.upper() in allowed and _anchored_ok(text, match):
            found = letter.upper()
    if found is not None:
        return found
    for match in _BOXED_OR_BOLD.finditer(text):
        letter = match.group("boxed") or match.group("bold") or match.group("lead")
        if letter and letter.upper() in allowed:
            found = letter.upper()
    if found is not None:
        return found
    only = _ONLY_LETTER.fullmatch(text)
    if only is not None and only.group(1).upper() in allowed:
        return only.group(1).upper()
    leading = _LEADING.match(text)
    if leading is not None:
        letter = leading.group("paren") or leading.group("close") or leading.group("dot")
        if letter.upper() in allowed:
            return letter.upper()
    wrapped = {letter for letter in _PARENTHESIZED.findall(text) if letter in allowed}
    return wrapped.pop() if len(wrapped) == 1 else None


def _anchored_ok(text: str, match: re.Match[str]) -> bool:
    letter = match.group("letter")
    wrapped = bool(match.group("open") or match.group("close"))
    if letter.islower():
        dotted = text.startswith(".", match.end("letter"))
        return wrapped or dotted or _END_OF_LINE.match(text, match.end()) is not None
    if letter in "AI" and not wrapped:
        word = _AFTER_WORD.match(text, match.end("letter"))
        return word is None or word.group(1) in _CONNECTORS
    return True


@dataclass(frozen=True)
class ChoiceAnswer:
    """The reply's choice letter (:func:`extract_choice`) equals the reference letter (any case;
    a reference written as "(B)" or "B. Paris" counts as B)."""

    letters: str = CHOICE_LETTERS
    name: str = "choice"

    def check_format(self, response: str) -> bool:
        return extract_choice(response, self.letters) is not None

    def grade(self, response: str, answer: str) -> bool:
        given = extract_choice(response, self.letters)
        return given is not None and given == extract_choice(answer, self.letters)


# ======================================================================
# IFEval
# ======================================================================

Check = Callable[[str, Mapping[str, Any]], bool]
RELATIONS = ("less than", "at least")


def _integer(value: object, what: str) -> int:
    """An int, or a float with no fraction (JSON written by some tools turns 5 into 5.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    return value


def _compare(count: int, threshold: object, relation: object) -> bool:
    limit = _integer(threshold, "the threshold")
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, not {relation!r}")
    return count < limit if relation == "less than" else count >= limit


def _text(kwargs: Mapping[str, Any], key: str) -> str:
    value = kwargs[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string")
    return value.strip()


def _words(kwargs: Mapping[str, Any], key: str) -> list[str]:
    value = kwargs[key]
    if not isinstance(value, list) or not value or not all(isinstance(w, str) and w for w in value):
        raise ValueError(f"{key} must be a non-empty list of strings")
    return value


def _count(kwargs: Mapping[str, Any], key: str) -> int:
    return _integer(kwargs[key], key)


_ABBREVIATIONS = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Inc|Ltd|Co|vs|etc|e\.g|i\.e|Ph\.D)|(?<![\w.])[A-Za-z])\.$", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*\s+")


def count_sentences(text: str) -> int:
    """Sentences in ``text``: pieces ending at ``.``/``!``/``?`` (and closing quotes) before space,
    not after an abbreviation or an initial."""
    count, start = 0, 0
    text = text.strip()
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.end()].rstrip()
        if _ABBREVIATIONS.search(piece.rstrip("\"'”’)]")):
            continue
        if piece.strip():
            count += 1
        start = match.end()
    return count + (1 if text[start:].strip() else 0)


def count_words(text: str) -> int:
    """Runs of word characters, as IFEval's ``RegexpTokenizer(r"\\w+")``."""
    return len(re.findall(r"\w+", text))


def _number_words(value: str, kwargs: Mapping[str, Any]) -> bool:
    return _compare(count_words(value), kwargs["num_words"], kwargs["relation"])


def _number_sentences(value: str, kwargs: Mapping[str, Any]) -> bool:
    return _compare(count_sentences(value), kwargs["num_sentences"], kwargs["relation"])


def _number_paragraphs(value: str, kwargs: Mapping[str, Any]) -> bool:
    paragraphs = re.split(r"\s?\*\*\*\s?", value)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index not in (0, len(paragraphs) - 1):
                return False  # an empty paragraph between two dividers
            count -= 1
    return count == _count(kwargs, "num_paragraphs")


def _nth_paragraph_first_word(value: str, kwargs: Mapping[str, Any]) -> bool:
    expected, nth = _count(kwargs, "num_paragraphs"), _count(kwargs, "nth_paragraph")
    first_word = _text(kwargs, "first_word").lower()
    paragraphs = value.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    if not 1 <= nth <= count:
        return False
    paragraph = paragraphs[nth - 1].strip()  # indexed among all pieces, empty ones too, as the reference
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    head = re.match(r"[^.,?!'\"]*", word)
    return count == expected and (head.group(0) if head else "").lower() == first_word


def _number_placeholders(value: str, kwargs: Mapping[str, Any]) -> bool:
    return len(re.findall(r"\[.*?\]", value)) >= _count(kwargs, "num_placeholders")


def _postscript(value: str, kwargs: Mapping[str, Any]) -> bool:
    marker = _text(kwargs, "postscript_marker")
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return re.search(pattern, value.lower(), flags=re.MULTILINE) is not None


def _number_bullet_lists(value: str, kwargs: Mapping[str, Any]) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", value, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", value, flags=re.MULTILINE)
    return len(stars) + len(dashes) == _count(kwargs, "num_bullets")


CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _constrained_response(value: str, kwargs: Mapping[str, Any]) -> bool:
    return any(option in value.strip() for option in CONSTRAINED_RESPONSES)


def _number_highlighted_sections(value: str, kwargs: Mapping[str, Any]) -> bool:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", value) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", value) if h[2:-2].strip()]
    return len(single) + len(double) >= _count(kwargs, "num_highlights")


def _multiple_sections(value: str, kwargs: Mapping[str, Any]) -> bool:
    splitter = _text(kwargs, "section_spliter")  # sic: IFEval's key
    sections = re.split(r"\s?" + re.escape(splitter) + r"\s?\d+\s?", value)
    return len(sections) - 1 >= _count(kwargs, "num_sections")


def _json_format(value: str, kwargs: Mapping[str, Any]) -> bool:
    value = value.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    value = value.removesuffix("```").strip()
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _title(value: str, kwargs: Mapping[str, Any]) -> bool:
    return any(title.lstrip("<").rstrip(">").strip() for title in re.findall(r"<<[^\n]+>>", value))


def _two_responses(value: str, kwargs: Mapping[str, Any]) -> bool:
    parts = value.split("******")
    responses = []
    for index, part in enumerate(parts):
        if part.strip():
            responses.append(part.strip())
        elif index not in (0, len(parts) - 1):
            return False
    return len(responses) == 2 and responses[0] != responses[1]


def _repeat_prompt(value: str, kwargs: Mapping[str, Any]) -> bool:
    return value.strip().lower().startswith(_text(kwargs, "prompt_to_repeat").lower())


def _end_checker(value: str, kwargs: Mapping[str, Any]) -> bool:
    return value.strip().strip('"').lower().endswith(_text(kwargs, "end_phrase").lower())


def _quotation(value: str, kwargs: Mapping[str, Any]) -> bool:
    value = value.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


def _keyword_existence(value: str, kwargs: Mapping[str, Any]) -> bool:
    return all(re.search(re.escape(k), value, flags=re.IGNORECASE) for k in _words(kwargs, "keywords"))


def _keyword_frequency(value: str, kwargs: Mapping[str, Any]) -> bool:
    found = len(re.findall(re.escape(_text(kwargs, "keyword")), value, flags=re.IGNORECASE))
    return _compare(found, kwargs["frequency"], kwargs["relation"])


def _forbidden_words(value: str, kwargs: Mapping[str, Any]) -> bool:
    return not any(re.search(r"\b" + re.escape(w) + r"\b", value, flags=re.IGNORECASE)
                   for w in _words(kwargs, "forbidden_words"))


def _letter_frequency(value: str, kwargs: Mapping[str, Any]) -> bool:
    letter = _text(kwargs, "letter").lower()
    if len(letter) != 1:
        raise ValueError("letter must be one character")
    return _compare(Counter(value.lower())[letter], kwargs["let_frequency"], kwargs["let_relation"])


def _english_capital(value: str, kwargs: Mapping[str, Any]) -> bool:
    return value.isupper()


def _english_lowercase(value: str, kwargs: Mapping[str, Any]) -> bool:
    return value.islower()


def _capital_word_frequency(value: str, kwargs: Mapping[str, Any]) -> bool:
    words = re.findall(r"\w+(?:[-'.]\w+)*\.?", value)
    capitals = sum(1 for word in words if word.isupper())
    return _compare(capitals, kwargs["capital_frequency"], kwargs["capital_relation"])


def _no_comma(value: str, kwargs: Mapping[str, Any]) -> bool:
    return "," not in value


IFEVAL_INSTRUCTIONS: dict[str, Check] = {
    "change_case:capital_word_frequency": _capital_word_frequency,
    "change_case:english_capital": _english_capital,
    "change_case:english_lowercase": _english_lowercase,
    "combination:repeat_prompt": _repeat_prompt,
    "combination:two_responses": _two_responses,
    "detectable_content:number_placeholders": _number_placeholders,
    "detectable_content:postscript": _postscript,
    "detectable_format:constrained_response": _constrained_response,
    "detectable_format:json_format": _json_format,
    "detectable_format:multiple_sections": _multiple_sections,
    "detectable_format:number_bullet_lists": _number_bullet_lists,
    "detectable_format:number_highlighted_sections": _number_highlighted_sections,
    "detectable_format:title": _title,
    "keywords:existence": _keyword_existence,
    "keywords:forbidden_words": _forbidden_words,
    "keywords:frequency": _keyword_frequency,
    "keywords:letter_frequency": _letter_frequency,
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "length_constraints:number_paragraphs": _number_paragraphs,
    "length_constraints:number_sentences": _number_sentences,
    "length_constraints:number_words": _number_words,
    "punctuation:no_comma": _no_comma,
    "startend:end_checker": _end_checker,
    "startend:quotation": _quotation,
}
"""IFEval instruction id -> check(reply, kwargs); every id of IFEval's registry but
``language:response_language``."""


def parse_ifeval_reference(answer: str) -> list[tuple[str, dict[str, Any]]] | None:
    """``[(instruction id, kwargs), ...]`` from the JSON reference, ``None`` values dropped from
    kwargs (Hugging Face's ``google/IFEval`` fills every row's kwargs with every key); ``None`` when
    the reference is not such JSON or lists no instruction."""
    try:
        data = json.loads(answer)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    ids, kwargs = data.get("instruction_id_list"), data.get("kwargs")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return None
    if kwargs is None:
        kwargs = [{} for _ in ids]
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        return None
    pairs = []
    for instruction, options in zip(ids, kwargs, strict=True):
        if options is None:
            options = {}
        if not isinstance(options, dict):
            return None
        pairs.append((instruction, {k: v for k, v in options.items() if v is not None}))
    return pairs


def ifeval_results(response: str, answer: str) -> list[bool]:
    """Whether ``response`` follows each instruction of the reference, in order (IFEval's
    instruction-level strict results); an unknown id or bad arguments give ``False`` for that
    instruction, a malformed reference gives ``[]``."""
    pairs = parse_ifeval_reference(answer)
    if pairs is None or not isinstance(response, str):
        return []
    results = []
    for instruction, options in pairs:
        check = IFEVAL_INSTRUCTIONS.get(instruction)
        try:
            results.append(check is not None and bool(check(response, options)))
        except (KeyError, TypeError, ValueError, re.error):
            results.append(False)
    return results


def _reference_supported(answer: str) -> bool:
    pairs = parse_ifeval_reference(answer)
    if pairs is None:
        return False
    for instruction, options in pairs:
        check = IFEVAL_INSTRUCTIONS.get(instruction)
        if check is None:
            return False
        try:
            check("", options)
        except (KeyError, TypeError, ValueError, re.error):
            return False
    return True


@dataclass(frozen=True)
class IfEvalAnswer:
    """Every instruction of the reference holds (IFEval's prompt-level strict accuracy)."""

    name: str = "ifeval"

    def check_format(self, response: str, answer: str | None = None) -> bool:
        """A non-empty reply; given the reference too, also that every instruction in it is
        supported with valid arguments (so a ``False`` from ``grade`` means a broken rule)."""
        if not isinstance(response, str) or not response.strip():
            return False
        return answer is None or _reference_supported(answer)

    def grade(self, response: str, answer: str) -> bool:
        results = ifeval_results(response, answer)
        return bool(results) and all(results)


# ======================================================================
# math-verify
# ======================================================================

MATH_INSTALL_HINT = "pip install 'tinkex-cookbook[math]'"
_LATEX_DELIMITERS = ("$", "\\(", "\\[", "\\boxed", "\\begin")


def _math_verify() -> ModuleType:
    try:
        import math_verify
    except ImportError:
        raise ConfigError(f"the math_verify grader needs the math-verify package, which is not installed; "
                          f"run: {MATH_INSTALL_HINT} (or pick the boxed_sympy grader)") from None
    return math_verify


def _timeout(seconds: int | None) -> int | None:
    """math-verify's timeouts are ``signal.alarm``, which only the main thread may set: elsewhere none."""
    return seconds if threading.current_thread() is threading.main_thread() else None


def gold_latex(answer: str) -> str:
    """The reference as math-verify's LaTeX extraction expects it: inside ``$...$`` unless it is
    already in a math environment or boxed."""
    answer = answer.strip()
    return answer if any(d in answer for d in _LATEX_DELIMITERS) else f"${answer}$"


@functools.lru_cache(maxsize=1024)
def _parse_gold(answer: str, timeout: int | None) -> list[Any]:
    return list(_math_verify().parse(gold_latex(answer), parsing_timeout=timeout))


@dataclass(frozen=True)
class MathVerifyAnswer:
    """math-verify's verdict: ``verify(parse(gold), parse(reply))``, the reference wrapped as
    :func:`gold_latex` says. The reply may hold ``\\boxed{}`` (preferred) or plain LaTeX or numbers.

    Needs the ``math`` extra: building the grader without math-verify raises ``ConfigError``
    naming the install command. math-verify bounds each parse and comparison with
    ``timeout_seconds`` through ``signal.alarm``, which works only in the main thread (and replaces
    any alarm already set there); in other threads it runs without a time limit.
    """

    timeout_seconds: int = 5
    name: str = "math_verify"

    def __post_init__(self) -> None:
        _math_verify()

    def check_format(self, response: str) -> bool:
        try:
            timeout = _timeout(self.timeout_seconds)
            return bool(_math_verify().parse(response, parsing_timeout=timeout))
        except Exception:  # noqa: BLE001 -- never raise on a reply
            return False

    def grade(self, response: str, answer: str) -> bool:
        try:
            math_verify = _math_verify()
            timeout = _timeout(self.timeout_seconds)
            gold = _parse_gold(answer, timeout)
            given = math_verify.parse(response, parsing_timeout=timeout)
            return bool(gold and given and math_verify.verify(gold, given, timeout_seconds=timeout))
        except Exception:  # noqa: BLE001 -- math-verify and sympy raise many types: a wrong answer
            return False
