"""Taggers and filters: ordered, configurable processors applied per source (a Hydra list).

Each processor takes a Dolma document, may rewrite its text (cleaning, PII masking, C4 line
removal), and returns its attributes (the scores it computed) plus a removal reason or None. The
reasons are `<processor>:<rule>`, so the datasheet can count and explain every removed document.
Thresholds default to the published Gopher / C4 values (as in datatrove and Dolma).
"""
from __future__ import annotations

import ast
import re
import string
import unicodedata
from typing import Any, Callable

import numpy as np

Result = tuple[dict[str, Any], "str | None"]
REGISTRY: dict[str, type["Processor"]] = {}

STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "*", "-", "–", "‣")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’")
C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
PUNCTUATION = string.punctuation + "…“”‘’«»–—"
ALPHA_WORD = re.compile(r"\S*[^\W\d_]\S*")  # a whitespace-delimited word containing a letter
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A sentence ends at . ! or ? (repeated or not), possibly inside closing quotes or brackets: `end.)`,
# `"end."`, `end.”` and `(see above.)` all close a sentence; `3.14` and `e.g.,` do not.
SENTENCE_END = re.compile(r"""[.!?]+["'”’)\]]*(?=\s|$)""")
# A line of program text. Hard-wrapped prose breaks lines after commas and before any word, so only
# signals that survive wrapping count: statements that prose does not start with, compound
# statements closed by a colon, decorators, lines closed by an opening bracket or brace, and
# assignments (a semicolon also ends clauses of legal prose, so it is no signal).
CODE_LINE = re.compile(r"""
    (?:def\s+\w+\s*\( | class\s+\w+\s*[(:] | import\s+\w | from\s+[\w.]+\s+import\b | return\b | raise\b | yield\b
       | (?:if|elif|else|for|while|with|try|except|finally)\b.*:
       | (?:var|let|const)\s+\w+\s*= | function\b.*\( | \#include\b | @\w+
       | .*[{(\[]
       | [\w.\[\]'"]+\s*[-+*/|&]?=\s*[^=\s].*
    )$""", re.VERBOSE)
CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
PII_PATTERNS = {
    "email": (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"), "|||EMAIL_ADDRESS|||"),
    "phone": (re.compile(r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?!\w)"), "|||PHONE_NUMBER|||"),
    "ip": (re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])"), "|||IP_ADDRESS|||"),
}


def register(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


class Processor:
    """Base: keyword parameters from the config override the class defaults of the same name."""

    name = "processor"
    defaults: dict[str, Any] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"processor {self.name!r}: unknown parameters {sorted(unknown)}; known: {sorted(self.defaults)}")
        self.p = {**self.defaults, **params}

    def __call__(self, doc: dict[str, Any]) -> Result:
        raise NotImplementedError

    def first_failure(self, checks: list[tuple[str, bool]]) -> str | None:
        """The reason for the first failed (rule, ok) check, in rule order."""
        return next((f"{self.name}:{rule}" for rule, ok in checks if not ok), None)


def build(specs: list[dict[str, Any]]) -> list[Processor]:
    """`[{name: gopher_quality, min_doc_words: 50}, ...]` -> processor instances, in order."""
    chain = []
    for spec in specs:
        params = dict(spec)
        name = params.pop("name", None)
        if name not in REGISTRY:
            raise ValueError(f"unknown processor {name!r}; known: {sorted(REGISTRY)}")
        chain.append(REGISTRY[name](**params))
    return chain


def apply(chain: list[Processor], doc: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Run the chain until a processor removes the document: (attributes by processor, reason)."""
    attributes: dict[str, Any] = {}
    for proc in chain:
        attrs, reason = proc(doc)
        attributes[proc.name] = attrs
        if reason:
            return attributes, reason
    return attributes, None


@register("clean")
class Clean(Processor):
    """Unicode NFC, no control characters, unix newlines, no trailing spaces, at most one blank line."""

    defaults = {"max_blank_lines": 1}

    def __call__(self, doc):
        before = len(doc["text"])
        text = unicodedata.normalize("NFC", doc["text"].replace("\r\n", "\n").replace("\r", "\n"))
        text = CONTROL.sub("", text)
        text = "\n".join(line.rstrip() for line in text.split("\n"))
        blank = "\n" * (self.p["max_blank_lines"] + 1)
        text = re.sub(r"\n{%d,}" % (self.p["max_blank_lines"] + 2), blank, text).strip("\n")
        doc["text"] = text
        return {"chars_removed": before - len(text)}, None


@register("length")
class Length(Processor):
    defaults = {"min_chars": 1, "max_chars": 10_000_000, "min_words": 0}

    def __call__(self, doc):
        chars, words = len(doc["text"]), len(doc["text"].split())
        return {"chars": chars, "words": words}, self.first_failure([
            ("too_short", chars >= self.p["min_chars"] and words >= self.p["min_words"]),
            ("too_long", chars <= self.p["max_chars"]),
        ])


_LANGID = None


def _langid():
    """py3langid's bundled model with normalized probabilities, loaded once per process."""
    global _LANGID
    if _LANGID is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _LANGID = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _LANGID


@register("langid")
class LangId(Processor):
    defaults = {"languages": ["en"], "min_score": 0.65, "max_chars": 4000}

    def __call__(self, doc):
        lang, score = _langid().classify(doc["text"][: self.p["max_chars"]])
        doc.setdefault("metadata", {})["language"] = lang
        return {"lang": lang, "score": round(float(score), 4)}, self.first_failure([
            ("other_language", lang in self.p["languages"]),
            ("low_score", score >= self.p["min_score"]),
        ])


@register("gopher_quality")
class GopherQuality(Processor):
    """Gopher (Rae et al. 2021) quality rules on whitespace words and lines."""

    defaults = {"min_doc_words": 50, "max_doc_words": 100_000, "min_avg_word_length": 3, "max_avg_word_length": 10,
                "max_symbol_word_ratio": 0.1, "max_bullet_lines_ratio": 0.9, "max_ellipsis_lines_ratio": 0.3,
                "max_non_alpha_words_ratio": 0.8, "min_stop_words": 2}

    def __call__(self, doc):
        text, p = doc["text"], self.p
        words = text.split()
        n = max(len(words), 1)
        wordy = [w for w in words if w.strip(PUNCTUATION)]  # symbol-only tokens are not words
        lines = [line for line in text.split("\n") if line.strip()] or [""]
        a = {
            "words": len(wordy),
            "mean_word_length": sum(map(len, wordy)) / max(len(wordy), 1),
            "symbol_word_ratio": max(text.count("#"), text.count("...") + text.count("…")) / n,
            "bullet_lines_ratio": sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines),
            "ellipsis_lines_ratio": sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines),
            "alpha_words_ratio": len(ALPHA_WORD.findall(text)) / n,
            "stop_words": len(STOP_WORDS.intersection(w.lower() for w in words)),  # distinct, as in the paper
        }
        return a, self.first_failure([
            ("too_few_words", a["words"] >= p["min_doc_words"]),
            ("too_many_words", a["words"] <= p["max_doc_words"]),
            ("mean_word_length", p["min_avg_word_length"] <= a["mean_word_length"] <= p["max_avg_word_length"]),
            ("symbol_ratio", a["symbol_word_ratio"] <= p["max_symbol_word_ratio"]),
            ("bullet_lines", a["bullet_lines_ratio"] <= p["max_bullet_lines_ratio"]),
            ("ellipsis_lines", a["ellipsis_lines_ratio"] <= p["max_ellipsis_lines_ratio"]),
            ("alpha_words", a["alpha_words_ratio"] >= p["max_non_alpha_words_ratio"]),
            ("stop_words", a["stop_words"] >= p["min_stop_words"]),
        ])


def _dup_fraction(units: list[str]) -> tuple[float, float]:
    """(fraction of units that repeat an earlier one, fraction of characters in those repeats)."""
    seen: set[str] = set()
    dup = dup_chars = 0
    for unit in units:
        if unit in seen:
            dup += 1
            dup_chars += len(unit)
        seen.add(unit)
    total_chars = sum(map(len, units)) or 1
    return dup / max(len(units), 1), dup_chars / total_chars


class _Ngrams:
    """Word n-gram statistics with numpy: words become ids, n-grams 64-bit rolling keys (one pass each)."""

    def __init__(self, words: list[str]):
        index: dict[str, int] = {}
        self.ids = np.fromiter((index.setdefault(w, len(index)) for w in words), np.uint64, len(words))
        self.lens = np.fromiter(map(len, words), np.int64, len(words))
        self.total = int(self.lens.sum()) or 1

    def keys(self, n: int) -> np.ndarray:
        count = len(self.ids) - n + 1
        keys = self.ids[:count].copy()
        for j in range(1, n):
            keys = keys * np.uint64(1_000_003) + self.ids[j : j + count]  # wraps mod 2**64
        return keys

    def top_fraction(self, n: int) -> float:
        """Characters in the most frequent n-gram (times its count) over all word characters."""
        keys = self.keys(n)
        if keys.size == 0:
            return 0.0
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] < 2:
            return 0.0
        start = int(first[best])
        return int(counts[best]) * int(self.lens[start : start + n].sum()) / self.total

    def dup_fraction(self, n: int) -> float:
        """Characters of words covered by an n-gram seen earlier in the document, counted once each."""
        keys = self.keys(n)
        if keys.size == 0:
            return 0.0
        repeat = np.ones(keys.size, dtype=bool)
        repeat[np.unique(keys, return_index=True)[1]] = False
        starts = np.flatnonzero(repeat)
        depth = np.zeros(len(self.ids) + 1, dtype=np.int64)
        depth[starts] += 1
        depth[starts + n] -= 1
        return int(self.lens[np.cumsum(depth[:-1]) > 0].sum()) / self.total


@register("gopher_repetition")
class GopherRepetition(Processor):
    """Gopher repetition rules: duplicate lines/paragraphs, top n-gram and duplicate n-gram shares."""

    defaults = {"dup_line_frac": 0.3, "dup_para_frac": 0.3, "dup_line_char_frac": 0.2, "dup_para_char_frac": 0.2,
                "top_n_grams": [[2, 0.2], [3, 0.18], [4, 0.16]],
                "dup_n_grams": [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]]}

    def __call__(self, doc):
        text, p = doc["text"], self.p
        paras = [x.strip() for x in re.split(r"\n{2,}", text) if x.strip()]
        lines = [x for x in text.split("\n") if x.strip()]
        para_frac, para_chars = _dup_fraction(paras)
        line_frac, line_chars = _dup_fraction(lines)
        a = {"dup_para_frac": para_frac, "dup_para_char_frac": para_chars,
             "dup_line_frac": line_frac, "dup_line_char_frac": line_chars}
        checks = [("dup_paragraphs", para_frac <= p["dup_para_frac"] and para_chars <= p["dup_para_char_frac"]),
                  ("dup_lines", line_frac <= p["dup_line_frac"] and line_chars <= p["dup_line_char_frac"])]
        grams = _Ngrams(text.split())
        for n, limit in p["top_n_grams"]:
            a[f"top_{n}gram_frac"] = grams.top_fraction(n)
            checks.append((f"top_{n}gram", a[f"top_{n}gram_frac"] <= limit))
        for n, limit in p["dup_n_grams"]:
            a[f"dup_{n}gram_frac"] = grams.dup_fraction(n)
            checks.append((f"dup_{n}gram", a[f"dup_{n}gram_frac"] <= limit))
        return a, self.first_failure(checks)


@register("c4")
class C4(Processor):
    """C4 (Raffel et al. 2020) rules: drop non-sentence lines, then reject lorem ipsum / code-like docs."""

    defaults = {"drop_lines": True, "min_words_per_line": 3, "max_word_length": 1000, "min_sentences": 5,
                "filter_no_terminal_punct": True, "filter_javascript": True, "filter_policy": True,
                "filter_lorem_ipsum": True, "filter_curly_bracket": True, "remove_citations": True}

    def _keep_line(self, line: str) -> bool:
        p, lower = self.p, line.lower()
        words = line.split()
        return not (
            (p["filter_no_terminal_punct"] and not line.endswith(TERMINAL_PUNCT))
            or len(words) < p["min_words_per_line"]
            or any(len(w) > p["max_word_length"] for w in words)
            or (p["filter_javascript"] and "javascript" in lower)
            or (p["filter_policy"] and any(phrase in lower for phrase in C4_POLICY))
        )

    def __call__(self, doc):
        p, text = self.p, doc["text"]
        lower = text.lower()
        a: dict[str, Any] = {"lorem_ipsum": "lorem ipsum" in lower, "curly_bracket": "{" in text}
        if p["drop_lines"]:
            lines = [CITATION.sub("", x).strip() if p["remove_citations"] else x.strip() for x in text.split("\n")]
            kept = [x for x in lines if x and self._keep_line(x)]
            a["lines_dropped"] = sum(1 for x in lines if x) - len(kept)
            text = doc["text"] = "\n".join(kept)
        a["sentences"] = len(SENTENCE_END.findall(text))
        return a, self.first_failure([
            ("lorem_ipsum", not (p["filter_lorem_ipsum"] and a["lorem_ipsum"])),
            ("curly_bracket", not (p["filter_curly_bracket"] and a["curly_bracket"])),
            ("too_few_sentences", a["sentences"] >= p["min_sentences"]),
        ])


@register("code_lines")
class CodeLines(Processor):
    """Program text pasted where prose belongs: too large a share of its lines read as code."""

    defaults = {"max_ratio": 0.2}

    def __call__(self, doc):
        lines = [line.strip() for line in doc["text"].split("\n") if line.strip()]
        ratio = sum(bool(CODE_LINE.fullmatch(line)) for line in lines) / max(len(lines), 1)
        return {"code_line_ratio": round(ratio, 4)}, self.first_failure([("too_many", ratio <= self.p["max_ratio"])])


@register("pii")
class Pii(Processor):
    """Masks emails, phone numbers and IP addresses with Dolma's placeholders; removes PII-dense docs."""

    defaults = {"kinds": ["email", "phone", "ip"], "max_matches": None}

    def __call__(self, doc):
        counts = {}
        for kind in self.p["kinds"]:
            pattern, placeholder = PII_PATTERNS[kind]
            doc["text"], counts[kind] = pattern.subn(placeholder, doc["text"])
        limit = self.p["max_matches"]
        return counts, self.first_failure([("too_many", limit is None or sum(counts.values()) <= limit)])


@register("code")
class Code(Processor):
    """Code checks in place of prose rules: line lengths, alphanumeric share, Python parses."""

    defaults = {"max_line_length": 1000, "max_mean_line_length": 100, "min_alnum_fraction": 0.25,
                "python_parse": True}

    def __call__(self, doc):
        text, p = doc["text"], self.p
        lines = text.split("\n") or [""]
        a: dict[str, Any] = {
            "max_line_length": max(map(len, lines)),
            "mean_line_length": len(text) / len(lines),
            "alnum_fraction": sum(c.isalnum() for c in text) / max(len(text), 1),
        }
        is_python = doc.get("metadata", {}).get("language") == "python" or str(doc.get("id", "")).endswith(".py")
        if p["python_parse"] and is_python:
            a["parses"] = _parses(text)
        return a, self.first_failure([
            ("max_line_length", a["max_line_length"] <= p["max_line_length"]),
            ("mean_line_length", a["mean_line_length"] <= p["max_mean_line_length"]),
            ("alnum_fraction", a["alnum_fraction"] >= p["min_alnum_fraction"]),
            ("syntax_error", a.get("parses", True)),
        ])


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True
