"""Procedural code and instruction tasks: deterministic, split cleanly, and solved by their references."""
from __future__ import annotations

import json

import pytest

from olmo3_core.problems.procedural import code, instructions
from olmo3_core.problems.verifiers import get_verifier
from olmo3_core.problems.verifiers.code import verify_code
from olmo3_core.problems.verifiers.ifeval import verify_instruction

MODULES = [code, instructions]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_generation_is_deterministic(module):
    assert module.generate(20, seed=3) == module.generate(20, seed=3)
    assert module.generate(20, seed=3) != module.generate(20, seed=4)
    assert module.rl_records(5, seed=3) == module.rl_records(5, seed=3)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_train_and_heldout_are_disjoint(module):
    train = {t.prompt for seed in (0, 1) for t in module.generate(150, seed=seed)}
    heldout = {t.prompt for seed in (0, 1) for t in module.generate(20, seed=seed, split="heldout")}
    assert len(heldout) >= 20 and not train & heldout
    with pytest.raises(ValueError, match="split"):
        module.generate(1, seed=0, split="test")


def test_every_code_reference_solution_passes_its_tests():
    assert len({t.entry_point for t in code.generate(200, seed=0)}) == len(code.TEMPLATES) >= 10
    tasks = code.generate(40, seed=0) + code.generate(8, seed=0, split="heldout")
    for task in tasks:
        assert task.entry_point in task.prompt and len(task.tests) >= 4
        assert verify_code(f"```python\n{task.solution}```", task.ground_truth) == 1.0, task.prompt


def test_a_wrong_solution_fails_the_generated_tests():
    task = next(t for t in code.generate(30, seed=1) if t.entry_point == "sum_of_multiples")
    assert verify_code("def sum_of_multiples(n):\n    return 0\n", task.ground_truth) < 1.0


def test_every_instruction_reference_response_satisfies_its_constraints():
    tasks = instructions.generate(400, seed=0) + instructions.generate(40, seed=0, split="heldout")
    for task in tasks:
        assert 1 <= len(task.constraints) <= 3
        assert verify_instruction(task.response, list(task.constraints)) == 1.0, task.prompt
    assert len({c["type"] for t in tasks for c in t.constraints}) >= 12


@pytest.mark.parametrize("module, verifier", [(code, "code"), (instructions, "ifeval")])
def test_rl_and_sft_records_are_dolci_shaped(module, verifier):
    rl = module.rl_records(4, seed=2)
    sft = module.sft_records(4, seed=2)
    json.dumps([rl, sft])  # datasets-friendly: plain JSON values only
    for rl_row, sft_row in zip(rl, sft):
        assert rl_row["verifier"] == verifier
        assert rl_row["prompt"] == [{"role": "user", "content": sft_row["messages"][0]["content"]}]
        user, assistant = sft_row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert get_verifier(rl_row["verifier"])(assistant["content"], rl_row["ground_truth"]) == 1.0
