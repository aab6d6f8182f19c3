"""Question-level decontamination: a quoted eval question is caught with or without its solution,
siblings from the same templates and ordinary text are not, and weak questions are set aside."""
from __future__ import annotations

import inspect
import json
import random
import re

import pytest

from olmo3_core.data.config import DecontamConfig
from olmo3_core.data.decontam import Decontaminator, EvalItem, load_eval_items
from olmo3_core.data.synthetic import english_doc
from olmo3_core.problems.evalsets import gsm8k_dir, load_eval_set, load_gsm8k
from olmo3_core.problems.procedural.math import generate

needs_gsm8k = pytest.mark.skipif(gsm8k_dir() is None, reason="GSM8K not found (set OLMO3_GSM8K_DIR or shared/data/gsm8k)")
SIZES = {"procedural_math": 200, "humaneval": 164, "gsm8k_test": 1319}


@pytest.fixture(scope="module")
def decontaminator():
    cfg = DecontamConfig(seed=1234, sets=SIZES)
    items, _ = load_eval_items(cfg, {})
    return Decontaminator(cfg, items)


def _in_prose(rng: random.Random, text: str) -> str:
    return english_doc(rng, 5) + "\n\n" + text + "\n\n" + english_doc(rng, 5)


@needs_gsm8k
def test_a_gsm8k_question_quoted_alone_is_removed_or_masked():
    question = load_gsm8k("test", 50)[17]["prompt"]
    rng = random.Random(3)
    before, after = english_doc(rng, 5), english_doc(rng, 5)
    text = f"{before}\n\nA reader asked: {question} Any ideas?\n\n{after}"
    cfg = DecontamConfig(seed=1234, sets={"gsm8k_test": 50, "procedural_math": 20})
    items, _ = load_eval_items(cfg, {})
    attrs, reason = Decontaminator(cfg, items)({"text": text})
    assert reason == "decontam:gsm8k_test" and attrs["matched"] == {"gsm8k_test": [17]}
    masking = DecontamConfig(seed=1234, sets=cfg.sets, mode="mask", mask_with="[EVAL]")
    doc = {"text": text}
    attrs, reason = Decontaminator(masking, items)(doc)
    assert reason is None and attrs["sets"] == {"gsm8k_test": 1}
    assert doc["text"].startswith(f"{before}\n\nA reader asked: [EVAL]") and doc["text"].endswith(f"Any ideas?\n\n{after}")


def _stdlib_functions(count: int) -> list[str]:
    """Real code with docstrings, as a web page about Python would quote it."""
    import collections, json as json_module, random as random_module, textwrap
    found = []
    for module in (collections, json_module, random_module, textwrap, inspect, re):
        for _, fn in inspect.getmembers(module, inspect.isfunction):
            try:
                found.append(inspect.getsource(fn))
            except (OSError, TypeError):
                continue
    return found[:count]


def arithmetic(problem) -> tuple[tuple[str, ...], int]:
    """A procedural problem's numbers and answer: two problems with the same are one problem renamed."""
    return tuple(re.findall(r"\d+", problem.question)), problem.answer


def _negatives(rng: random.Random, with_gsm8k: bool) -> dict[str, list[str]]:
    eval_problems = {arithmetic(p) for p in generate(SIZES["procedural_math"], 1234, "heldout")}
    # Training problems from the same templates. Those with an eval problem's numbers and answer are
    # that problem with another name (the same arithmetic), so they are not counted as clean.
    siblings = [p for p in generate(1000, 0) if arithmetic(p) not in eval_problems]
    negatives = {"procedural_train": [_in_prose(rng, f"{p.question} {p.solution}") for p in siblings],
                 "prose": [english_doc(rng, 15) for _ in range(300)],
                 "code": [_in_prose(rng, source) for source in _stdlib_functions(200)]}
    if with_gsm8k:
        negatives["gsm8k_train"] = [_in_prose(rng, f"{r['prompt']}\n{r['solution']}") for r in load_gsm8k("train", 1500)]
    return negatives


@pytest.mark.parametrize("name", ["procedural_math", "humaneval", pytest.param("gsm8k_test", marks=needs_gsm8k)])
def test_question_level_recall_and_false_positive_rate(decontaminator, name):
    rng = random.Random(11)
    rows = load_eval_set(name, SIZES[name], 1234)
    # Every item quoted once inside clean paragraphs, every other one followed by its solution.
    quoted = [_in_prose(rng, r["prompt"] + (f"\n{r.get('solution', r['answer'])}" if i % 2 else "")) for i, r in enumerate(rows)]
    found = [decontaminator({"text": text})[0].get("matched", {}).get(name, []) for text in quoted]
    recall = sum(i in hit for i, hit in enumerate(found)) / len(rows)
    negatives = [t for docs in _negatives(rng, gsm8k_dir() is not None).values() for t in docs]
    false_positive_rate = sum(decontaminator({"text": t})[1] is not None for t in negatives) / len(negatives)
    print(json.dumps({"set": name, "items": len(rows), "recall": recall, "negatives": len(negatives),
                      "false_positive_rate": round(false_positive_rate, 4)}))
    assert recall >= 0.95 and false_positive_rate <= 0.01


def test_short_and_boilerplate_questions_are_set_aside():
    template = "Write a function that takes a list of numbers and returns the result described below in the docstring."
    items = [EvalItem("mine", 0, "What is 2 + 2?"),  # too short to be evidence
             *[EvalItem("mine", i, template) for i in range(1, 4)],  # the same boilerplate three times
             EvalItem("mine", 4, "A baker fills 17 crates with 23 loaves each and sells all but 41 loaves at the fair.")]
    decon = Decontaminator(DecontamConfig(seed=1234, sets={}), items)
    assert decon.unmatchable == {"mine": 4}
    assert decon({"text": f"Homework: {template} Also, what is 2 + 2?"})[1] is None
    attrs, reason = decon({"text": "Here: a baker fills 17 crates with 23 loaves each and sells all but 41 loaves at the fair!"})
    assert reason == "decontam:mine" and attrs["matched"] == {"mine": [4]}


def test_decontamination_checks_what_the_eval_evaluates_by_default():
    from olmo3_core.config.compose import compose_config
    from olmo3_core.config.typed import ConfigError

    cfg = compose_config(["preset=micro", "eval.sets.procedural_math=7", "+eval.sets.gsm8k_test=30", "eval.seed=99"])
    assert cfg.data.decontam.seed == 99
    assert cfg.data.decontam.sets["procedural_math"] == 7 and cfg.data.decontam.sets["gsm8k_test"] >= 30
    items, _ = load_eval_items(cfg.data.decontam, {})
    procedural = [i.question for i in items if i.set == "procedural_math"]
    assert procedural == [p.question for p in generate(7, 99, "heldout")]  # the very items the eval draws
    with pytest.raises(ConfigError, match="eval.sets.procedural_math evaluates 7 items but data.decontam.sets checks 3"):
        compose_config(["preset=micro", "eval.sets.procedural_math=7", "data.decontam.sets={procedural_math: 3}"])
    allowed = compose_config(["preset=micro", "eval.sets.procedural_math=7", "data.decontam.sets={humaneval: 3}",
                              "data.decontam.unchecked_eval_sets=[procedural_math]"])
    assert allowed.data.decontam.sets == {"humaneval": 3}
    with pytest.raises(ConfigError, match="data.decontam.seed"):
        compose_config(["preset=micro", "data.decontam.seed=5"])
