"""Answer graders for RL on math and other verifiable tasks: extract an answer, check it, score it.

Ported from tinker-cookbook's ``tinker_cookbook/recipes/math_rl/math_grading.py`` (itself built on
the Hendrycks MATH ``math_normalize`` and the PRM800K grader) and ``math_env.py`` (GSM8K answer
extraction, the ``\\boxed{}`` format check) and ``rl/problem_env.py`` (the reward formula).
Only the grading logic is ported; the timeout wrapper and the ``pylatexenc`` dependency are not
(LaTeX is turned into plain text by a small converter here). The graders for public evaluation
sets (``choice``, ``ifeval``, ``math_verify``) live in ``eval_graders.py`` and are registered here.

Everything is pure Python; ``sympy`` is optional and imported only when :func:`sympy_equal` runs.

Extraction and normalization::

    extract_boxed("so \\boxed{\\frac{1}{2}}")   -> "\\frac{1}{2}"   (last complete \\boxed{...})
    extract_gsm8k("... #### 1,234")             -> "1234"
    normalize_answer("10\\text{ dollars}")     -> "10";  normalize_answer("x = \\dfrac12") -> "\\frac{1}{2}"
    parse_number("$1,000") -> 1000.0;  parse_number("\\frac{3}{4}") -> 0.75;  parse_number("x") -> None
    numeric_equal("0.50", "1/2") -> True;  sympy_equal("2x+x", "3x") -> True (None without sympy)

Graders (``get_grader(name)``; all share the :class:`Grader` protocol and never raise)::

    exact_match   whole response equals the answer after normalization
    contains      normalized answer occurs in the normalized response
    boxed         last \\boxed{} answer: normalized-string or numeric equality
    boxed_sympy   as ``boxed``, plus symbolic equivalence through sympy
    gsm8k         answer after the last ``####``, compared numerically
    numeric       last number in the response, compared numerically
    exact, sympy  aliases of ``exact_match`` and ``boxed_sympy``
    choice        a multiple-choice letter ("The answer is B.")      (eval_graders.py)
    ifeval        IFEval instruction checks, the reference is JSON   (eval_graders.py)
    math_verify   math-verify's parse and verify (the ``math`` extra) (eval_graders.py)

Differences from the reference, on purpose:

- ``extract_boxed`` returns ``None`` instead of raising; a stray unmatched ``}`` elsewhere in the
  text does not void the answer (the reference raises ``Unmatched }`` for the whole response);
  the brace-less form ``\\boxed 7`` takes the last occurrence, as the braced form does (the
  reference takes the first).
- ``BoxedAnswer`` accepts numerically equal answers (``\\frac{2}{4}`` for ``\\frac{1}{2}``,
  ``5.0`` for ``5``); the reference's ``grade_answer`` refuses unreduced fractions and only
  uses sympy when both sides are non-integers.
- The sympy path refuses ``**`` exponents the same way as ``^`` ones (the reference checks
  only ``^``, so ``9**9**9`` reaches sympy there), ``!``, chained exponents, more than three
  ``^`` and differences whose expansion degree is over 20 (``((x+y)^9)^9`` passes the
  reference's text checks and simplifies for minutes), so a grade cannot hang. The reference
  instead runs sympy under a thread "timeout" that does not stop it: leaving the
  ``ThreadPoolExecutor`` block waits for the thread to finish.
- Thousands commas are stripped in one pass: the reference's loop leaves ``1,000,000,000``
  as ``1000,000000``, so it grades ``1,000,000,000`` wrong against ``1000000000``.
- LaTeX to text keeps precedence and roots: pylatexenc, used by the reference, renders
  ``\\frac{x+1}{x-1}`` as ``x+1/x-1`` and ``\\sqrt[3]{2}`` as ``sqrt(2)``; here they become
  ``(x+1)/(x-1)`` and ``2^(1/3)``, and ``\\infty`` becomes sympy's ``oo``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any, Protocol, runtime_checkable

from tinkex_cookbook.errors import UnknownNameError, choices
from tinkex_cookbook.train.rl.eval_graders import ChoiceAnswer, IfEvalAnswer, MathVerifyAnswer

__all__ = [
    "GRADERS",
    "BoxedAnswer",
    "Contains",
    "ExactMatch",
    "Grader",
    "Gsm8kAnswer",
    "NumericAnswer",
    "extract_boxed",
    "extract_gsm8k",
    "get_grader",
    "grader_names",
    "last_number",
    "normalize_answer",
    "numeric_equal",
    "parse_number",
    "reward",
    "sympy_equal",
]

# ======================================================================
# Extraction
# ======================================================================

_BOXED = "\\boxed"
_BOXED_BARE = re.compile(r"\\boxed\s+([a-zA-Z0-9]+)")


def extract_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` in ``text`` (nested braces balanced).

    "Last" is by closing brace, as in the reference: an unclosed ``\\boxed{`` (a truncated
    response) is skipped, so an earlier complete one is returned. When no braced form exists,
    the last brace-less ``\\boxed 7`` (one alphanumeric token) is used. ``None`` when there is
    neither. ``\\boxed{}`` gives ``""``. ``\\fbox`` is not recognized (nor is it by the reference).
    """
    found: str | None = None
    stack: list[int] = []
    for index, char in enumerate(text):
        if char == "{":
            stack.append(index)
        elif char == "}" and stack:  # a stray "}" closes nothing; the reference raises here
            start = stack.pop()
            if text.endswith(_BOXED, 0, start):
                found = text[start + 1 : index]
    if found is not None:
        return found
    bare = _BOXED_BARE.findall(text)
    return bare[-1] if bare else None


def extract_gsm8k(text: str) -> str | None:
    """The answer after the last ``####`` (rest of that line, stripped, a leading ``:`` and every
    comma removed), as GSM8K solutions end with ``#### 72``; ``None`` when absent or empty."""
    at = text.rfind("####")
    if at < 0:
        return None
    content = text[at + 4 :].split("\n", 1)[0].strip()
    if content.startswith(":"):
        content = content[1:].strip()
    content = content.replace(",", "").strip()
    return content or None


# A number in running text: optional sign (not after a digit, letter or dot, so "5-3" gives 3),
# \frac{a}{b}, 1,234,567 (well-formed thousands groups only), 12, 1.5, .5, and an optional /d.
_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\\[dt]?frac\{\d+\}\{\d+\}"
    r"|(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?"
    r"|\.\d+)"
)


def last_number(text: str) -> str | None:
    """The last number written in ``text`` (see ``_NUMBER``), as written, or ``None``."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


# ======================================================================
# MATH normalization (the reference's normalize_answer / _strip_string)
# ======================================================================


def normalize_answer(text: str) -> str:
    """The Hendrycks MATH normalization the reference compares answers with first.

    Strips whitespace and an enclosing ``\\text{...}``; then drops newlines, ``\\!``, ``\\left``
    and ``\\right``, ``^\\circ``, ``\\$``, ``\\%``, right-hand units (everything from
    ``\\text{ `` on, e.g. ``10\\text{ dollars}`` -> ``10``), a short ``k =`` prefix and all
    spaces; turns ``dfrac``/``tfrac`` into ``frac``, ``\\frac12`` into ``\\frac{1}{2}``,
    ``\\sqrt3`` into ``\\sqrt{3}``, ``.5`` into ``0.5``, ``0.5`` into ``\\frac{1}{2}`` and
    ``a/b`` (integers) into ``\\frac{a}{b}``. Like the reference it does not strip a bare
    ``$`` or a trailing ``.``; the graders add the reference's second, looser normalization
    (which does) on top. If a step cannot apply, the stripped input is returned, as there.
    """
    answer = text.strip()
    match = re.search(r"^\\text\{(?P<text>.+?)\}$", answer)
    if match is not None:
        answer = match.group("text").strip()
    try:
        return _strip_string(answer)
    except (ValueError, IndexError):
        return answer


def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if not substr:
            raise IndexError("\\frac at the end")  # as the reference's substr[0]: skip normalizing
        if substr.startswith("{"):
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b, rest = substr[0], substr[1], substr[2:]
        if b != "{":
            new_str += "{" + a + "}{" + b + "}" + rest
        else:
            new_str += "{" + a + "}" + b + rest
    return new_str


def _fix_a_slash_b(string: str) -> str:
    parts = string.split("/")
    if len(parts) != 2:
        return string
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return string
    if string != f"{a}/{b}":  # the reference raises AssertionError and skips all normalization
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(string: str) -> str:
    # "\text{ " only ever occurs (in the MATH val set) when describing units
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        if len(splits) != 2:
            raise ValueError("more than one unit")  # the reference's assert: normalization is skipped
        return splits[0]
    return string


def _fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if not split or split[0] != "{":
            new_string += "\\sqrt{" + (split[0] if split else "") + "}" + split[1:]
        else:
            new_string += "\\sqrt" + split
    return new_string


def _strip_string(string: str) -> str:
    string = string.replace("\n", "")
    string = string.replace("\\!", "")
    string = string.replace("\\\\", "\\")
    string = string.replace("tfrac", "frac")
    string = string.replace("dfrac", "frac")
    string = string.replace("\\left", "")
    string = string.replace("\\right", "")
    string = string.replace("^{\\circ}", "")
    string = string.replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _remove_right_units(string)
    string = string.replace("\\%", "")
    # " 0." equivalent to " ." and "{0." equivalent to "{."; add "0" if "." starts the string
    string = string.replace(" .", " 0.")
    string = string.replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    # get rid of e.g. "k = " or "q = " at the beginning
    sides = string.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        string = sides[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


# ======================================================================
# The looser PRM800K normalization (the reference's _normalize)
# ======================================================================

_UNITS = (
    "degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week",
    "month", "year", "foot", "feet", "inch", "yard",
)
_UNIT_RES = [re.compile(rf"{unit}(es)?(s)? *(\^[0-9]+)?") for unit in _UNITS]
_THOUSANDS = re.compile(r"(?<=\d),(?=\d\d\d(?:$|\D))")
_MIXED_NUMBER = re.compile("([0-9]) +([0-9])")
_MAX_LATEX = 1000


def _normalize_loose(expr: str) -> str:
    """The reference's second normalizer: units, ``$``/``%``, ``million``, LaTeX to text, lowercase.

    Unit words are removed wherever they occur (``Monday`` -> ``mon``), as in the reference;
    both sides of a comparison go through the same function, so this only ever makes it
    more lenient.
    """
    match = re.search(r"^\\text\{(?P<text>.+?)\}$", expr)
    if match is not None:
        expr = match.group("text")
    expr = expr.replace("\\%", "%").replace("\\$", "$").replace("$", "").replace("%", "")
    expr = expr.replace(" or ", " , ").replace(" and ", " , ")
    expr = expr.replace("million", "*10^6").replace("billion", "*10^9").replace("trillion", "*10^12")
    for unit_re in _UNIT_RES:
        expr = unit_re.sub("", expr)
    expr = re.sub(r"\^ *\\circ", "", expr)
    if len(expr) > 0 and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]
    expr = re.sub(r",\\! *", "", expr)
    if _is_float(expr) and _is_int(float(expr)):
        expr = str(round(float(expr)))
    if "\\" in expr and len(expr) <= _MAX_LATEX:
        try:
            expr = _latex_to_text(expr)
        except ValueError:
            pass
    expr = re.sub("- *", "-", expr)  # mixed numbers and negative signs
    expr = _MIXED_NUMBER.sub("\\1+\\2", expr)  # 7 3/4 -> 7+3/4
    expr = expr.replace(" ", "")
    expr = expr.replace("{", "").replace("}", "")
    expr = expr.lower()
    if _str_is_int(expr):
        expr = str(int(float(expr.replace(",", ""))))
    return expr


def _is_float(num: str) -> bool:
    try:
        float(num)
        return True
    except (ValueError, OverflowError):
        return False


def _is_int(x: float) -> bool:
    try:
        return abs(x - round(x)) <= 1e-7
    except (ValueError, OverflowError):
        return False


def _str_is_int(x_str: str) -> bool:
    try:
        x = float(_strip_properly_formatted_commas(x_str))
        return abs(x - round(x)) <= 1e-7
    except (ValueError, OverflowError):
        return False


def _strip_properly_formatted_commas(expr: str) -> str:
    """Drop thousands commas (``1,234,567``) but not tuple commas (``1,2``). One linear pass; the
    reference loops a consuming regex, which leaves ``1,000,000,000`` as ``1000,000000``."""
    return _THOUSANDS.sub("", expr)


# --- LaTeX to plain text (stands in for the reference's pylatexenc latex2text) ----------------

_LATEX_SYMBOLS = {
    "pi": "pi", "infty": "oo", "cup": "U", "cdot": "*", "times": "*", "div": "/", "circ": "",
    "le": "<=", "leq": "<=", "ge": ">=", "geq": ">=", "ne": "!=", "neq": "!=", "pm": "+-",
    "left": "", "right": "", "displaystyle": "", "quad": " ", "qquad": " ",
}
_LATEX_TEXT = {"text", "textbf", "textit", "mathrm", "mathbf", "mathit", "mbox", "operatorname"}
_LATEX_SPACES = {",": " ", ";": " ", ":": " ", " ": " ", "!": "", "\\": " "}
_MAX_DEPTH = 50


def _latex_to_text(expr: str) -> str:
    """``\\frac{a}{b}`` -> ``a/b`` (parenthesized when compound), ``\\sqrt{x}`` -> ``sqrt(x)``,
    ``\\sqrt[3]{x}`` -> ``x^(1/3)``, ``\\pi`` -> ``pi``, ``\\cdot``/``\\times`` -> ``*``,
    ``\\infty`` -> ``oo``, ``\\text{..}`` -> its text, groups -> their content, other macros ->
    their name. Raises ``ValueError`` on nesting deeper than 50."""
    expr = expr.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac")
    expr = expr.replace("\\frac", " \\frac")  # "2\\frac12" reads as the mixed number 2 1/2
    text, _ = _latex_run(expr, 0, 0, stop_at_brace=False)
    return text.strip()


def _latex_run(s: str, i: int, depth: int, stop_at_brace: bool) -> tuple[str, int]:
    if depth > _MAX_DEPTH:
        raise ValueError("LaTeX nested too deeply")
    out: list[str] = []
    while i < len(s):
        char = s[i]
        if char == "}" and stop_at_brace:
            return "".join(out), i + 1
        if char == "{":
            inner, i = _latex_run(s, i + 1, depth + 1, stop_at_brace=True)
            out.append(inner)
        elif char == "\\":
            piece, i = _latex_macro(s, i + 1, depth)
            out.append(piece)
        else:
            out.append(char)
            i += 1
    return "".join(out), i


def _latex_arg(s: str, i: int, depth: int) -> tuple[str, int]:
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        return _latex_run(s, i + 1, depth + 1, stop_at_brace=True)
    if s[i] == "\\":
        return _latex_macro(s, i + 1, depth + 1)
    return s[i], i + 1


def _paren(text: str) -> str:
    text = text.strip()
    return text if re.fullmatch(r"[0-9a-zA-Z.]*", text) else f"({text})"


def _latex_macro(s: str, i: int, depth: int) -> tuple[str, int]:
    name = re.match(r"[a-zA-Z]+", s[i:])
    if name is None:  # \, \; \! \\ \{ \% ...
        symbol = s[i : i + 1]
        return _LATEX_SPACES.get(symbol, symbol), i + 1
    word, i = name.group(0), i + len(name.group(0))
    if word == "frac":
        num, i = _latex_arg(s, i, depth)
        den, i = _latex_arg(s, i, depth)
        return f"{_paren(num)}/{_paren(den)}", i
    if word == "sqrt":
        if s.startswith("[", i) and "]" in s[i:]:
            close = s.index("]", i)
            index = s[i + 1 : close]
            arg, i = _latex_arg(s, close + 1, depth)
            return f"{_paren(arg)}^(1/{_paren(index)})", i
        arg, i = _latex_arg(s, i, depth)
        return f"sqrt({arg})", i
    if word in _LATEX_TEXT:
        return _latex_arg(s, i, depth)
    return _LATEX_SYMBOLS.get(word, word), i


# ======================================================================
# Numbers
# ======================================================================

_MAX_NUMBER_CHARS = 200
_DECIMAL = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+"
_PLAIN = re.compile(rf"({_DECIMAL})")
_SLASH = re.compile(rf"({_DECIMAL})\s*/\s*({_DECIMAL})")
_LATEX_FRAC = re.compile(
    rf"\\[dt]?frac(?:\{{\s*([+-]?)\s*({_DECIMAL})\s*\}}\{{\s*({_DECIMAL})\s*\}}|(\d)(\d))"
)
_WRAPPERS = ("\\text{", "\\textbf{", "\\mathrm{", "\\mbox{", "{")
_UNIT_SUFFIXES = ("^{\\circ}", "^\\circ", "\\%", "%", "°")


def _parse_fraction(text: str) -> Fraction | None:
    """``text`` as an exact number, or ``None``; see :func:`parse_number` for the forms."""
    if not isinstance(text, str) or len(text) > _MAX_NUMBER_CHARS:
        return None
    s = text.strip().replace("\\$", "").replace("$", "").replace("\\!", "").replace("\\left", "")
    s = s.replace("\\right", "").replace("−", "-").strip()
    for wrapper in _WRAPPERS:
        if s.startswith(wrapper) and s.endswith("}"):
            s = s[len(wrapper) : -1].strip()
    for suffix in _UNIT_SUFFIXES:
        if s.endswith(suffix):
            s = s[: -len(suffix)].rstrip()
            break
    sign = 1
    if s and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:].lstrip()
    try:
        if match := _PLAIN.fullmatch(s):
            value = _decimal(match.group(1))
        elif match := _SLASH.fullmatch(s):
            value = _decimal(match.group(1)) / _decimal(match.group(2))
        elif match := _LATEX_FRAC.fullmatch(s):
            inner_sign, num, den, digit_num, digit_den = match.groups()
            if num is not None:
                value = _decimal(num) / _decimal(den) * (-1 if inner_sign == "-" else 1)
            else:
                value = Fraction(int(digit_num), int(digit_den))
        else:
            return None
    except (ZeroDivisionError, ValueError):
        return None
    return sign * value


def _decimal(digits: str) -> Fraction:
    digits = digits.replace(",", "")
    return Fraction(digits + "0" if digits.endswith(".") else digits)


def parse_number(text: str) -> float | None:
    """The number ``text`` writes, or ``None`` when it is not (only) a number.

    Accepted, with an optional leading ``-``/``+``/``−`` (also before ``\\frac``): integers,
    decimals (``0.50``, ``.5``, ``42.``), thousands separators when well formed (``1,234,567``;
    ``1,23`` is not a number), fractions ``3/4`` and ``\\frac{3}{4}`` (also ``\\dfrac``,
    ``\\tfrac``, ``\\frac34``). Ignored: surrounding whitespace, ``$`` and ``\\$`` anywhere, an
    enclosing ``\\text{}``/``\\mathrm{}``/``{}``, and one trailing ``%``, ``\\%`` or degree sign
    — a percentage keeps its written value (``50%`` -> 50.0, not 0.5), since the reference
    drops ``%`` too and MATH answers write ``50\\%`` for a ground truth of ``50``. Not accepted:
    scientific notation, mixed numbers (``1 3/4``), words, ``inf``/``nan``, a zero
    denominator, text over 200 characters, values beyond the float range.
    """
    value = _parse_fraction(text)
    if value is None:
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def numeric_equal(a: str, b: str, rel_tol: float = 1e-6) -> bool:
    """Whether ``a`` and ``b`` both parse (:func:`parse_number`) to the same number: exactly, or
    within ``rel_tol`` relative tolerance (no absolute tolerance, so ``0`` equals only ``0``).
    Symmetric, and reflexive on every string that parses."""
    fa, fb = _parse_fraction(a), _parse_fraction(b)
    if fa is None or fb is None:
        return False
    if fa == fb:
        return True
    try:
        return math.isclose(float(fa), float(fb), rel_tol=rel_tol, abs_tol=0.0)
    except OverflowError:
        return False


# ======================================================================
# Symbolic equivalence
# ======================================================================

_MAX_SYMPY_CHARS = 200
_MAX_CARETS = 3
_MAX_SYMPY_NODES = 400
_MAX_SYMPY_DEGREE = 20
_SYMPY_CHARS = re.compile(r"[0-9a-z+\-*/^().]+")
# A "^" must be followed by one digit or one letter (optionally negative), and
# that exponent must not itself be raised: the reference refuses ^{, ^(, ^12 and ^2^ the same way.
_BAD_EXPONENT = re.compile(r"\^(?!-?(?:[0-9](?![0-9.^])|[a-z](?![a-z0-9.^])))")
_TUPLE_CHARS = "()[]"


def _sympy_ready(expr: str) -> str | None:
    """``expr`` (already loosely normalized) when it is safe and cheap to hand to sympy."""
    expr = expr.replace("**", "^")
    if not expr or len(expr) > _MAX_SYMPY_CHARS or not _SYMPY_CHARS.fullmatch(expr):
        return None
    if expr.count("^") > _MAX_CARETS or _BAD_EXPONENT.search(expr):
        return None
    letters = {c for c in expr.replace("sqrt", "").replace("frac", "") if c.isalpha()}
    if len(letters) > 2:  # unknown text, or functions of more than two variables
        return None
    return expr


def _split_tuple(expr: str) -> list[str]:
    """Elements of a tuple or interval ``(a,b]``; well-formed thousands commas are not splits."""
    expr = _strip_properly_formatted_commas(expr)
    if not expr:
        return []
    if (
        len(expr) > 2
        and expr[0] in _TUPLE_CHARS
        and expr[-1] in _TUPLE_CHARS
        and all(ch not in expr[1:-1] for ch in _TUPLE_CHARS)
    ):
        return [elem.strip() for elem in expr[1:-1].split(",")]
    return [expr]


def sympy_equal(a: str, b: str) -> bool | None:
    """Whether sympy simplifies ``a - b`` to 0; element-wise for tuples and intervals.

    Both sides first go through the reference's loose normalization (LaTeX to text, units,
    ``$``, lowercase). ``None`` when sympy is not installed or either side is not something
    sympy should see: over 200 characters, characters other than digits, lowercase letters and
    ``+-*/^().``, more than two distinct letters (``sqrt`` aside), a ``^``/``**`` exponent that
    is not a single digit or letter, a raised exponent, or more than three exponents; or when
    the difference is too costly to simplify (see ``_too_costly``). Sides (or tuple elements) that
    normalize to the same string are equal without asking sympy. These bounds keep one call
    under about two seconds. ``False`` for tuples of different shapes. Warnings raised while
    parsing are suppressed (``warnings.catch_warnings``, which is process-wide before 3.14).
    """
    if len(a) > _MAX_SYMPY_CHARS or len(b) > _MAX_SYMPY_CHARS:
        return None
    try:
        from sympy import simplify
        from sympy.parsing import sympy_parser
    except ImportError:
        return None
    na, nb = _normalize_loose(a), _normalize_loose(b)
    elems_a, elems_b = _split_tuple(na), _split_tuple(nb)
    if not elems_a or not elems_b:
        return None
    if len(elems_a) != len(elems_b) or (len(elems_a) > 1 and (na[0] != nb[0] or na[-1] != nb[-1])):
        return False
    transformations = sympy_parser.standard_transformations + (
        sympy_parser.implicit_multiplication_application,
    )
    for elem_a, elem_b in zip(elems_a, elems_b, strict=True):
        if elem_a == elem_b:  # also covers oo, where oo - oo is nan
            continue
        ready_a, ready_b = _sympy_ready(elem_a), _sympy_ready(elem_b)
        if ready_a is None or ready_b is None:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "2(3)" while parsing
                left = sympy_parser.parse_expr(ready_a.replace("^", "**"), transformations=transformations)
                right = sympy_parser.parse_expr(ready_b.replace("^", "**"), transformations=transformations)
                difference = left - right
                if _too_costly(difference):
                    return None
                if simplify(difference) != 0:
                    return False
        except Exception:  # noqa: BLE001 -- sympy raises many types on odd input: "no verdict"
            return None
    return True


def _too_costly(expr: Any) -> bool:
    """Whether simplifying ``expr`` (a parsed, unsimplified sympy difference) could take seconds.

    Parsing leaves powers unexpanded, so ``((x+y)^9)^9`` is cheap to parse and costly to simplify;
    the text guards cannot see that. This bounds the tree size and a crude expansion degree:
    symbols and irrational constants count 1, a power multiplies its base's degree, a product
    adds, a sum takes the largest term, or adds the terms when one has a symbolic denominator
    (bringing fractions to a common denominator multiplies them out). Measured on sympy 1.14:
    a polynomial of degree 30 takes 1.5 s to simplify, a sum of three degree-18 fractions 20 s;
    at the bound of 20 the slowest inputs found take under 2 s.
    """
    from sympy import preorder_traversal

    for nodes, _ in enumerate(preorder_traversal(expr), start=1):
        if nodes > _MAX_SYMPY_NODES:
            return True
    return _degree(expr) > _MAX_SYMPY_DEGREE


def _degree(expr: Any) -> float:
    if expr.is_Rational:
        return 0.0
    if expr.is_Atom:
        return 1.0
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent.is_Rational:
            if base.is_Rational:
                return 0.0 if exponent.is_Integer else 1.0
            return _degree(base) * abs(float(exponent))
        return _degree(base) + _degree(exponent) + 1.0
    degrees = [_degree(arg) for arg in expr.args]
    if expr.is_Add:
        return sum(degrees) if any(_has_symbolic_denominator(arg) for arg in expr.args) else max(degrees)
    return sum(degrees)


def _has_symbolic_denominator(expr: Any) -> bool:
    from sympy import Pow, preorder_traversal

    return any(
        isinstance(node, Pow) and node.exp.is_negative and bool(node.base.free_symbols)
        for node in preorder_traversal(expr)
    )


# ======================================================================
# Graders
# ======================================================================


@runtime_checkable
class Grader(Protocol):
    """Checks a model response against a reference answer; never raises on any string."""

    @property
    def name(self) -> str: ...

    def check_format(self, response: str) -> bool:
        """Whether the response has an answer this grader can extract."""
        ...

    def grade(self, response: str, answer: str) -> bool:
        """Whether the extracted answer matches ``answer``."""
        ...


def _same_answer(given: str, answer: str) -> bool:
    """Equal under the MATH normalization or the looser PRM800K one, as the reference checks first."""
    if normalize_answer(given) == normalize_answer(answer):
        return True
    loose = _normalize_loose(given)
    return bool(loose) and loose == _normalize_loose(answer)


@dataclass(frozen=True)
class ExactMatch:
    """The whole response is the answer, after normalization (see :func:`normalize_answer`)."""

    name: str = "exact_match"

    def check_format(self, response: str) -> bool:
        return bool(response.strip())

    def grade(self, response: str, answer: str) -> bool:
        return self.check_format(response) and _same_answer(response, answer)


@dataclass(frozen=True)
class Contains:
    """The normalized (non-empty) answer occurs in the normalized response: ``"5"`` is in ``"15"``."""

    name: str = "contains"

    def check_format(self, response: str) -> bool:
        return bool(response.strip())

    def grade(self, response: str, answer: str) -> bool:
        target = normalize_answer(answer)
        return bool(target) and target in normalize_answer(response)


@dataclass(frozen=True)
class BoxedAnswer:
    """The last ``\\boxed{}`` answer (:func:`extract_boxed`) equals ``answer`` as a normalized
    string, as a number (:func:`numeric_equal`), or, with ``use_sympy``, symbolically
    (:func:`sympy_equal`). The format is right when a ``\\boxed{}`` exists, even an empty one."""

    use_sympy: bool = False
    name: str = "boxed"

    def check_format(self, response: str) -> bool:
        return extract_boxed(response) is not None

    def grade(self, response: str, answer: str) -> bool:
        given = extract_boxed(response)
        if given is None:
            return False
        if _same_answer(given, answer) or numeric_equal(given, answer):
            return True
        return bool(self.use_sympy and sympy_equal(given, answer))


@dataclass(frozen=True)
class Gsm8kAnswer:
    """The answer after the last ``####`` (:func:`extract_gsm8k`) equals ``answer`` as a number;
    when the extracted text is more than a number (``18 dollars``), its first number counts."""

    name: str = "gsm8k"

    def check_format(self, response: str) -> bool:
        return extract_gsm8k(response) is not None

    def grade(self, response: str, answer: str) -> bool:
        given = extract_gsm8k(response)
        if given is None:
            return False
        if numeric_equal(given, answer):
            return True
        first = _NUMBER.search(given)
        return first is not None and numeric_equal(first.group(0), answer)


@dataclass(frozen=True)
class NumericAnswer:
    """The last number in the response (:func:`last_number`) equals ``answer`` as a number, as the
    reference's arithmetic environment grades."""

    name: str = "numeric"

    def check_format(self, response: str) -> bool:
        return last_number(response) is not None

    def grade(self, response: str, answer: str) -> bool:
        given = last_number(response)
        return given is not None and numeric_equal(given, answer)


GRADERS: dict[str, Callable[[], Grader]] = {
    "exact_match": ExactMatch,
    "contains": Contains,
    "boxed": BoxedAnswer,
    "boxed_sympy": partial(BoxedAnswer, use_sympy=True, name="boxed_sympy"),
    "gsm8k": Gsm8kAnswer,
    "numeric": NumericAnswer,
    "exact": ExactMatch,
    "sympy": partial(BoxedAnswer, use_sympy=True, name="boxed_sympy"),
    "choice": ChoiceAnswer,
    "ifeval": IfEvalAnswer,
    "math_verify": MathVerifyAnswer,
}
"""Graders by name; ``exact`` and ``sympy`` are aliases (the grader keeps its own name)."""


def grader_names() -> list[str]:
    return sorted(GRADERS)


def check_grader(name: str) -> str:
    """A config validator's check: ``name`` is a registered grader (a ``ValueError`` listing them, if not)."""
    if name not in GRADERS:
        raise ValueError(f"unknown grader {name!r}; valid: {', '.join(sorted(GRADERS))}")
    return name


def get_grader(name: str) -> Grader:
    """A new grader by registry name; ``UnknownNameError`` lists the valid names. Building one can
    fail (``math_verify`` without the ``math`` extra raises ``ConfigError``); grading never does."""
    factory = GRADERS.get(name) if isinstance(name, str) else None
    if factory is None:
        raise UnknownNameError(f"unknown grader {name!r}; valid graders: {choices(GRADERS)}")
    return factory()


def reward(format_ok: bool, correct: bool, format_coef: float = 0.1) -> float:
    """The reference ``ProblemEnv`` reward: ``format_coef * (format_ok - 1) + correct``.

    A correct answer earns 1, a bad format costs ``format_coef``: with the default 0.1 the four
    outcomes are 1.0 (right, well formed), 0.9 (right, badly formed), 0.0 (wrong, well formed)
    and -0.1 (wrong, badly formed).
    """
    return format_coef * (float(format_ok) - 1.0) + float(correct)
