"""Instruction-following prompts with 1-3 verifiable constraints and a reference response.

The response is built to satisfy its constraints (comma-free sentences about a topic, then the
chosen format, opening/closing phrases and letter case); word and sentence limits are set from the
finished response, so the reference always passes the `ifeval` verifier. Train and held-out prompts
are split by a hash of the prompt text, as in procedural/math.py.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

from olmo3_core.problems.procedural import distinct
from olmo3_core.problems.verifiers.ifeval import split_sentences, split_words

TOPICS = ["the ocean", "coffee", "city parks", "bicycles", "the moon", "libraries", "rainy days", "gardening",
          "trains", "mountains", "honeybees", "chess", "bread baking", "winter", "lighthouses", "volcanoes",
          "jazz", "recycling", "owls", "maps"]
REQUESTS = ["Write a short description of {topic}.", "Explain why people enjoy {topic}.",
            "Write a few notes about {topic}.", "Describe {topic} to a child."]
SENTENCES = ["{T} can teach us a lot about patience.", "Many people find {t} calming and beautiful.",
             "There is always something new to notice about {t}.", "The story of {t} is long and interesting.",
             "Writers and artists often return to {t} for ideas.", "A quiet hour with {t} can brighten a whole day.",
             "Learning about {t} is a simple pleasure.", "{T} can connect people across many places and ages."]
KEYWORDS = ["wonder", "daily", "nature", "curious", "gentle", "season", "journey", "craft"]
FORBIDDEN = ["very", "really", "thing", "stuff", "amazing", "literally"]  # never in SENTENCES
PLACEHOLDERS = ["[name]", "[address]", "[date]"]
OPENINGS = ["Here is my answer:", "Of course.", "Let me explain."]
CLOSINGS = ["Is there anything else I can help with?", "That is all.", "Thank you for reading."]
FAMILIES = ["case", "no_commas", "keywords", "forbidden", "placeholders", "opening", "closing", "length",
            "sentences", "format"]
_NOT_WITH_JSON = {"no_commas", "opening", "closing", "sentences"}

DESCRIBE = {
    "max_words": "Answer in at most {n} words.",
    "min_words": "Answer in at least {n} words.",
    "max_sentences": "Use at most {n} sentences.",
    "include_keywords": "Use {keywords} in your answer.",
    "forbidden_words": "Never use {words}.",
    "json_format": "Format the whole answer as JSON.",
    "no_commas": "Do not use any commas.",
    "all_lowercase": "Write everything in lowercase letters.",
    "all_uppercase": "Write everything in capital letters.",
    "bullet_count": "Answer with exactly {n} markdown bullet points.",
    "ends_with": 'End your answer with the exact phrase "{phrase}".',
    "starts_with": 'Start your answer with "{phrase}".',
    "num_paragraphs": "Write exactly {n} paragraphs separated by blank lines.",
    "placeholder_count": "Include at least {n} placeholders in square brackets, such as [name].",
}


@dataclass(frozen=True)
class InstructionTask:
    prompt: str
    constraints: tuple[dict, ...]  # ifeval constraint dicts
    response: str  # a reference answer satisfying every constraint


def describe(spec: dict) -> str:
    """The instruction text of a constraint."""
    args = {k: " and ".join(f'"{v}"' for v in val) if isinstance(val, list) else val for k, val in spec.items()}
    return DESCRIBE[spec["type"]].format(**args)


def _families(rng: random.Random) -> list[str]:
    chosen = rng.sample(FAMILIES, rng.randint(1, 3))
    if "format" in chosen and rng.random() < 0.3:  # JSON answers: drop what JSON cannot honour
        return ["json"] + [f for f in chosen if f not in _NOT_WITH_JSON and f != "format"]
    return chosen


def _content(rng: random.Random, topic: str, families: list[str], specs: list[dict]) -> list[str]:
    """Comma-free sentences about the topic, plus whatever keywords/placeholders are required."""
    picked = rng.sample(SENTENCES, rng.randint(2, 5))
    out = [s.format(t=topic, T=topic[0].upper() + topic[1:]) for s in picked]
    if "keywords" in families:
        keywords = rng.sample(KEYWORDS, rng.randint(1, 2))
        out.append(f"Words like {' and '.join(keywords)} come to mind.")
        specs.append({"type": "include_keywords", "keywords": keywords})
    if "forbidden" in families:
        specs.append({"type": "forbidden_words", "words": rng.sample(FORBIDDEN, 2)})
    if "placeholders" in families:
        n = rng.randint(1, 3)
        out.append(f"Please write to {' and '.join(PLACEHOLDERS[:n])} for details.")
        specs.append({"type": "placeholder_count", "n": n})
    return out


def _layout(rng: random.Random, topic: str, families: list[str], lines: list[str], specs: list[dict]) -> str:
    """Join the sentences as JSON, bullets, paragraphs or prose, with any opening/closing phrase."""
    if "json" in families:
        specs.append({"type": "json_format"})
        return json.dumps({"topic": topic, "text": " ".join(lines)}, ensure_ascii=False)
    shape = rng.choice(["bullets", "paragraphs"]) if "format" in families else "prose"
    if shape == "bullets":
        specs.append({"type": "bullet_count", "n": len(lines)})
        blocks, sep = [f"- {line}" for line in lines], "\n"
    elif shape == "paragraphs":
        n = rng.randint(2, len(lines))
        cuts = sorted(rng.sample(range(1, len(lines)), n - 1))
        blocks = [" ".join(lines[a:b]) for a, b in zip([0] + cuts, cuts + [len(lines)])]
        specs.append({"type": "num_paragraphs", "n": n})
        sep = "\n\n"
    else:
        blocks, sep = [" ".join(lines)], " "
    if "opening" in families:
        phrase = rng.choice(OPENINGS)
        blocks = [f"{phrase}\n{blocks[0]}"] + blocks[1:] if shape == "bullets" else [f"{phrase} {blocks[0]}"] + blocks[1:]
        specs.append({"type": "starts_with", "phrase": phrase})
    if "closing" in families:
        phrase = rng.choice(CLOSINGS)
        blocks[-1] = f"{blocks[-1]}\n{phrase}" if shape == "bullets" else f"{blocks[-1]} {phrase}"
        specs.append({"type": "ends_with", "phrase": phrase})
    return sep.join(blocks)


def _task(rng: random.Random) -> InstructionTask:
    topic = rng.choice(TOPICS)
    families, specs = _families(rng), []
    text = _layout(rng, topic, families, _content(rng, topic, families, specs), specs)
    if "case" in families:
        lower = rng.random() < 0.5
        text = text.lower() if lower else text.upper()
        for spec in specs:
            if "phrase" in spec:
                spec["phrase"] = spec["phrase"].lower() if lower else spec["phrase"].upper()
        specs.append({"type": "all_lowercase" if lower else "all_uppercase"})
    if "no_commas" in families:
        specs.append({"type": "no_commas"})
    if "length" in families:
        count = len(split_words(text))
        specs.append(rng.choice([{"type": "max_words", "n": count + rng.randint(0, 30)},
                                 {"type": "min_words", "n": max(1, count - rng.randint(0, count // 2))}]))
    if "sentences" in families:
        specs.append({"type": "max_sentences", "n": len(split_sentences(text)) + rng.randint(0, 2)})
    prompt = " ".join([rng.choice(REQUESTS).format(topic=topic)] + [describe(s) for s in specs])
    return InstructionTask(prompt, tuple(specs), text)


def generate(n: int, seed: int, split: str = "train") -> list[InstructionTask]:
    """`n` distinct tasks of `split` ("train" or "heldout"), deterministic in `seed`."""
    return distinct(_task, lambda task: task.prompt, n, f"instructions-{seed}", split)


def rl_records(n: int, seed: int, split: str = "train") -> list[dict]:
    """Dolci-style RL rows: a user prompt, the constraints as ground truth, and the verifier to use."""
    return [{"prompt": [{"role": "user", "content": t.prompt}], "ground_truth": [dict(c) for c in t.constraints],
             "verifier": "ifeval"} for t in generate(n, seed, split)]


def sft_records(n: int, seed: int, split: str = "train") -> list[dict]:
    """Dolci-style SFT rows: the prompt and its reference response."""
    return [{"messages": [{"role": "user", "content": t.prompt}, {"role": "assistant", "content": t.response}]}
            for t in generate(n, seed, split)]
