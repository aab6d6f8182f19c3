"""Verifiers for RL with verifiable rewards: plain functions `(completion, ground_truth) -> float` in [0, 1].

Model output never makes a verifier raise (it scores 0.0); a malformed ground truth does (ValueError),
because that is a bug in the data, not something to train on.
"""
from __future__ import annotations

from typing import Callable

from olmo3_core.problems.verifiers.code import verify_code
from olmo3_core.problems.verifiers.ifeval import verify_instruction
from olmo3_core.problems.verifiers.math import verify_math

Verifier = Callable[[str, object], float]
VERIFIERS: dict[str, Verifier] = {"math": verify_math, "code": verify_code, "ifeval": verify_instruction}


def get_verifier(name: str) -> Verifier:
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; known verifiers: {sorted(VERIFIERS)}")
    return VERIFIERS[name]
