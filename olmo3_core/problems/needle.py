"""Needle in a haystack (passkey retrieval, as in Mohtashami & Jaggi 2023): a five-digit key hidden at a
random depth in repetitive filler, asked for at the end. Generated procedurally for any context length.

The filler is the same few sentences repeated, so the only thing worth remembering is the key: a model
fails only because it cannot attend that far back, which is what a long-context stage (longmino)
should fix beyond the context its predecessor (midtrain) was trained at. Prompts are sized in the
evaluated model's own tokens, so "length 512" means 512 tokens of that model's input.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

INTRO = "Remember the pass key.\n"
FILLER = ("The grass is green. ", "The sky is blue. ", "The sun is yellow. ", "Here we go. ", "There and back again. ")
NEEDLE = "The pass key is {key}. "
QUESTION = "\nWhat is the pass key? The pass key is"
MAX_NEW_TOKENS = 8  # a five-digit key and a full stop, in any tokenizer that splits digits
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class NeedleItem:
    key: str  # five digits
    depth: float  # where the needle sits, as a fraction of the filler before it (0: start, 1: end)

    @property
    def statement(self) -> str:
        return NEEDLE.format(key=self.key)


def items(n: int, seed: int) -> list[NeedleItem]:
    """`n` needles with distinct keys and depths spread evenly over [0, 1] (in a shuffled order)."""
    rng = random.Random(f"needle-{seed}")
    keys = rng.sample(range(10000, 100000), n)
    depths = [i / max(n - 1, 1) for i in range(n)]
    rng.shuffle(depths)
    return [NeedleItem(str(k), d) for k, d in zip(keys, depths)]


def build_prompt(item: NeedleItem, length: int, count_tokens: Callable[[str], int]) -> str:
    """The largest prompt of at most `length` tokens (as `count_tokens` counts them) around the needle.

    Raises ValueError when even the needle and question alone do not fit: the config asked for a
    length the test cannot be made at.
    """
    def filler(first: int, last: int) -> str:  # sentences first..last-1 of the endless filler
        return "".join(FILLER[i % len(FILLER)] for i in range(first, last))

    def compose(units: int) -> str:
        before = round(item.depth * units)
        return INTRO + filler(0, before) + item.statement + filler(before, units) + QUESTION

    fixed = count_tokens(compose(0))
    if fixed > length:
        raise ValueError(f"eval.needle_lengths: {length} tokens is shorter than the needle and question alone "
                         f"({fixed} tokens in this tokenizer)")
    per_unit = max(1, count_tokens(filler(0, 5 * len(FILLER))) // (5 * len(FILLER)))
    units = (length - fixed) // per_unit
    # the estimate is close; token merges at sentence joins decide the last few sentences
    while units > 0 and count_tokens(compose(units)) > length:
        units -= 1
    while count_tokens(compose(units + 1)) <= length:
        units += 1
    return compose(units)


def score(completion: str, key: str) -> bool:
    """Right when the first number the model writes is the key."""
    found = _NUMBER.search(completion)
    return found is not None and found.group() == key
