"""Built-in procedural tasks, generated offline with a seed, so post-training runs without downloads.

Train and held-out items are split by a hash of their prompt, so they can never overlap whatever
seeds and sizes are chosen.
"""
from __future__ import annotations

import hashlib
import random
from typing import Callable, TypeVar

T = TypeVar("T")
SPLITS = ("train", "heldout")


def is_heldout(prompt: str, heldout_percent: int = 10) -> bool:
    return int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 100 < heldout_percent


def distinct(make: Callable[[random.Random], T], key: Callable[[T], str], n: int, seed: str, split: str) -> list[T]:
    """`n` distinct items of `split` from the generator `make`, deterministic in `seed`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"{seed}-{split}")
    seen: set[str] = set()
    out: list[T] = []
    for _ in range(n * 200):
        if len(out) == n:
            break
        item = make(rng)
        prompt = key(item)
        if prompt in seen or is_heldout(prompt) != (split == "heldout"):
            continue
        seen.add(prompt)
        out.append(item)
    if len(out) < n:
        raise ValueError(f"could only generate {len(out)} distinct {split} items for seed {seed!r}, asked for {n}")
    return out
