"""Small Python function tasks with reference solutions and assert tests, generated offline.

Every template has random constants that show in the prompt, so prompts are many and distinct;
train and held-out tasks are split by a hash of the prompt (as in procedural/math.py). Expected
test values are computed by running the reference solution itself, so solution and tests agree.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable

from olmo3_core.problems.procedural import distinct

WORDS = ["Fizz", "Buzz", "Ping", "Pong", "Zap", "Bop", "Tick", "Tock"]


@dataclass(frozen=True)
class CodeTask:
    prompt: str
    solution: str  # reference code defining `entry_point`
    tests: tuple[str, ...]  # assert statements
    entry_point: str

    @property
    def ground_truth(self) -> dict:
        return {"tests": list(self.tests), "entry_point": self.entry_point}


@dataclass(frozen=True)
class _Spec:
    signature: str
    description: str
    solution: str
    inputs: list[tuple]


def _letters(rng: random.Random, extra: str = "", max_len: int = 12) -> str:
    return "".join(rng.choice(string.ascii_lowercase + extra) for _ in range(rng.randint(0, max_len)))


def _ints(rng: random.Random, low: int = -20, high: int = 50) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(1, 8))]


def _sum_of_multiples(rng: random.Random) -> _Spec:
    a, b = rng.sample(range(2, 10), 2)
    return _Spec("sum_of_multiples(n: int) -> int",
                 f"returns the sum of all positive integers below n that are divisible by {a} or by {b}",
                 f"def sum_of_multiples(n):\n    return sum(i for i in range(1, n) if i % {a} == 0 or i % {b} == 0)\n",
                 [(0,), (1,), (a * b + 1,)] + [(rng.randint(2, 200),) for _ in range(2)])


def _count_chars(rng: random.Random) -> _Spec:
    chars = "".join(sorted(rng.sample(string.ascii_lowercase, rng.randint(3, 5))))
    return _Spec("count_chars(s: str) -> int",
                 f"returns how many characters of s are one of the lowercase letters '{chars}'",
                 f"def count_chars(s):\n    return sum(1 for c in s if c in {chars!r})\n",
                 [("",), (chars + chars.upper(),)] + [(_letters(rng, "AB "),) for _ in range(3)])


def _fizzbuzz(rng: random.Random) -> _Spec:
    a, b = rng.choice([(a, b) for a in range(2, 8) for b in range(2, 8) if a % b and b % a])
    w1, w2 = rng.sample(WORDS, 2)
    return _Spec("fizzbuzz(n: int) -> str",
                 f"returns '{w1}{w2}' if n is divisible by both {a} and {b}, '{w1}' if only by {a}, "
                 f"'{w2}' if only by {b}, and otherwise the number itself as a string",
                 f"def fizzbuzz(n):\n    if n % {a} == 0 and n % {b} == 0:\n        return {w1 + w2!r}\n"
                 f"    if n % {a} == 0:\n        return {w1!r}\n    if n % {b} == 0:\n        return {w2!r}\n"
                 f"    return str(n)\n",
                 [(a * b,), (a,), (b,), (1,), (rng.randint(1, 100),)])


def _clamp_list(rng: random.Random) -> _Spec:
    lo = rng.randint(-10, 10)
    hi = lo + rng.randint(1, 20)
    return _Spec("clamp_list(nums: list[int]) -> list[int]",
                 f"returns a new list in which every value below {lo} becomes {lo} and every value above {hi} becomes {hi}",
                 f"def clamp_list(nums):\n    return [min(max(x, {lo}), {hi}) for x in nums]\n",
                 [([],)] + [(_ints(rng, lo - 15, hi + 15),) for _ in range(4)])


def _factorial_mod(rng: random.Random) -> _Spec:
    m = rng.choice([97, 101, 997, 1009, 10007, 65537, 1000003])
    return _Spec("factorial_mod(n: int) -> int",
                 f"returns n! (n factorial, with 0! = 1) modulo {m}",
                 f"def factorial_mod(n):\n    result = 1\n    for i in range(2, n + 1):\n"
                 f"        result = result * i % {m}\n    return result % {m}\n",
                 [(0,), (1,), (5,)] + [(rng.randint(6, 60),) for _ in range(2)])


def _sequence_value(rng: random.Random) -> _Spec:
    a, b = rng.randint(0, 5), rng.randint(1, 5)
    return _Spec("sequence_value(n: int) -> int",
                 f"returns term n (counting from 0) of the sequence whose first two terms are {a} and {b} "
                 f"and whose every later term is the sum of the two terms before it",
                 f"def sequence_value(n):\n    x, y = {a}, {b}\n    for _ in range(n):\n        x, y = y, x + y\n    return x\n",
                 [(0,), (1,), (2,)] + [(rng.randint(3, 40),) for _ in range(2)])


def _is_palindrome(rng: random.Random) -> _Spec:
    sep = rng.choice(["-", "_", ".", "*", "#"])
    half = _letters(rng, sep.upper(), 5)
    yes = half + rng.choice(["", "x"]) + half[::-1]
    cases = [(yes.upper().replace("", sep)[1:-1] or sep,), (yes,), ("ab" + sep + "c",), (_letters(rng, sep, 8),)]
    return _Spec("is_palindrome(s: str) -> bool",
                 f"returns True if s reads the same forwards and backwards once every '{sep}' is removed "
                 f"and upper/lower case is ignored, and False otherwise",
                 f"def is_palindrome(s):\n    t = s.replace({sep!r}, '').lower()\n    return t == t[::-1]\n",
                 cases)


def _best_score(rng: random.Random) -> _Spec:
    k = rng.randint(1, 6)
    return _Spec("best_score(nums: list[int]) -> int",
                 f"returns the largest value of nums[i] + {k} * i over all indexes i (nums is never empty)",
                 f"def best_score(nums):\n    return max(x + {k} * i for i, x in enumerate(nums))\n",
                 [([5],)] + [(_ints(rng),) for _ in range(4)])


def _rotate_left(rng: random.Random) -> _Spec:
    k = rng.randint(1, 7)
    return _Spec("rotate_left(s: str) -> str",
                 f"returns s rotated left by {k} position{'s' * (k > 1)} (characters taken off the front go to the back, "
                 f"wrapping around as often as needed); an empty string stays empty",
                 f"def rotate_left(s):\n    if not s:\n        return s\n    k = {k} % len(s)\n    return s[k:] + s[:k]\n",
                 [("",), ("a",), (string.ascii_lowercase[:k + 2],)] + [(_letters(rng),) for _ in range(2)])


def _digit_power_sum(rng: random.Random) -> _Spec:
    p = rng.randint(1, 5)
    return _Spec("digit_power_sum(n: int) -> int",
                 f"returns the sum of the digits of the non-negative integer n, each raised to the power {p}",
                 f"def digit_power_sum(n):\n    return sum(int(d) ** {p} for d in str(n))\n",
                 [(0,), (9,)] + [(rng.randint(10, 10**6),) for _ in range(3)])


def _count_above(rng: random.Random) -> _Spec:
    t = rng.randint(-10, 30)
    return _Spec("count_above(nums: list[int]) -> int",
                 f"returns how many values in nums are strictly greater than {t}",
                 f"def count_above(nums):\n    return sum(1 for x in nums if x > {t})\n",
                 [([],), ([t, t + 1],)] + [(_ints(rng),) for _ in range(3)])


def _shift_letters(rng: random.Random) -> _Spec:
    k = rng.randint(1, 25)
    return _Spec("shift_letters(s: str) -> str",
                 f"returns s with every lowercase letter a-z moved {k} places forward in the alphabet "
                 f"(wrapping from z back to a), leaving every other character unchanged",
                 f"def shift_letters(s):\n    return ''.join(chr((ord(c) - 97 + {k}) % 26 + 97) if 'a' <= c <= 'z' else c for c in s)\n",
                 [("",), ("xyz",)] + [(_letters(rng, "AZ !"),) for _ in range(3)])


TEMPLATES: list[Callable[[random.Random], _Spec]] = [
    _sum_of_multiples, _count_chars, _fizzbuzz, _clamp_list, _factorial_mod, _sequence_value,
    _is_palindrome, _best_score, _rotate_left, _digit_power_sum, _count_above, _shift_letters,
]


def _task(spec: _Spec) -> CodeTask:
    """Prompt and tests for a spec; expected values come from running the (trusted) reference."""
    name = spec.signature.split("(")[0]
    namespace: dict = {}
    exec(spec.solution, namespace)  # our own generated reference code, never model output
    tests = tuple(
        f"assert {name}({', '.join(map(repr, args))}) == {namespace[name](*args)!r}" for args in spec.inputs
    )
    prompt = f"Write a Python function `{spec.signature}` that {spec.description}."
    return CodeTask(prompt, spec.solution, tests, name)


def generate(n: int, seed: int, split: str = "train") -> list[CodeTask]:
    """`n` distinct tasks of `split` ("train" or "heldout"), deterministic in `seed`."""
    return distinct(lambda rng: _task(rng.choice(TEMPLATES)(rng)), lambda task: task.prompt, n, f"code-{seed}", split)


def rl_records(n: int, seed: int, split: str = "train") -> list[dict]:
    """Dolci-style RL rows: a user prompt, the tests as ground truth, and the verifier to use."""
    return [{"prompt": [{"role": "user", "content": t.prompt}], "ground_truth": t.ground_truth, "verifier": "code"}
            for t in generate(n, seed, split)]


def sft_records(n: int, seed: int, split: str = "train") -> list[dict]:
    """Dolci-style SFT rows: the prompt and the reference solution in a ```python block."""
    return [{"messages": [{"role": "user", "content": t.prompt},
                          {"role": "assistant", "content": f"```python\n{t.solution}```"}]}
            for t in generate(n, seed, split)]
