"""Post-training rows are decontaminated with the data stage's decontaminator, and counted."""
from __future__ import annotations

import dataclasses
import json

import pytest

from olmo3_core.config.compose import compose_config
from olmo3_core.config.schema import DPOConfig, RLVRConfig, SFTConfig
from olmo3_core.plan import build_plan
from olmo3_core.posttrain import datasets
from olmo3_core.problems.evalsets import EvalSetUnavailable, load_eval_set


def _planted_question() -> tuple[str, str]:
    """A GSM8K test question when the local copy exists, else a procedural eval item (set name, question)."""
    try:
        return "gsm8k_test", load_eval_set("gsm8k_test", 5)[3]["prompt"]
    except EvalSetUnavailable:
        return "procedural_math", load_eval_set("procedural_math", 5, 1234)[3]["prompt"]


def _decontam(planted_set: str):
    return dataclasses.replace(compose_config(["preset=micro"]).data.decontam,
                               sets={planted_set: 20, "procedural_math": 20}, seed=1234)


def test_a_planted_eval_question_in_an_sft_file_is_removed_and_counted(tmp_path):
    name, question = _planted_question()
    sft = tmp_path / "sft.jsonl"
    rows = [{"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "The answer is 42."}]},
            {"messages": [{"role": "user", "content": "Write a haiku about the sea at night, please."},
                          {"role": "assistant", "content": "Dark waves fold on stone."}]}]
    sft.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = SFTConfig(mixture={"math": 20}, files=[str(sft)])
    kept, counts = datasets.build("sft", cfg, "instruct", {}, _decontam(name))
    assert counts.checked == 22 and counts.removed == 1
    assert counts.removed_by_set == {name: 1} and counts.removed_by_origin == {str(sft): 1}
    assert rows[1] in kept and rows[0] not in kept and len(kept) == 21
    assert counts.summary()["decontam_removed"] == 1.0 and counts.summary()[f"decontam_removed/{name}"] == 1.0

    _, undecontaminated = datasets.build("sft", cfg, "instruct", {}, None)
    assert undecontaminated.checked == 0  # said in the summary, never silent


@pytest.mark.parametrize("kind,cfg,row", [
    ("dpo", DPOConfig(mixture={}), lambda q: {"prompt": [{"role": "user", "content": q}],
                                              "chosen": [{"role": "assistant", "content": "7"}],
                                              "rejected": [{"role": "assistant", "content": "8"}]}),
    ("rlvr", RLVRConfig(mixture={}), lambda q: {"prompt": [{"role": "user", "content": q}], "ground_truth": "7",
                                                "verifier": "math"}),
])
def test_dpo_and_rl_rows_are_decontaminated_too(tmp_path, kind, cfg, row):
    name, question = _planted_question()
    path = tmp_path / f"{kind}.jsonl"
    path.write_text(json.dumps(row(question)) + "\n" + json.dumps(row("Name three colours of the rainbow, in order.")))
    kept, counts = datasets.build(kind, dataclasses.replace(cfg, files=[str(path)]), "instruct", {}, _decontam(name))
    assert (counts.checked, counts.removed, len(kept)) == (2, 1, 1)


def test_every_posttrain_step_gets_the_data_stages_decontamination():
    cfg = compose_config(["preset=micro"])
    plan = build_plan(cfg)
    for name in ("instruct/sft", "instruct/dpo", "instruct/rlvr", "rl_zero/rlvr"):
        assert plan.stages[name].config.decontam == cfg.data.decontam
    other = build_plan(compose_config(["preset=micro", "data.decontam.min_run=5"]))
    assert other.stages["instruct/sft"].fingerprint != plan.stages["instruct/sft"].fingerprint


def test_instruct_dpo_defaults_to_length_normalized_dpo():
    for preset in ([], ["preset=micro"], ["preset=tiny"]):
        cfg = compose_config(preset)
        assert (cfg.posttrain.instruct.dpo.loss_type, cfg.posttrain.instruct.dpo.beta) == ("sigmoid_norm", 5.0), preset
