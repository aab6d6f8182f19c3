"""The base-model training loop: one readable function, run as `python -m olmo3_core.train.loop job.json`
(a `TrainJob`) under one process, torchrun or the DeepSpeed launcher.

DeepSpeed owns the optimizer step, gradient clipping, ZeRO sharding and checkpoints; we own the data
order, the schedule and what a checkpoint must restore (step = data position, RNG state) so a killed
run resumes onto the same loss curve. Every step's loss passes the health gates (`train.health`)
before anything is checkpointed or saved.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from olmo3_core.config.schema import TrainConfig
from olmo3_core.stages.jobs import JobOutputs, LossPoint, TrainJob
from olmo3_core.train.health import check_loss, gated_main


def lr_lambda(warmup: int, total: int, min_ratio: float):
    """Linear warmup, then cosine decay to `min_ratio` of the peak."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on norms and embeddings, as in OLMo."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embed" in name or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def deepspeed_config(train: TrainConfig, world_size: int) -> dict[str, Any]:
    """DeepSpeed's own config format (a JSON dict by its definition)."""
    return {
        "train_batch_size": train.micro_batch_size * train.grad_accum_steps * world_size,
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum_steps,
        "gradient_clipping": train.grad_clip,
        "zero_optimization": {"stage": train.zero_stage},
        "bf16": {"enabled": train.precision == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def build(job: TrainJob):
    """Model (random init or from the upstream checkpoint, with YaRN if asked) and tokenizer."""
    from transformers import AutoTokenizer, Olmo3ForCausalLM

    from olmo3_core.model import build_model, olmo3_config

    tokenizer = AutoTokenizer.from_pretrained(job.tokenizer_dir)
    ids = {"pad": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id}
    config = olmo3_config(job.model, job.train.yarn_factor, job.original_context, ids)
    if job.init_model_dir:
        model = Olmo3ForCausalLM.from_pretrained(job.init_model_dir, config=config, dtype=torch.float32)
    else:
        model = build_model(config, seed=job.train.seed)
    return model, tokenizer


def train(job: TrainJob) -> dict[str, float]:
    import deepspeed

    from olmo3_core.launch import die_with_parent, report_progress
    from olmo3_core.train.data import TokenWindows

    die_with_parent()
    deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    train_cfg, out = job.train, Path(job.output_dir)
    torch.manual_seed(train_cfg.seed + rank)
    model, tokenizer = build(job)
    steps, accum, mbs = train_cfg.max_steps, train_cfg.grad_accum_steps, train_cfg.micro_batch_size
    optimizer = torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=train_cfg.lr,
                                  betas=(train_cfg.beta1, train_cfg.beta2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(train_cfg.warmup_steps, steps, train_cfg.min_lr_ratio))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(train_cfg, world))
    windows = TokenWindows(Path(job.mix_dir), train_cfg.seq_len, train_cfg.seed)
    tracker = job.tracking.tracker() if rank == 0 else None
    ckpt_dir = Path(job.checkpoint_dir)
    start = _resume(engine, ckpt_dir)
    if start and rank == 0:
        print(f"resumed from checkpoint at step {start}", flush=True)

    tokens_per_step = mbs * accum * world * train_cfg.seq_len
    history, t0, last_log, last_logged = [], time.time(), time.time(), start
    for step in range(start, steps):
        losses = []
        for micro in range(accum):
            first = (step * accum + micro) * mbs * world + rank
            batch = windows.batch(first, mbs, stride=world)
            loss = engine(input_ids=batch, labels=batch).loss
            engine.backward(loss)
            engine.step()
            losses.append(loss.detach())
        loss = torch.stack(losses).mean()
        if world > 1:
            torch.distributed.all_reduce(loss)
            loss /= world
        history.append(float(loss))
        done = step + 1
        if done % train_cfg.log_every == 0 or done == steps:
            elapsed = time.time() - last_log
            metrics = {"train/loss": float(loss), "train/lr": scheduler.get_last_lr()[0],
                       "train/tokens_per_s": (done - last_logged) * tokens_per_step / max(elapsed, 1e-9)}
            last_log, last_logged = time.time(), done
            if rank == 0:
                print(json.dumps({"step": done, **{k: round(v, 6) for k, v in metrics.items()}}), flush=True)
                report_progress(done, steps, f"loss {float(loss):.3f}")
                tracker and tracker.log_metrics(metrics, step=done)
        check_loss(job.kind, done, history[-1], train_cfg.loss_ceiling, train_cfg.warmup_steps)
        if done % train_cfg.checkpoint_every == 0 and done < steps:
            engine.save_checkpoint(str(ckpt_dir), tag=f"step{done}", client_state={"step": done})

    wall = time.time() - t0
    summary = {"final_loss": history[-1] if history else float("nan"), "steps": float(steps), "resumed_from": float(start),
               "tokens_seen": float(steps * tokens_per_step)}
    timing = {"wall_s": wall, "tokens_per_s": (steps - start) * tokens_per_step / max(wall, 1e-9)}
    if rank == 0:
        _save(engine, tokenizer, out / "model")
        JobOutputs(summary, [LossPoint(start + i + 1, loss) for i, loss in enumerate(history)], timing).write(out)
    torch.distributed.barrier()
    return summary | timing


def _resume(engine, ckpt_dir: Path) -> int:
    """Restore model, optimizer, scheduler and step from the latest DeepSpeed checkpoint, if any."""
    if not (ckpt_dir / "latest").exists():
        return 0
    _, client_state = engine.load_checkpoint(str(ckpt_dir))
    return int((client_state or {}).get("step", 0))


def _save(engine, tokenizer, model_dir: Path) -> None:
    """A Hugging Face model directory (safetensors), loadable by `from_pretrained`."""
    module = engine.module
    module.config.use_cache = True
    module.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)


def main() -> None:
    gated_main(lambda job_file: train(TrainJob.read(job_file)))


if __name__ == "__main__":
    main()
