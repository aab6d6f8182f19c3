"""IFEval-style instruction-following verifier: a registry of constraint checkers.

A constraint is a dict `{"type": name, **kwargs}`; `verify_instruction` scores the fraction a
completion satisfies. An unknown type or bad arguments is a bug in the data, not in the model's
output, so it raises ValueError instead of scoring 0.
"""
from __future__ import annotations

import inspect
import json
import re
from typing import Callable

from olmo3_core.problems.verifiers.math import strip_reasoning

CHECKS: dict[str, Callable[..., bool]] = {}

_WORD_RE = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SENTENCE_END_RE = re.compile(r"[.!?]+(?=\s|$)")
_BULLET_RE = re.compile(r"^\s*[-*+]\s+\S", re.MULTILINE)
_PLACEHOLDER_RE = re.compile(r"\[[^\[\]\n]+\]")
_JSON_FENCE_RE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.DOTALL | re.IGNORECASE)


def constraint(name: str):
    """Register a checker `(text, **kwargs) -> bool` under `name`."""
    def register(fn: Callable[..., bool]) -> Callable[..., bool]:
        CHECKS[name] = fn
        return fn
    return register


def split_words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


def split_sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? followed by whitespace (a trailing fragment counts too)."""
    return [s for s in _SENTENCE_END_RE.split(text) if s.strip()]


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


@constraint("max_words")
def max_words(text: str, n: int) -> bool:
    return len(split_words(text)) <= n


@constraint("min_words")
def min_words(text: str, n: int) -> bool:
    return len(split_words(text)) >= n


@constraint("max_sentences")
def max_sentences(text: str, n: int) -> bool:
    return 0 < len(split_sentences(text)) <= n


@constraint("include_keywords")
def include_keywords(text: str, keywords: list[str]) -> bool:
    """Every keyword appears as a whole word or phrase, in any case."""
    return all(_mentions(text, k) for k in keywords)


@constraint("forbidden_words")
def forbidden_words(text: str, words: list[str]) -> bool:
    """None of the words appears as a whole word, in any case."""
    return not any(_mentions(text, w) for w in words)


@constraint("json_format")
def json_format(text: str) -> bool:
    """The whole response is JSON (a ```json fence around it is allowed)."""
    body = text.strip()
    fenced = _JSON_FENCE_RE.match(body)
    try:
        json.loads(fenced.group(1) if fenced else body)
    except ValueError:
        return False
    return True


@constraint("no_commas")
def no_commas(text: str) -> bool:
    return "," not in text and bool(text.strip())


@constraint("all_lowercase")
def all_lowercase(text: str) -> bool:
    return text == text.lower() and any(c.isalpha() for c in text)


@constraint("all_uppercase")
def all_uppercase(text: str) -> bool:
    return text == text.upper() and any(c.isalpha() for c in text)


@constraint("bullet_count")
def bullet_count(text: str, n: int) -> bool:
    """Exactly n markdown bullet points (lines starting with -, * or +)."""
    return len(_BULLET_RE.findall(text)) == n


@constraint("ends_with")
def ends_with(text: str, phrase: str) -> bool:
    """The response ends with the exact phrase, nothing after it but whitespace."""
    return text.strip().endswith(phrase.strip())


@constraint("starts_with")
def starts_with(text: str, phrase: str) -> bool:
    return text.strip().startswith(phrase.strip())


@constraint("num_paragraphs")
def num_paragraphs(text: str, n: int) -> bool:
    """Exactly n paragraphs, separated by blank lines."""
    return len([p for p in re.split(r"\n\s*\n", text) if p.strip()]) == n


@constraint("placeholder_count")
def placeholder_count(text: str, n: int) -> bool:
    """At least n square-bracket placeholders such as [name] (as IFEval counts them)."""
    return len(_PLACEHOLDER_RE.findall(text)) >= n


def _constraints(ground_truth) -> list[dict]:
    items = ground_truth.get("constraints") if isinstance(ground_truth, dict) else ground_truth
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(c, dict) for c in items):
        raise ValueError(f"ifeval ground truth must be a non-empty list of constraint dicts, got {ground_truth!r}")
    return list(items)


def check_constraint(text: str, spec: dict) -> bool:
    """Whether `text` satisfies one constraint; ValueError if the constraint itself is malformed."""
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    name = spec.get("type")
    if name not in CHECKS:
        raise ValueError(f"unknown ifeval constraint type {name!r}; known: {sorted(CHECKS)}")
    try:
        inspect.signature(CHECKS[name]).bind(text, **kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for ifeval constraint {name!r}: {exc}") from exc
    return CHECKS[name](text, **kwargs)


def verify_instruction(completion: str, ground_truth) -> float:
    """Fraction of the constraints the completion's final text satisfies."""
    specs = _constraints(ground_truth)
    text = strip_reasoning(completion) if isinstance(completion, str) else ""
    return sum(check_constraint(text, spec) for spec in specs) / len(specs)
