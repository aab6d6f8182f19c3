"""OlmoRL on TRL: centred advantages, the asymmetric clip range, and zero-variance filtering with
active sampling, on a tiny random model with stub reward functions (the verifiers are not under test)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from olmo3_core.config.schema import RLVRConfig
from olmo3_core.posttrain import olmorl

G = 4  # completions per prompt


def _trainer(model_dir, tmp_path, reward, n_prompts=8, batch_groups=2, **rlvr):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    cfg = dataclasses.replace(RLVRConfig(), num_generations=G, max_completion_length=4, **rlvr)
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 3?"}], "kind": "flat" if i % 2 else "varied"}
            for i in range(n_prompts)]
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=batch_groups * G, max_steps=1,
                      learning_rate=1e-4, use_cpu=True, bf16=False, report_to=[], seed=0, logging_steps=1,
                      save_strategy="no", disable_tqdm=True, activation_checkpointing=False,
                      num_generations=G, max_completion_length=4, **olmorl.grpo_options(cfg, use_vllm=False))
    trainer = olmorl.OlmoRLTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                                   processing_class=AutoTokenizer.from_pretrained(model_dir), args=args,
                                   train_dataset=Dataset.from_list(rows), reward_funcs=[reward],
                                   filter_zero_variance=cfg.filter_zero_variance, max_tries=cfg.max_sampling_tries)
    trainer.model.train()
    return trainer, rows


def _batch(rows, indices):
    return [dict(rows[i]) for i in indices for _ in range(G)]


def test_defaults_are_olmorl_and_every_algorithm_option_is_explicit():
    options = olmorl.grpo_options(RLVRConfig(), use_vllm=True)
    assert options["scale_rewards"] == "none" and options["loss_type"] == "dapo" and options["beta"] == 0.0
    assert (options["epsilon"], options["epsilon_high"]) == (0.2, 0.272)
    assert options["lr_scheduler_type"] == "constant"
    assert options["vllm_importance_sampling_mode"] == "token_truncate"
    assert options["vllm_importance_sampling_clip_max"] == 2.0
    group_std = olmorl.grpo_options(dataclasses.replace(RLVRConfig(), advantage_normalization="group_std",
                                                        loss_aggregation="sequence"), use_vllm=False)
    assert group_std["scale_rewards"] == "group" and group_std["loss_type"] == "grpo"


def test_centred_advantages_are_reward_minus_group_mean_without_std_division(tiny_model_dir, tmp_path):
    def reward(prompts, completions, **_):  # per group: 1, 0, 0, 0
        return [1.0 if i % G == 0 else 0.0 for i in range(len(prompts))]

    trainer, rows = _trainer(tiny_model_dir, tmp_path, reward, filter_zero_variance=False, batch_groups=1)
    out = trainer._generate_and_score_completions(_batch(rows, [0]))
    assert out["advantages"].tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])  # std would give 1.5, -0.5, ...

    trainer, rows = _trainer(tiny_model_dir, tmp_path, reward, filter_zero_variance=False, batch_groups=1,
                             advantage_normalization="group_std")
    out = trainer._generate_and_score_completions(_batch(rows, [0]))
    assert out["advantages"].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], rel=1e-3)  # /sample std 0.5


def test_clip_range_is_asymmetric(tiny_model_dir, tmp_path):
    """A token whose ratio to the sampling policy is 1.25 with positive advantage is inside the clip range
    (upper 1.272) and still pushes; at ratio 0.75 with negative advantage it is clipped (lower 0.8)."""
    def reward(prompts, completions, **_):
        return [1.0 if i % G == 0 else 0.0 for i in range(len(prompts))]

    trainer, rows = _trainer(tiny_model_dir, tmp_path, reward, filter_zero_variance=False, batch_groups=1)
    assert (trainer.epsilon_low, trainer.epsilon_high) == (0.2, 0.272)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    inputs = trainer._generate_and_score_completions(_batch(rows, [0]))
    with torch.no_grad():
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, inputs["completion_ids"].size(1))

    def clipped(ratio: float) -> tuple[float, float]:
        trainer._metrics["train"].clear()
        batch = dict(inputs, old_per_token_logps=logps - torch.log(torch.tensor(ratio)))
        trainer._compute_loss(trainer.model, batch)
        return trainer._metrics["train"]["clip_ratio/high_mean"][-1], trainer._metrics["train"]["clip_ratio/low_mean"][-1]

    assert clipped(1.25) == (0.0, 0.0)  # symmetric 0.2 would clip the positive-advantage row's tokens here
    high, _ = clipped(1.3)
    assert high > 0
    _, low = clipped(0.75)
    assert low > 0


def test_zero_variance_groups_are_dropped_and_the_batch_refilled_with_signal(tiny_model_dir, tmp_path):
    seen = []

    def reward(prompts, completions, kind, **_):  # "flat" prompts: every completion earns the same reward
        seen.append(list(kind[::G]))
        return [0.5 if k == "flat" else float(i % 2) for i, k in enumerate(kind)]

    trainer, rows = _trainer(tiny_model_dir, tmp_path, reward, n_prompts=8, batch_groups=4)
    out = trainer._generate_and_score_completions(_batch(rows, [0, 1, 2, 3]))  # prompts 1 and 3 are flat
    assert out["completion_ids"].size(0) == out["prompt_ids"].size(0) == out["advantages"].size(0) == 4 * G
    groups = out["advantages"].view(-1, G)
    assert (groups.abs().sum(1) > 0).all()  # only groups with non-zero reward variance
    assert out["num_items_in_batch"] == out["completion_mask"].sum()
    refill = trainer.last_refill
    assert refill.tries >= 2 and refill.short == 0
    assert refill.groups_sampled - refill.groups_filtered == 4 and refill.groups_filtered >= 2
    assert seen[0] == ["varied", "flat", "varied", "flat"] and all(len(s) <= 2 for s in seen[1:])
    assert trainer._metrics["train"]["active_sampling/filtered_fraction"][-1] == refill.groups_filtered / refill.groups_sampled


def test_active_sampling_gives_up_after_max_tries_and_masks_the_missing_groups(tiny_model_dir, tmp_path, capsys):
    def reward(prompts, completions, kind, **_):
        return [0.5 if k == "flat" else float(i % 2) for i, k in enumerate(kind)]

    trainer, rows = _trainer(tiny_model_dir, tmp_path, reward, n_prompts=8, batch_groups=2, max_sampling_tries=1)
    out = trainer._generate_and_score_completions(_batch(rows, [0, 1]))
    assert out["advantages"].size(0) == 2 * G
    assert out["completion_mask"][G:].sum() == 0 and out["completion_mask"][:G].sum() > 0  # the flat group: no gradient
    assert trainer.last_refill.short == 1
    assert "active sampling gave up after 1 tries (rlvr.max_sampling_tries): 1 of 2 groups have non-zero reward variance" in capsys.readouterr().out
