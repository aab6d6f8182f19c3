"""Math verifier: extract a final answer from a completion and judge it equivalent to the reference.

Equivalence goes through `math-verify` (so "0.5" == "1/2" == "\\frac{1}{2}" and "1,000" == "1000"),
with an exact rational fallback for plain numbers; strings are never compared as strings here.
No `sympify`/`parse_expr` is run on model text (both `eval` it); math-verify's own expression path
only admits digits and operators.
"""
from __future__ import annotations

import re
import threading
from fractions import Fraction

from math_verify import parse, verify

from olmo3_core.chat import THINK_END, THINK_START

MAX_ANSWER_CHARS = 512  # a longer "answer" is not one, and could make sympy work for minutes
MATH_VERIFY_TIMEOUT_S = 5

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
NUMBER_RE = re.compile(rf"(?<![\w.])[-−]?(?:{_NUM})(?:\s*/\s*(?:{_NUM}))?")
_HASHES_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE)
_DOLLARS_RE = re.compile(r"\$+([^$]+)\$+")
_FRAC_RE = re.compile(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}")


def strip_reasoning(text: str) -> str:
    """The part of a completion to judge: after `</think>` when present; nothing when a `<think>`
    was opened but never closed (the model ran out of tokens before answering)."""
    if THINK_END in text:
        return text.rsplit(THINK_END, 1)[1]
    return "" if THINK_START in text else text


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), nested braces included."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:].split("{", 1)
    if len(rest) < 2:
        return None
    depth, out = 1, []
    for ch in rest[1]:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return "".join(out).strip()
        out.append(ch)
    return None


def _clean_number(text: str) -> str:
    return text.replace(",", "").replace("−", "-").replace(" ", "")


def _first_number(text: str) -> str | None:
    match = NUMBER_RE.search(text)
    return _clean_number(match.group()) if match else None


def _answer_from_phrase(rest: str) -> str | None:
    """The answer in the text after "The answer is" / "####": $math$, then LaTeX, then a number."""
    dollars = _DOLLARS_RE.search(rest)
    if dollars:
        return dollars.group(1).strip()
    if "\\" in rest:
        return re.split(r"\.(?:\s|$)", rest, maxsplit=1)[0].strip()
    return _first_number(rest) or (rest.strip().rstrip(".").strip() or None)


def extract_answer(text: str) -> str | None:
    """The final answer of a completion, in order: last \\boxed{}, GSM8K `#### N`, "The answer is
    N", else the last number. Numbers come back without thousands separators. None if absent."""
    if not isinstance(text, str):
        return None
    text = strip_reasoning(text)
    boxed = _last_boxed(text)
    if boxed:
        return _clean_number(boxed) if NUMBER_RE.fullmatch(boxed) else boxed
    for pattern in (_HASHES_RE, _ANSWER_IS_RE):
        matches = pattern.findall(text)
        if matches:
            return _answer_from_phrase(matches[-1])
    numbers = NUMBER_RE.findall(text)
    return _clean_number(numbers[-1]) if numbers else None


def _gold(ground_truth) -> str:
    """The reference answer as a string; a full GSM8K solution or a boxed answer is reduced first."""
    if isinstance(ground_truth, (int, float, Fraction)) and not isinstance(ground_truth, bool):
        return str(ground_truth)
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise ValueError(f"math ground truth must be a non-empty string or number, got {ground_truth!r}")
    text = ground_truth.strip()
    if "####" in text or "\\boxed" in text:
        return extract_answer(text) or text
    return _clean_number(text) if NUMBER_RE.fullmatch(text) else text


def _as_fraction(answer: str) -> Fraction | None:
    text = _FRAC_RE.sub(r"(\1)/(\2)", answer.strip().strip("$"))
    text = _clean_number(text).replace("(", "").replace(")", "")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def _timeouts() -> tuple[int | None, int | None]:
    """math-verify times out with SIGALRM, which only the main thread may use; elsewhere (Prefect
    and TRL worker threads) rely on MAX_ANSWER_CHARS to bound the work."""
    on_main = threading.current_thread() is threading.main_thread()
    return (MATH_VERIFY_TIMEOUT_S, MATH_VERIFY_TIMEOUT_S) if on_main else (None, None)


def _latex(answer: str) -> str:
    return f"${answer}$" if "\\" in answer else answer


def equivalent(gold: str, answer: str) -> bool:
    """Mathematical equivalence of two answer strings."""
    parse_timeout, verify_timeout = _timeouts()
    try:
        if verify(parse(_latex(gold), parsing_timeout=parse_timeout),
                  parse(_latex(answer), parsing_timeout=parse_timeout), timeout_seconds=verify_timeout):
            return True
    except Exception:  # math-verify/sympy failures on odd input: the rational check below still judges
        pass
    a, b = _as_fraction(gold), _as_fraction(answer)
    return a is not None and a == b


def verify_math(completion: str, ground_truth) -> float:
    """1.0 if the completion's final answer equals `ground_truth` mathematically, else 0.0.
    Malformed completions score 0.0; a malformed ground truth raises ValueError (a data bug)."""
    gold = _gold(ground_truth)
    answer = extract_answer(completion)
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return 0.0
    return 1.0 if equivalent(gold, answer) else 0.0
