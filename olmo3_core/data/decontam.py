"""Benchmark decontamination by word n-gram overlap (8-grams by default, as OLMo 3).

A document is contaminated by an eval item when at least `min_overlap` of the item's n-grams occur
in it: a share of the item rather than a single hit, so a shared phrase template (the procedural
math questions all share some) does not flag unrelated documents. Contaminated documents are
removed, or in `mask` mode have the matching spans replaced, and each hit is reported.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any

import fsspec

from olmo3_core.data.config import DecontamConfig
from olmo3_core.data.processors import Processor
from olmo3_core.problems.evalsets import EvalSetUnavailable, eval_texts

WORD = re.compile(r"\w+")
log = logging.getLogger(__name__)


def _ngrams(words: list[str], n: int) -> list[str]:
    if len(words) < n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _file_texts(uri: str, storage_options: dict[str, Any]) -> list[str]:
    """A user eval JSONL: each line's `text`, else all of its string fields joined."""
    texts = []
    with fsspec.open(uri, "rt", encoding="utf-8", compression="infer", **storage_options) as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                texts.append(row["text"] if "text" in row else " ".join(v for v in row.values() if isinstance(v, str)))
    return texts


def load_eval_items(cfg: DecontamConfig, storage_options: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(set name, text) for every eval item, plus notes on sets skipped because they are absent."""

    items: list[tuple[str, str]] = []
    notes: list[str] = []
    for name, size in cfg.sets.items():
        try:
            items += [(name, t) for t in eval_texts(name, size, cfg.seed)]
        except EvalSetUnavailable as exc:
            notes.append(f"decontamination against {name} skipped: {exc}")
            log.warning(notes[-1])
    for uri in cfg.files:
        items += [(uri.rsplit("/", 1)[-1], t) for t in _file_texts(uri, storage_options)]
    return items, notes


class Decontaminator(Processor):
    """The last processor of every chain; built once in the driver and shipped to the workers."""

    name = "decontam"

    def __init__(self, cfg: DecontamConfig, items: list[tuple[str, str]]):
        self.cfg = cfg
        self.item_sets = [name for name, _ in items]
        self.item_sizes: list[int] = []
        self.index: dict[str, list[int]] = {}
        for i, (_, text) in enumerate(items):
            grams = set(_ngrams(WORD.findall(text.lower()), cfg.ngram))
            self.item_sizes.append(len(grams))
            for gram in grams:
                self.index.setdefault(gram, []).append(i)

    def __call__(self, doc):
        matches = list(WORD.finditer(doc["text"].lower()))
        grams = _ngrams([m.group() for m in matches], self.cfg.ngram)
        hits: dict[int, set[str]] = {}
        for gram in set(grams) & self.index.keys():
            for item in self.index[gram]:
                hits.setdefault(item, set()).add(gram)
        flagged = [i for i, g in hits.items() if len(g) >= self.cfg.min_overlap * self.item_sizes[i]]
        if not flagged:
            return {"items": 0}, None
        matched = set().union(*(hits[i] for i in flagged))
        attrs = {"items": len(flagged), "ngrams": len(matched), "sets": dict(Counter(self.item_sets[i] for i in flagged)),
                 "examples": sorted(matched)[:3]}
        if self.cfg.mode == "remove":
            return attrs, f"decontam:{self.item_sets[flagged[0]]}"
        doc["text"] = self._mask(doc["text"], matches, grams, matched)
        return attrs, None

    def _mask(self, text: str, matches: list[re.Match], grams: list[str], matched: set[str]) -> str:
        """Replace each run of words covered by a matched n-gram with `mask_with`."""
        n = self.cfg.ngram
        spans = [(matches[i].start(), matches[min(i + n, len(matches)) - 1].end()) for i, g in enumerate(grams) if g in matched]
        out, cursor = [], 0
        for start, end in _merged(spans):
            out += [text[cursor:start], self.cfg.mask_with]
            cursor = end
        return "".join(out) + text[cursor:]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]
