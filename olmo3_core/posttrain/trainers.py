"""Post-training job: TRL's SFTTrainer, DPOTrainer or GRPOTrainer on one upstream model, run as
`python -m olmo3_core.posttrain.trainers job.json` (a `PosttrainJob`) by the launcher.

The chat template comes from `olmo3_core.chat` (the single definition), and is saved with the model.
A logged loss that is not finite stops the job (`olmo3_core.train.health`): nothing is saved or published.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import TrainerCallback

from olmo3_core.chat import EOS_TOKEN, IM_END, chat_template
from olmo3_core.config.schema import RLVRConfig
from olmo3_core.jit_ops import preload_deepspeed_ops
from olmo3_core.launch import die_with_parent, report_progress
from olmo3_core.posttrain import datasets
from olmo3_core.problems.verifiers import get_verifier
from olmo3_core.stages.jobs import JobOutputs, LossPoint, PosttrainJob
from olmo3_core.train.health import check_loss, gated_main


class ProgressCallback(TrainerCallback):
    """Trainer logs -> tracker metrics, progress lines and the loss history; a non-finite loss stops
    training with `LossGateFailed` (after it is logged, so the tracker shows it)."""

    def __init__(self, tracker, prefix: str):
        self.tracker, self.prefix, self.history = tracker, prefix, []

    def on_log(self, args, state, control, logs=None, **kwargs):
        scalars = {f"{self.prefix}/{k}": float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if self.tracker and scalars:
            self.tracker.log_metrics(scalars, step=state.global_step)
        if "loss" in (logs or {}):
            check_loss(self.prefix, state.global_step, float(logs["loss"]))
            self.history.append(LossPoint(state.global_step, float(logs["loss"])))
        desc = " ".join(f"{k}={logs[k]:.3g}" for k in ("loss", "reward", "active_sampling/filtered_fraction") if isinstance((logs or {}).get(k), (int, float)))
        report_progress(state.global_step, state.max_steps, desc)


def deepspeed_config(zero_stage: int) -> dict[str, Any]:
    """DeepSpeed's config for a TRL job, handed to TrainingArguments(deepspeed=...): accelerate's DeepSpeed
    plugin fills the "auto" values from the TrainingArguments, so batch sizes, clipping and precision have
    one source (transformers `integrations/deepspeed.py`, HfTrainerDeepSpeedConfig)."""
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        # ZeRO-3: gather the full weights when the job saves the model (else the saved shards are empty)
        "zero_optimization": {"stage": zero_stage, **({"stage3_gather_16bit_weights_on_model_save": True} if zero_stage == 3 else {})},
        "bf16": {"enabled": "auto"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def world_size(job: PosttrainJob) -> int:
    """Processes of this job, as the launcher started them; the plan fixed it in the step's config."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world != job.config.world_size:
        raise RuntimeError(f"{job.kind}: launched with {world} processes, but the step's config was planned for "
                           f"{job.config.world_size} (launch.nprocs / launch.hostfile)")
    return world


def common_args(job: PosttrainJob) -> dict[str, Any]:
    """TrainingArguments shared by the three trainers. `batch_size` is global: each of the job's processes
    takes its share (the plan checked it divides), so 2 processes follow 1 process's loss curve."""
    cfg = job.config.step
    return {
        "output_dir": str(Path(job.work_dir) / "trainer"),
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.batch_size // world_size(job),
        "gradient_accumulation_steps": 1,
        "deepspeed": deepspeed_config(cfg.zero_stage),
        "learning_rate": cfg.lr,
        "lr_scheduler_type": "cosine",
        "logging_steps": 1,
        "logging_nan_inf_filter": False,  # the default logs a NaN/inf step as the window's mean, hiding it from the gate
        "save_strategy": "no",
        "report_to": [],
        "seed": cfg.seed,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": torch.cuda.is_available(),
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "activation_checkpointing": False,  # TRL turns it on by default; tiny models only pay its cost
    }


def reward_functions(rows: list[dict[str, Any]]) -> list[Callable]:
    """One reward function per verifier in the data, so TRL logs each verifier's reward separately.

    A function returns None for rows judged by another verifier (TRL ignores those)."""

    def make(name: str) -> Callable:
        verify = get_verifier(name)

        def reward(prompts, completions, ground_truth, verifier, **_):
            texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
            return [verify(t, json.loads(gt)) if v == name else None for t, gt, v in zip(texts, ground_truth, verifier)]

        reward.__name__ = f"{name}_reward"
        return reward

    return [make(name) for name in sorted({r["verifier"] for r in rows})]


def vllm_available(cfg: RLVRConfig) -> bool:
    if not (cfg.use_vllm and torch.cuda.is_available()):
        return False
    try:
        import vllm  # noqa: F401
    except ImportError:
        print("use_vllm is set but vllm is not installed: generating with transformers", flush=True)
        return False
    return True


def build_trainer(job: PosttrainJob, model, tokenizer, rows: list[dict[str, Any]]):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, GRPOConfig, SFTConfig, SFTTrainer

    from olmo3_core.posttrain import olmorl

    kind, cfg = job.kind, job.config.step
    if kind == "rlvr":  # verifiers take strings, dicts or lists: one JSON column keeps Arrow happy
        rows = [{**row, "ground_truth": json.dumps(row["ground_truth"])} for row in rows]
    if kind == "dpo":  # the Dolci columns only: delta pairs carry their models' names, slip pairs do not
        rows = [{key: row[key] for key in datasets.REQUIRED["dpo"]} for row in rows]
    dataset, args = Dataset.from_list(rows), common_args(job)
    if kind == "sft":  # warmup as a step count: what an int means does not depend on the transformers version
        config = SFTConfig(**args, warmup_steps=math.ceil(cfg.warmup_ratio * cfg.max_steps), max_length=cfg.max_length,
                           assistant_only_loss=cfg.assistant_only_loss, packing=cfg.packing)
        return SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    if kind == "dpo":
        config = DPOConfig(**args, beta=cfg.beta, loss_type=[cfg.loss_type], max_length=cfg.max_length)
        return DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    config = GRPOConfig(**(args | olmorl.grpo_options(cfg, vllm_available(cfg))), num_generations=cfg.num_generations,
                        max_completion_length=cfg.max_completion_length, log_completions=False)
    return olmorl.OlmoRLTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                reward_funcs=reward_functions(rows), filter_zero_variance=cfg.filter_zero_variance,
                                max_tries=cfg.max_sampling_tries)


def train(job: PosttrainJob) -> dict[str, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    die_with_parent()
    torch.manual_seed(job.config.step.seed)
    tokenizer = AutoTokenizer.from_pretrained(job.init_model_dir)
    tokenizer.chat_template = chat_template(job.config.template)
    model = AutoModelForCausalLM.from_pretrained(job.init_model_dir, dtype=torch.float32)
    rows, decontam = datasets.build(job.kind, job.config.step, job.config.template, job.storage_options,
                                    job.config.decontam, job.pairs_file)
    main = int(os.environ.get("RANK", 0)) == 0
    if main:  # every process builds the same rows; one says so
        print(f"{job.kind}: {len(rows)} rows, template {job.config.template}; decontamination checked {decontam.checked} "
              f"rows, removed {decontam.removed} {decontam.removed_by_set or ''} {decontam.removed_by_origin or ''}", flush=True)
        for note in decontam.notes:
            print(f"{job.kind}: {note}", flush=True)
    preload_deepspeed_ops()  # TrainingArguments(deepspeed=...) initializes DeepSpeed, which loads a C++ op
    trainer = build_trainer(job, model, tokenizer, rows)
    # every process sees the same (all-reduced) logs and runs the loss gate; one logs to the tracker
    callback = ProgressCallback(job.tracking.tracker() if main else None, job.kind)
    trainer.add_callback(callback)
    t0 = time.time()
    result = trainer.train()
    out = Path(job.output_dir) / "model"
    # under ZeRO-3 the weights are sharded: gathering them is collective, so every process calls this
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    summary = {"final_loss": callback.history[-1].loss if callback.history else float("nan"),
               "train_loss": float(result.training_loss), "steps": float(result.global_step), "rows": float(len(rows)),
               **decontam.summary()}
    timing = {"wall_s": time.time() - t0}
    if main:  # one writer for the published files
        model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
        model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids([IM_END, EOS_TOKEN])
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        # the model and tokenizer only: `trainer.save_model` adds training_args.bin, a pickle holding the absolute
        # work path, so two project homes would publish different bytes (the step's config is in the manifest)
        model.save_pretrained(str(out), state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(str(out))
        JobOutputs(summary, callback.history, timing).write(Path(job.output_dir))
    trainer.accelerator.wait_for_everyone()
    return summary | timing


def main() -> None:
    gated_main(lambda job_file: train(PosttrainJob.read(job_file)))


if __name__ == "__main__":
    main()
