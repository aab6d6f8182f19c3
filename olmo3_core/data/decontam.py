"""Question-level benchmark decontamination by word n-gram overlap (8-grams by default, as OLMo 3).

What leaks into web text is an eval item's question (a forum post quoting a GSM8K problem, a blog
copying a HumanEval prompt), with or without its solution, so items are matched on their question
alone: a document is contaminated by an item when at least `min_overlap` of the question's n-grams
occur in it as quoted runs. Guards keep shared templates from flagging unrelated text: an n-gram
found in `template_items` or more eval questions is template wording, so it never brings a question
up as a candidate; a question left with fewer than `min_question_ngrams`
distinctive n-grams (very short or all boilerplate) is too weak to match on and is reported as
unmatchable instead; and only runs of at least `min_run` consecutive n-grams of the question count,
so a sibling problem sharing a template phrase but not the numbers or names around it is not a hit.

Contaminated documents are removed, or in `mask` mode have the matching spans replaced; each hit
names the eval set and the item indices (positions in `load_eval_set` order) it matched.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec

from olmo3_core.data.config import DecontamConfig
from olmo3_core.data.processors import Processor
from olmo3_core.problems.evalsets import EvalSetUnavailable, eval_questions

WORD = re.compile(r"\w+")
MIN_QUESTION_NGRAMS = 3
TEMPLATE_ITEMS = 3
MIN_RUN = 4  # consecutive n-grams (11 words at n=8)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalItem:
    set: str  # eval set name, or a user file's name
    index: int  # position in that set
    question: str


def _ngrams(words: list[str], n: int) -> list[str]:
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _numbers(grams) -> set[str]:
    """The number tokens of some n-grams: what tells a math question from its template siblings."""
    return {word for gram in grams for word in gram.split() if word.isdigit()}


def _file_questions(uri: str, storage_options: dict[str, Any]) -> list[str]:
    """A user eval JSONL: each line's `prompt`, `question` or `text` field, else its string fields joined."""
    questions = []
    with fsspec.open(uri, "rt", encoding="utf-8", compression="infer", **storage_options) as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                field = next((k for k in ("prompt", "question", "text") if isinstance(row.get(k), str)), None)
                questions.append(row[field] if field else " ".join(v for v in row.values() if isinstance(v, str)))
    return questions


def load_eval_items(cfg: DecontamConfig, storage_options: dict[str, Any]) -> tuple[list[EvalItem], list[str]]:
    """Every eval item's question, plus notes on sets skipped because they are absent. `cfg.sets` and
    `cfg.seed` are resolved from the eval config at compose time (`olmo3_core.config.compose`)."""
    if cfg.sets is None or cfg.seed is None:
        raise ValueError("data.decontam.sets/seed are unresolved: compose the config with compose_config")
    sets, seed, files = cfg.sets, cfg.seed, cfg.files
    items: list[EvalItem] = []
    notes: list[str] = []
    for name, size in sets.items():
        try:
            items += [EvalItem(name, i, q) for i, q in enumerate(eval_questions(name, size, seed))]
        except EvalSetUnavailable as exc:
            notes.append(f"decontamination against {name} skipped: {exc}")
            log.warning(notes[-1])
    for uri in files:
        items += [EvalItem(uri.rsplit("/", 1)[-1], i, q) for i, q in enumerate(_file_questions(uri, storage_options))]
    return items, notes


def build_decontaminator(cfg: DecontamConfig, storage_options: dict[str, Any]) -> tuple["Decontaminator | None", list[str]]:
    """The decontaminator of `cfg` (None when no eval item could be loaded) and notes on what it cannot
    check: the one construction used by the data stage and by post-training datasets."""
    items, notes = load_eval_items(cfg, storage_options)
    if not items:
        return None, notes
    decontaminator = Decontaminator(cfg, items, min_question_ngrams=cfg.min_question_ngrams,
                                    template_items=cfg.template_items, min_run=cfg.min_run)
    notes += [f"decontamination: {n} {name} questions are too short or generic to match on (not checked)"
              for name, n in sorted(decontaminator.unmatchable.items())]
    return decontaminator, notes


class Decontaminator(Processor):
    """The last processor of every chain; built once in the driver and shipped to the workers."""

    name = "decontam"

    def __init__(self, cfg: DecontamConfig, items: Sequence[EvalItem], *, min_question_ngrams: int = MIN_QUESTION_NGRAMS,
                 template_items: int = TEMPLATE_ITEMS, min_run: int = MIN_RUN):
        self.cfg, self.min_run = cfg, min_run
        self.items = list(items)
        self.grams = [frozenset(_ngrams(WORD.findall(item.question.lower()), cfg.ngram)) for item in self.items]
        self.numbers = [_numbers(item_grams) for item_grams in self.grams]
        spread = Counter(g for item_grams in self.grams for g in item_grams)
        templates = {g for g, count in spread.items() if count >= template_items}
        self.index: dict[str, list[int]] = {}
        self.unmatchable: Counter = Counter()  # per set: questions too short or too generic to match on
        for i, item_grams in enumerate(self.grams):
            distinctive = item_grams - templates
            if len(distinctive) < min_question_ngrams:
                self.unmatchable[self.items[i].set] += 1
                continue
            for gram in distinctive:
                self.index.setdefault(gram, []).append(i)
        if self.unmatchable:
            log.warning("eval questions too short or generic to decontaminate against: %s", dict(self.unmatchable))

    def _quoted(self, i: int, grams: list[str]) -> list[range]:
        """Runs of consecutive document n-grams that all belong to question `i`, at least `min_run`
        long (or the whole question): the question quoted, not a phrase shared with a sibling."""
        question, runs, start = self.grams[i], [], None
        for pos, gram in enumerate([*grams, None]):
            if gram in question:
                start = pos if start is None else start
            elif start is not None:
                if pos - start >= min(self.min_run, len(question)):
                    runs.append(range(start, pos))
                start = None
        return runs

    def __call__(self, doc):
        matches = list(WORD.finditer(doc["text"].lower()))
        grams = _ngrams([m.group() for m in matches], self.cfg.ngram)
        candidates = {i for gram in set(grams) & self.index.keys() for i in self.index[gram]}
        flagged: dict[int, list[range]] = {}
        for i in sorted(candidates):
            runs = self._quoted(i, grams)
            quoted = {grams[pos] for run in runs for pos in run}
            if len(quoted) >= self.cfg.min_overlap * len(self.grams[i]) and self.numbers[i] <= _numbers(quoted):
                flagged[i] = runs
        if not flagged:
            return {"items": 0}, None
        positions = sorted({pos for runs in flagged.values() for run in runs for pos in run})
        by_set: dict[str, list[int]] = {}
        for i in flagged:
            by_set.setdefault(self.items[i].set, []).append(self.items[i].index)
        attrs = {"items": len(flagged), "ngrams": len(positions), "sets": {s: len(ids) for s, ids in by_set.items()},
                 "matched": by_set, "examples": sorted({grams[p] for p in positions})[:3]}
        if self.cfg.mode == "remove":
            return attrs, f"decontam:{self.items[min(flagged)].set}"
        doc["text"] = self._mask(doc["text"], matches, positions)
        return attrs, None

    def _mask(self, text: str, matches: list[re.Match], positions: list[int]) -> str:
        """Replace each run of words covered by a matched n-gram with `mask_with`."""
        n = self.cfg.ngram
        spans = [(matches[p].start(), matches[p + n - 1].end()) for p in positions]
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
