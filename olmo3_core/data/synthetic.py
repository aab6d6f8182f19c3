"""Synthetic English documents with planted near-duplicates, for tests and the curation benchmark.

Sentences are drawn from a grammar over a few hundred words, so documents read as plain English
prose (they pass Gopher and C4 rules) and differ from one another; `perturb` changes a few words,
making a near-duplicate whose true cluster is known, which is what dedup recall is measured on.
"""
from __future__ import annotations

import random

ADJ = ("quiet old bright small heavy green distant early careful warm narrow simple famous gentle hidden "
       "patient rapid silver strange tall wooden busy calm eager honest lively modest proud rough smooth").split()
NOUN = ("river village teacher garden engine market window island letter bridge farmer painter library harbor "
        "forest valley student kitchen museum doctor castle station meadow orchard captain sailor baker tower "
        "lantern journey workshop mountain festival").split()
VERB = ("carried watched painted repaired visited described followed opened crossed studied built found "
        "remembered shared noticed planted explored cleaned measured welcomed").split()
PLACE = ("near the old mill", "after the long winter", "before the evening train", "across the northern hills",
         "during the summer fair", "beside the stone wall", "under the bright lamps", "along the quiet road",
         "with great care", "for the whole town", "at the edge of the forest", "in the early morning")
LINK = ("and then", "because", "while", "although", "so that", "until", "after")


def sentence(rng: random.Random) -> str:
    def phrase() -> str:
        owner = f" of the {rng.choice(NOUN)}" if rng.random() < 0.5 else ""
        return f"the {rng.choice(ADJ)} {rng.choice(NOUN)}{owner} {rng.choice(VERB)} the {rng.choice(ADJ)} {rng.choice(NOUN)}"

    body = f"{phrase()} {rng.choice(PLACE)}"
    if rng.random() < 0.5:
        body += f", {rng.choice(LINK)} {phrase()}"
    return body[0].upper() + body[1:] + "."


def english_doc(rng: random.Random, sentences: int = 20, per_paragraph: int = 5) -> str:
    lines = [" ".join(sentence(rng) for _ in range(per_paragraph)) for _ in range(max(1, sentences // per_paragraph))]
    return "\n\n".join(lines)


def perturb(text: str, rng: random.Random, words: int = 3) -> str:
    """A near-duplicate: `words` word positions replaced by other vocabulary words."""
    tokens = text.split(" ")
    for i in rng.sample(range(len(tokens)), min(words, len(tokens))):
        tail = "." if tokens[i].endswith(".") else ""
        tokens[i] = rng.choice(NOUN) + tail
    return " ".join(tokens)
