"""Delta-learning DPO pairs: their own stage in the DAG between the two models and DPO, chosen from the
stronger model (or the reference where the verifier fails it), rejected from the weaker one."""
from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from olmo3_core.chat import chat_template
from olmo3_core.config.compose import compose_config
from olmo3_core.config.schema import DeltaPairsConfig, ModelConfig, PairsStageConfig, TrainStageConfig
from olmo3_core.config.typed import ConfigError
from olmo3_core.plan import build_plan
from olmo3_core.posttrain import datasets, pairs
from olmo3_core.problems.procedural import math as procedural_math
from olmo3_core.stages import InputArtifact, StageContext


def test_dpo_with_delta_pairs_descends_from_both_models():
    plan = build_plan(compose_config(["preset=micro", "posttrain.branches=[instruct]", "posttrain.instruct.dpo.pairs=delta"]))
    assert plan.stages["instruct/dpo_pairs"].parents == ("instruct/sft", "longmino")
    assert plan.stages["instruct/dpo"].parents == ("instruct/sft", "instruct/dpo_pairs")
    assert {"instruct/sft", "longmino", "instruct/dpo_pairs"} <= plan.ancestors("instruct/dpo")
    other = build_plan(compose_config(["preset=micro", "posttrain.branches=[instruct]", "posttrain.instruct.dpo.pairs=delta",
                                       "posttrain.instruct.dpo.delta.rejected_from=midtrain"]))
    assert other.stages["instruct/dpo_pairs"].parents == ("instruct/sft", "midtrain")
    assert other.stages["instruct/dpo"].fingerprint != plan.stages["instruct/dpo"].fingerprint
    assert "instruct/dpo_pairs" not in build_plan(compose_config(["preset=micro"])).stages  # default: no pairs stage


def test_delta_pairs_need_a_weaker_rejected_model():
    with pytest.raises(ConfigError, match="posttrain.rl_zero.dpo.delta.rejected_from: the rejected model"):
        build_plan(compose_config(["preset=micro", "posttrain.branches=[rl_zero]", "posttrain.rl_zero.steps=[dpo]",
                                   "posttrain.rl_zero.dpo.pairs=delta"]))


def test_pairs_choose_the_stronger_answer_or_the_reference_and_drop_pairs_without_delta():
    problems = procedural_math.generate(3, 5)
    right = f"The answer is {problems[0].answer}."
    chosen = [right, "The answer is -1.", "same"]
    rejected = ["The answer is -7.", "I do not know.", "same"]
    names = ("instruct/sft@aa", "longmino@bb")
    rows, counts = pairs.make_pairs(PairsStageConfig(), chosen, rejected, problems, names)
    assert [r["chosen"][0]["content"] for r in rows] == [right, problems[1].solution, problems[2].solution]
    assert [r["chosen_model"] for r in rows] == ["instruct/sft@aa"] + ["instruct/sft@aa (failed; reference solution)"] * 2
    assert {r["rejected_model"] for r in rows} == {"longmino@bb"}
    assert (counts["chosen_from_model"], counts["chosen_from_reference"], counts["pairs"]) == (1.0, 2.0, 3.0)

    keep_model = PairsStageConfig(pairs=DeltaPairsConfig(reference_when_chosen_fails=False))
    rows, counts = pairs.make_pairs(keep_model, chosen, rejected, problems, names)
    assert [r["chosen"][0]["content"] for r in rows] == [right, "The answer is -1."]
    assert counts["dropped_no_delta"] == 1.0  # "same" vs "same": nothing to learn


def test_think_pairs_keep_the_reasoning_apart_from_the_answer(tiny_model_dir):
    # Think completions start inside <think>: what precedes </think> is reasoning, and the chat template
    # must render each side back into the tokens the model produced (not "<think></think>" + everything)
    problems = procedural_math.generate(2, 5)
    first = problems[0]
    good = f"{first.steps[-1]}</think>The answer is {first.answer}."
    chosen, rejected = [good, "1 + 1 = 3.</think>The answer is 3."], ["2 + 2 = 5.</think>The answer is 5.", "2 + 2 ="]
    rows, _ = pairs.make_pairs(PairsStageConfig(template="think"), chosen, rejected, problems, ("think/sft@aa", "longmino@bb"))
    assert rows[0]["chosen"] == [{"role": "assistant", "reasoning": first.steps[-1], "content": f"The answer is {first.answer}."}]
    assert rows[0]["rejected"] == [{"role": "assistant", "reasoning": "2 + 2 = 5.", "content": "The answer is 5."}]
    assert rows[1]["chosen"] == [procedural_math.assistant_turn(problems[1], "think")]  # the model failed: the reference
    assert rows[1]["chosen"][0]["reasoning"] and rows[1]["chosen"][0]["content"].startswith("The answer is")
    assert rows[1]["rejected"] == [{"role": "assistant", "reasoning": "2 + 2 =", "content": ""}]  # never closed
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = chat_template("think")
    rendered = tokenizer.apply_chat_template(rows[0]["prompt"] + rows[0]["chosen"], tokenize=False)
    assert rendered.endswith(f"<|im_start|>assistant\n<think>{good}<|im_end|>\n")


def _artifact(stage, kind, path, fingerprint):
    return InputArtifact(stage, kind, fingerprint, str(path), path.parent, TrainStageConfig(model=ModelConfig()), {})


def test_the_stage_writes_dolci_pairs_naming_both_models(tiny_model_dir, tmp_path):
    # the artifacts hold the model under model/: link the tiny model twice
    for name in ("sft", "base"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model").symlink_to(tiny_model_dir)
    inputs = {"sft": _artifact("instruct/sft", "sft", tmp_path / "sft" / "x", "a" * 64),
              "longmino": _artifact("longmino", "longmino", tmp_path / "base" / "x", "b" * 64)}
    config = PairsStageConfig(pairs=DeltaPairsConfig(prompts=4, max_new_tokens=8, batch_size=2))
    ctx = StageContext("instruct/dpo_pairs", "dpo_pairs", config, inputs, tmp_path / "out")
    result = pairs.run(ctx)
    rows = datasets.read_records(str(tmp_path / "out" / pairs.FILE))
    assert len(rows) == result.metrics["pairs"] > 0
    assert all(r["rejected_model"] == "longmino@bbbbbbbbbbbb" and r["chosen_model"].startswith("instruct/sft@aaaaaaaaaaaa")
               for r in rows)
    models = json.loads((tmp_path / "out" / "models.json").read_text())
    assert (models["chosen"]["fingerprint"], models["rejected"]["fingerprint"]) == ("a" * 64, "b" * 64)
    kept, _ = datasets.build("dpo", compose_config(["preset=micro"]).posttrain.instruct.dpo.__class__(mixture={}), "instruct",
                             {}, None, str(tmp_path / "out" / pairs.FILE))
    assert len(kept) == len(rows)  # DPO reads them as Dolci preference rows


def test_a_zero_count_leaves_a_procedural_set_out_of_the_dpo_data(tmp_path):
    # Hydra merges a YAML/CLI dict into the configured one, so `mixture={}` keeps the configured sets;
    # a zero count is how a user trains DPO on the delta pairs alone (as the README says)
    configured = compose_config([]).posttrain.instruct.dpo.mixture
    assert configured and compose_config(["posttrain.instruct.dpo.mixture={}"]).posttrain.instruct.dpo.mixture == configured
    cfg = compose_config(["posttrain.instruct.dpo.mixture={math: 0}"]).posttrain.instruct.dpo
    pairs_file = tmp_path / pairs.FILE
    problem = procedural_math.generate(1, 5)[0]
    pairs_file.write_text(json.dumps({"prompt": [{"role": "user", "content": problem.question}],
                                      "chosen": [{"role": "assistant", "content": problem.solution}],
                                      "rejected": [{"role": "assistant", "content": "I do not know."}]}) + "\n")
    kept, _ = datasets.build("dpo", cfg, "instruct", {}, None, str(pairs_file))
    assert [row["rejected"][0]["content"] for row in kept] == ["I do not know."]
