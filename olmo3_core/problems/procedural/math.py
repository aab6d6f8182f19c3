"""Arithmetic word problems with worked solutions and verifiable answers."""
from __future__ import annotations

import random
from dataclasses import dataclass

from olmo3_core.problems.procedural import distinct

NAMES = ["Ava", "Ben", "Chloe", "Dan", "Ema", "Finn", "Gia", "Hugo", "Ivy", "Jon", "Kai", "Lea"]
ITEMS = ["apples", "books", "coins", "marbles", "pens", "stamps", "shells", "cards"]


@dataclass(frozen=True)
class MathProblem:
    question: str
    steps: tuple[str, ...]  # worked reasoning, one equation per step
    answer: int

    @property
    def solution(self) -> str:
        return " ".join(self.steps) + f" The answer is {self.answer}."


# Operand ranges: a two-digit number and a one-digit number, so every step is one carry at most. The tiny
# preset's 1.3M-parameter model never learned two-digit-plus-two-digit sums (up to 40 + 30) from its
# budget: its held-out accuracy stayed under 0.1 after SFT, too close to 0 for any later step to show.
A_RANGE, B_RANGE, C_RANGE = (2, 20), (2, 9), (2, 5)


def _problem(rng: random.Random) -> MathProblem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(*A_RANGE), rng.randint(*B_RANGE), rng.randint(*C_RANGE)
    form = rng.randrange(4)
    if form == 0:
        q = f"{name} has {a} {item}. {name} gets {b} more. How many {item} does {name} have now?"
        return MathProblem(q, (f"{a} + {b} = {a + b}.",), a + b)
    if form == 1:
        a = a + b
        q = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        return MathProblem(q, (f"{a} - {b} = {a - b}.",), a - b)
    if form == 2:
        q = f"{name} buys {c} bags with {b} {item} in each bag. How many {item} does {name} buy?"
        return MathProblem(q, (f"{c} * {b} = {c * b}.",), c * b)
    total = a + b
    q = f"{name} has {a} {item}, finds {b} more, then loses {c}. How many {item} does {name} have?"
    return MathProblem(q, (f"{a} + {b} = {total}.", f"{total} - {c} = {total - c}."), total - c)


def generate(n: int, seed: int, split: str = "train") -> list[MathProblem]:
    """`n` distinct problems of `split` ("train" or "heldout"), deterministic in `seed`."""
    return distinct(_problem, lambda problem: problem.question, n, str(seed), split)


def wrong_solution(problem: MathProblem, rng: random.Random) -> str:
    """A plausible solution with an arithmetic slip, for DPO's rejected side."""
    wrong = problem.answer + rng.choice([-3, -2, -1, 1, 2, 3, 10])
    last = problem.steps[-1]
    lhs = last.split("=")[0]
    steps = list(problem.steps[:-1]) + [f"{lhs}= {wrong}."]
    return " ".join(steps) + f" The answer is {wrong}."


def assistant_turn(problem: MathProblem, style: str, solution: str | None = None) -> dict[str, str]:
    """An assistant turn in the branch's style: Think puts the working in the reasoning section."""
    solution = solution or problem.solution
    if style == "think":
        working, _, answer = solution.rpartition(" The answer is ")
        return {"role": "assistant", "reasoning": working, "content": f"The answer is {answer}"}
    return {"role": "assistant", "content": solution}


def _user(problem: MathProblem) -> dict[str, str]:
    return {"role": "user", "content": problem.question}


def sft_records(n: int, seed: int, split: str = "train", style: str = "instruct") -> list[dict]:
    return [{"messages": [_user(p), assistant_turn(p, style)]} for p in generate(n, seed, split)]


def dpo_records(n: int, seed: int, split: str = "train", style: str = "instruct") -> list[dict]:
    """Chosen = the worked solution; rejected = the same working with an arithmetic slip."""
    rng = random.Random(f"dpo-{seed}")
    return [
        {"prompt": [_user(p)], "chosen": [assistant_turn(p, style)], "rejected": [assistant_turn(p, style, wrong_solution(p, rng))]}
        for p in generate(n, seed, split)
    ]


def rl_records(n: int, seed: int, split: str = "train") -> list[dict]:
    return [{"prompt": [_user(p)], "ground_truth": str(p.answer), "verifier": "math"} for p in generate(n, seed, split)]
