"""OlmoRL on TRL: GRPOConfig options for what TRL has, a small GRPOTrainer subclass for what it lacks.

OLMo 3's RL (open-instruct `open_instruct/grpo_fast.py`, recipes `scripts/train/olmo3/*rl*.sh`) departs
from textbook GRPO in ways that change results. Mapping onto TRL 1.16 (`trl/trainer/grpo_config.py`):

| OlmoRL (open-instruct flag)                        | here (`RLVRConfig`)                  | TRL                                   |
|----------------------------------------------------|--------------------------------------|---------------------------------------|
| advantages centred per group, no std division      | `advantage_normalization: centered`  | `scale_rewards="none"`                |
|   (`advantage_normalization_type centered`)        |   (`group_std`: divide by group std) |   (`"group"`)                         |
| clip higher (`clip_lower 0.2`, `clip_higher 0.272`)| `clip_epsilon_low`/`clip_epsilon_high`| `epsilon`, `epsilon_high`            |
| token-level loss (`loss_denominator token`)        | `loss_aggregation: token`            | `loss_type="dapo"` (`sequence`: grpo) |
| no KL (`beta 0.0`)                                 | `kl_beta: 0.0`                       | `beta`                                |
| truncated IS, generator vs learner (`truncated_importance_sampling_ratio_cap 2.0`) | `truncated_importance_sampling_cap` | `vllm_importance_sampling_mode="token_truncate"`, `vllm_importance_sampling_clip_max` |
| zero-std groups dropped, batch refilled (`filter_zero_std_samples`, `active_sampling`) | `filter_zero_variance`, `max_sampling_tries` | none: `OlmoRLTrainer` below |
| constant LR (`lr_scheduler_type constant`)         | `lr_scheduler: constant`             | `lr_scheduler_type`                   |

Truncated importance sampling only has an effect when a separate engine (vLLM) generates: with
transformers generation the sampler is the learner and the ratio is 1.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer

from olmo3_core.config.schema import RLVRConfig


SCALE_REWARDS = {"centered": "none", "group_std": "group"}
LOSS_TYPE = {"token": "dapo", "sequence": "grpo"}


def grpo_options(cfg: RLVRConfig, use_vllm: bool) -> dict[str, Any]:
    """Every GRPOConfig option that decides the algorithm, set explicitly (a change of TRL's defaults
    must not change our results)."""
    return {
        "scale_rewards": SCALE_REWARDS[cfg.advantage_normalization],
        "multi_objective_aggregation": "sum_then_normalize",  # one verifier per row: the sum is that verifier's reward
        "epsilon": cfg.clip_epsilon_low,
        "epsilon_high": cfg.clip_epsilon_high,
        "delta": None,  # no two-sided (INTELLECT-2) bound
        "loss_type": LOSS_TYPE[cfg.loss_aggregation],
        "importance_sampling_level": "token",
        "beta": cfg.kl_beta,
        "num_iterations": 1,  # one policy update per generation batch, as grpo_fast (num_epochs 1)
        "mask_truncated_completions": False,
        "top_entropy_quantile": 1.0,
        "entropy_coef": 0.0,
        "use_vllm": use_vllm,
        "vllm_importance_sampling_correction": cfg.truncated_importance_sampling_cap > 0,
        "vllm_importance_sampling_mode": "token_truncate",  # grpo_fast caps the per-token ratio, it does not mask
        "vllm_importance_sampling_clip_max": cfg.truncated_importance_sampling_cap or None,
        "vllm_importance_sampling_clip_min": None,
        "off_policy_mask_threshold": None,
        "lr_scheduler_type": cfg.lr_scheduler,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": None,
        "repetition_penalty": 1.0,
        "temperature": cfg.temperature,
        "shuffle_dataset": True,
    }


@dataclass
class Refill:
    """What one step's active sampling did (all processes together)."""

    groups_sampled: int  # prompt groups generated, the first batch included
    groups_filtered: int  # of those, groups whose rewards were all equal
    tries: int  # generation rounds
    short: int  # groups still missing when it gave up (0: the batch is full of signal)


def group_has_signal(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Per group of `num_generations` consecutive rewards: True when they are not all equal (NaN rows,
    judged by no verifier, are ignored; a group with fewer than two scored rows carries no signal)."""
    grouped = rewards.view(-1, num_generations)
    scored = ~torch.isnan(grouped)
    lo = torch.where(scored, grouped, torch.full_like(grouped, float("inf"))).min(dim=1).values
    hi = torch.where(scored, grouped, torch.full_like(grouped, float("-inf"))).max(dim=1).values
    return (scored.sum(dim=1) >= 2) & (hi - lo > 1e-6)


def _pad_cat(parts: list[torch.Tensor], side: str, value: float) -> torch.Tensor:
    """Concatenate along the batch dim tensors whose second dim differs, padding on `side`."""
    if parts[0].dim() < 2:
        return torch.cat(parts)
    width = max(p.size(1) for p in parts)
    padded = []
    for p in parts:
        extra = width - p.size(1)
        if extra:
            filler = torch.full((p.size(0), extra, *p.shape[2:]), value, dtype=p.dtype, device=p.device)
            p = torch.cat([filler, p] if side == "left" else [p, filler], dim=1)
        padded.append(p)
    return torch.cat(padded)


class OlmoRLTrainer(GRPOTrainer):
    """GRPOTrainer with OlmoRL's zero-variance filtering and active sampling.

    A group whose completions all earned the same reward has zero advantage under any normalization,
    so it only dilutes the token-level loss. Each generation batch keeps the groups with signal and
    samples more prompts (whole groups, from a seeded stream over the training set) until it holds as
    many groups as the configured batch, for at most `max_tries` rounds. If it gives up, the missing
    groups are zero-variance ones with their loss mask zeroed (no gradient, not counted in the token
    normalizer), and it says so in the log. Requires each process's generation batch to hold whole
    groups (checked at construction).
    """

    def __init__(self, *args, filter_zero_variance: bool = True, max_tries: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self.filter_zero_variance, self.max_tries = filter_zero_variance, max_tries
        local = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if filter_zero_variance and local % self.num_generations:
            raise ValueError(f"rlvr: zero-variance filtering needs whole groups per process: the per-process generation "
                             f"batch ({local}) is not a multiple of num_generations ({self.num_generations})")
        self._last_rewards: torch.Tensor | None = None
        self._stream: list[int] = []
        self._stream_rng = random.Random(self.args.seed * 1_000_003 + self.accelerator.process_index)
        self.last_refill: Refill | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weighted = rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = weighted.nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = float("nan")
        self._last_rewards = rewards  # gathered over processes, in process order
        return rewards_per_func

    def _more_prompts(self, groups: int) -> list[dict[str, Any]]:
        """`groups` prompts from a seeded, reshuffled-per-epoch stream, each repeated num_generations times."""
        rows = []
        for _ in range(groups):
            if not self._stream:
                self._stream = list(range(len(self.train_dataset)))
                self._stream_rng.shuffle(self._stream)
            row = self.train_dataset[self._stream.pop()]
            rows += [dict(row) for _ in range(self.num_generations)]
        return rows

    def _local_signal(self, batch_rows: int) -> torch.Tensor:
        """This process's groups with signal, from the gathered rewards of the last generation round."""
        start = self.accelerator.process_index * batch_rows
        local = self._last_rewards[start:start + batch_rows]
        return group_has_signal(local, self.num_generations)

    def _global_sum(self, value: int) -> int:
        return int(self.accelerator.gather(torch.tensor([value], device=self.accelerator.device)).sum().item())

    def _generate_and_score_completions(self, inputs):
        if not self.filter_zero_variance or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        G = self.num_generations
        need = len(inputs) // G
        kept: list[tuple[dict[str, Any], int]] = []  # (output of a round, index of a group in it)
        flat: list[tuple[dict[str, Any], int]] = []  # zero-variance groups, fillers if it gives up
        batch, tries, sampled, filtered = inputs, 0, 0, 0
        while True:
            out = super()._generate_and_score_completions(batch)
            signal = self._local_signal(len(batch)).tolist()
            tries += 1
            sampled += self._global_sum(len(signal))
            filtered += self._global_sum(signal.count(False))
            kept += [(out, g) for g, ok in enumerate(signal) if ok]
            flat += [(out, g) for g, ok in enumerate(signal) if not ok]
            missing = max(need - len(kept), 0)
            # every process generates in every round (the reward gather is collective): the most short one decides
            most_missing = int(self.accelerator.gather(torch.tensor([missing], device=self.accelerator.device)).max().item())
            if most_missing == 0 or tries >= self.max_tries:
                break
            batch = self._more_prompts(most_missing)
        short = self._global_sum(missing)
        if short and self.accelerator.is_main_process:  # the job's stdout is streamed into the stage's log
            total = need * self.accelerator.num_processes  # every process holds `need` groups
            print(f"rlvr: active sampling gave up after {tries} tries (rlvr.max_sampling_tries): {total - short} of "
                  f"{total} groups have non-zero reward variance; the other {short} are masked out of this step "
                  f"(no gradient)", flush=True)
        chosen = kept[:need] + [(out, g) for out, g in flat[:missing]]
        merged = self._merge(chosen, G, masked=[i >= need - missing for i in range(len(chosen))] if missing else None)
        self.last_refill = Refill(sampled, filtered, tries, short)
        for key, value in (("groups_sampled", sampled), ("filtered_fraction", filtered / max(sampled, 1)),
                           ("tries", tries), ("groups_short", short)):
            self._metrics["train"][f"active_sampling/{key}"].append(float(value))
        return merged

    def _merge(self, chosen: list[tuple[dict[str, Any], int]], G: int, masked: list[bool] | None) -> dict[str, Any]:
        """One generation batch from groups of several rounds: rows stacked, prompts left-padded,
        completions right-padded, the token count recomputed over all processes."""
        keys = [k for k, v in chosen[0][0].items() if isinstance(v, torch.Tensor) and v.dim() >= 1 and k != "num_items_in_batch"]
        merged: dict[str, Any] = {}
        for key in keys:
            parts = [out[key][g * G:(g + 1) * G] for out, g in chosen]
            side = "left" if key.startswith("prompt") else "right"
            value = self._tokenizer.pad_token_id if key.endswith("_ids") else 0
            merged[key] = _pad_cat(parts, side, value)
        if masked is not None:  # groups kept only to fill the batch when active sampling gave up: no gradient
            rows = torch.tensor([m for m in masked for _ in range(G)], device=merged["completion_mask"].device)
            merged["completion_mask"] = merged["completion_mask"] * (~rows).unsqueeze(1).to(merged["completion_mask"].dtype)
        loss_mask = merged["completion_mask"] * merged.get("tool_mask", 1)
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        for key, value in chosen[0][0].items():  # scalars and non-tensor fields (same for every round)
            merged.setdefault(key, value)
        return merged
