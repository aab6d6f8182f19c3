"""Code verifier: run a completion's code against assert-style tests, reward = fraction passed.

Scoring the candidate cannot forge: the completion runs in one sandbox (`code_harness/candidate.py`)
and the tests in another (`code_harness/judge.py`). The judge calls the completion's functions over
a pipe, gets plain built-in data back (`code_harness/wire.py`), evaluates the asserts itself and
writes one result per test to a memory file that only the judge's sandbox and this process hold. So
the usual reward hacks get nothing: exiting early or crashing fails the remaining calls; printing or
writing fake result lines reaches nobody; objects whose `__eq__`/`__bool__` always agree cannot cross
the pipe; monkeypatching builtins or stdlib modules changes only the candidate's own process; and the
candidate never sees the tests or their expected values. A candidate that does anything the sandbox
kills (fork, mount, ptrace...) scores 0.

Limits of the protocol: tests may pass the completion only plain data and its own functions (a
lambda written in a test cannot cross), and in-place mutation of an argument is not seen by the test.
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
import time
from pathlib import Path

from olmo3_core.problems import sandbox
from olmo3_core.problems.verifiers.code_harness import candidate as candidate_program
from olmo3_core.problems.verifiers.code_harness import judge as judge_program
from olmo3_core.problems.verifiers.math import strip_reasoning

_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_LANGS = {"python", "py", "python3"}
# Imported (side-effect free) so the eval and RLVR fingerprints cover the programs run by path below.
CANDIDATE, JUDGE = Path(candidate_program.__file__), Path(judge_program.__file__)


def extract_code(completion: str) -> list[str]:
    """Code blocks of a completion: its ```python fences (else any ``` fences), else the raw text."""
    text = strip_reasoning(completion)
    fences = _FENCE_RE.findall(text)
    python = [body for lang, body in fences if lang.lower() in _PYTHON_LANGS]
    blocks = python or [body for _, body in fences] or [text]
    return [b for b in blocks if b.strip()]


def _tests(ground_truth) -> tuple[list[str], str | None]:
    tests = ground_truth.get("tests") if isinstance(ground_truth, dict) else None
    entry_point = ground_truth.get("entry_point") if isinstance(ground_truth, dict) else None
    if not tests or not all(isinstance(t, str) for t in tests) or not isinstance(entry_point, (str, type(None))):
        raise ValueError(f"code ground truth must be {{'tests': [str, ...], 'entry_point': str | None}}, got {ground_truth!r}")
    for test in tests:
        try:
            ast.parse(test)
        except SyntaxError as exc:
            raise ValueError(f"code test is not valid Python: {test!r}") from exc
    return tests, entry_point


def verify_code(completion: str, ground_truth, *, timeout_s: float = 10.0) -> float:
    """Fraction of `ground_truth["tests"]` the completion's code passes. With an `entry_point`, the
    code must define that callable, which tests may also call as `candidate`. Tests finished before
    a timeout or resource limit count; anything the sandbox forbids scores 0.0."""
    tests, entry_point = _tests(ground_truth)
    blocks = extract_code(completion) if isinstance(completion, str) else []
    if not blocks:
        return 0.0
    limits = sandbox.Limits(timeout_s=timeout_s, cpu_s=math.ceil(timeout_s))
    request_r, request_w = os.pipe()
    response_r, response_w = os.pipe()
    results = os.memfd_create("olmo3-results")
    try:
        try:
            candidate = sandbox.spawn(
                CANDIDATE, [f"{sandbox.DATA_DIR}/solution.json", str(request_r), str(response_w)],
                data={"solution.json": json.dumps(blocks).encode()}, pass_fds=(request_r, response_w), limits=limits)
            try:
                judge = sandbox.spawn(
                    JUDGE,
                    [f"{sandbox.DATA_DIR}/tests.json", str(request_w), str(response_r), str(results)],
                    data={"tests.json": json.dumps({"tests": tests, "entry_point": entry_point}).encode()},
                    pass_fds=(request_w, response_r, results), limits=limits)
            except BaseException:
                candidate.kill()
                candidate.wait()
                raise
        finally:  # the sandboxes hold their own ends; ours must go so that a side's exit reads as EOF
            for fd in (request_r, request_w, response_r, response_w):
                os.close(fd)
        judged = judge.wait()
        served = candidate.wait(deadline=time.monotonic())  # the judge is done: stop serving
        lines = os.pread(results, 1 << 20, 0).decode("ascii", "replace")
    finally:
        os.close(results)
    if "forbidden" in (served.status, judged.status):
        return 0.0
    passed = {int(i) for i, ok in re.findall(r"^(\d+) ([01])$", lines, re.MULTILINE) if ok == "1"}
    return len(passed & set(range(len(tests)))) / len(tests)
