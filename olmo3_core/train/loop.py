"""The base-model training loop: one readable function, run as `python -m olmo3_core.train.loop job.json`
(a `TrainJob`) under one process, torchrun or the DeepSpeed launcher.

DeepSpeed owns the optimizer step, gradient clipping, ZeRO sharding and checkpoints; we own the data
order, the schedule, the precision and what a checkpoint must restore (step = data position, RNG state)
so a killed run resumes onto the same loss curve. Every step's loss passes the health gates
(`train.health`) before anything is checkpointed or saved.

The recipe is OLMo 3's (see `TrainConfig`): typed LR schedules that a stage can continue from its
upstream's LR and AdamW state (`train.handoff`), z-loss, weight decay on all but the embeddings, bf16
autocast over fp32 master weights where the hardware has native bf16 (`train.runtime`), optional
intra-document attention masking, and HF checkpoints kept every `keep_every` steps.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from olmo3_core.jit_ops import preload_deepspeed_ops
from olmo3_core.config.schema import TrainConfig
from olmo3_core.stages.jobs import KEPT_DIR, JobOutputs, KeptCheckpoint, LossPoint, TrainJob
from olmo3_core.train.handoff import OptimizerHandoff, export_state, import_state
from olmo3_core.train.health import check_loss, gated_main
from olmo3_core.train.runtime import Runtime, detect
from olmo3_core.train.schedule import handoff_lr, lr_factor


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on every parameter but the token embeddings. The OLMo 3 scripts override only
    `embeddings.weight` to weight_decay=0.0 (OptimGroupOverride in allenai/OLMo-core
    src/scripts/official/OLMo3/OLMo-3-1025-7B-pretrain-1.py): norms and the (untied) LM head are decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("embed_tokens.weight") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def deepspeed_config(train: TrainConfig, world_size: int, precision: str) -> dict[str, Any]:
    """DeepSpeed's own config format (a JSON dict by its definition). Always fp32 weights: bf16 compute
    comes from autocast, not DeepSpeed's bf16 mode, which would keep bf16 weights. The engine must be
    told (`torch_autocast`): on CUDA its forward otherwise *disables* an autocast opened around it (seen
    on an H200: "torch.autocast is enabled outside DeepSpeed but disabled within the DeepSpeed engine").
    No module is declared lower-precision-safe, so gradients are still reduced in fp32, as OLMo 3."""
    return {
        "torch_autocast": {"enabled": precision == "bf16", "dtype": "bfloat16", "lower_precision_safe_modules": []},
        "train_batch_size": train.micro_batch_size * train.grad_accum_steps * world_size,
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum_steps,
        "gradient_clipping": train.grad_clip,
        "zero_optimization": {"stage": train.zero_stage},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def lm_losses(logits: torch.Tensor, input_ids: torch.Tensor, z_coeff: float) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(next-token cross entropy, z-loss or None), both means over predicted tokens, in fp32.

    z-loss is OLMo-core's: z_loss_multiplier * mean(logsumexp(logits)^2), which keeps the softmax
    normalizer near 1 (bf16 logits stay in range)."""
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:]
    flat = logits.reshape(-1, logits.shape[-1])
    if z_coeff <= 0:
        return F.cross_entropy(flat, targets.reshape(-1)), None
    lse = torch.logsumexp(flat, dim=-1)  # shared by both terms: one pass over the vocabulary
    ce = (lse - flat.gather(1, targets.reshape(-1, 1)).squeeze(1)).mean()
    return ce, z_coeff * lse.pow(2).mean()


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


@dataclass
class Session:
    """A job set up to train: what `train` steps and what tests inspect at step 0."""

    engine: Any  # deepspeed.DeepSpeedEngine
    scheduler: torch.optim.lr_scheduler.LambdaLR
    tokenizer: Any
    runtime: Runtime
    peak_lr: float
    start: int  # first step to run (> 0 after resuming from a checkpoint)
    rank: int
    world: int


def setup(job: TrainJob) -> Session:
    """Distributed init on this process's device, the model, its AdamW (continued from the upstream's state
    when the job names one) and the schedule, wrapped by DeepSpeed; resumed from the latest checkpoint."""
    import deepspeed

    train_cfg = job.train
    train_cfg.check(job.kind, has_upstream=job.init_model_dir is not None)
    runtime = detect(train_cfg.precision, os.environ)
    if runtime.device_type == "cuda":
        torch.cuda.set_device(torch.device(runtime.device))
    preload_deepspeed_ops()  # its C++ op, under the JIT build guard: a dead builder's lock must not hang us
    deepspeed.init_distributed(dist_backend=runtime.backend, verbose=False)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    torch.manual_seed(train_cfg.seed + rank)
    model, tokenizer = build(job)
    if train_cfg.compile:
        model.compile()  # in place: parameter names (checkpoints, optimizer state) are unchanged
    upstream = OptimizerHandoff.load(Path(job.init_optimizer_dir)) if job.init_optimizer_dir else None
    peak = upstream.handoff_lr if upstream else train_cfg.lr
    optimizer = torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=peak,
                                  betas=(train_cfg.beta1, train_cfg.beta2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(train_cfg, step))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(train_cfg, world, runtime.precision))
    start = _resume(engine, Path(job.checkpoint_dir))
    if start and rank == 0:
        print(f"resumed from checkpoint at step {start}", flush=True)
    if upstream is not None and start == 0:  # a resumed run has its own optimizer state in the checkpoint
        import_state(engine, upstream)
    return Session(engine, scheduler, tokenizer, runtime, peak, start, rank, world)


def train(job: TrainJob) -> dict[str, float]:
    from olmo3_core.launch import die_with_parent, report_progress
    from olmo3_core.train.data import TokenWindows, document_positions

    die_with_parent()
    s = setup(job)
    engine, scheduler, rank, world = s.engine, s.scheduler, s.rank, s.world
    train_cfg, out = job.train, Path(job.output_dir)
    steps, accum, mbs = train_cfg.steps, train_cfg.grad_accum_steps, train_cfg.micro_batch_size
    windows = TokenWindows(Path(job.mix_dir), train_cfg.seq_len, train_cfg.seed)
    eos_id = s.tokenizer.eos_token_id
    tracker = job.tracking.tracker() if rank == 0 else None
    ckpt_dir, kept_dir = Path(job.checkpoint_dir), Path(job.checkpoint_dir).parent / "kept"
    if rank == 0:
        print(json.dumps({"device": str(engine.device), "precision": s.runtime.precision, "peak_lr": s.peak_lr}), flush=True)

    tokens_per_step = mbs * accum * world * train_cfg.seq_len
    history: list[LossPoint] = []
    t0, last_log, last_logged, start = time.time(), time.time(), s.start, s.start
    for step in range(start, steps):
        lr = scheduler.get_last_lr()[0]  # the LR this step uses
        losses, z_losses = [], []
        for micro in range(accum):
            first = (step * accum + micro) * mbs * world + rank
            batch = windows.batch(first, mbs, stride=world).to(engine.device)
            positions = document_positions(batch, eos_id) if train_cfg.document_masking else None
            with s.runtime.autocast():
                logits = engine(input_ids=batch, position_ids=positions, use_cache=False).logits
            ce, z = lm_losses(logits, batch, train_cfg.z_loss)
            engine.backward(ce if z is None else ce + z)
            engine.step()
            losses.append(ce.detach())
            z_losses.append(z.detach() if z is not None else torch.zeros((), device=ce.device))
        loss, z_loss = torch.stack(losses).mean(), torch.stack(z_losses).mean()
        if world > 1:
            both = torch.stack([loss, z_loss])
            torch.distributed.all_reduce(both)
            loss, z_loss = both / world
        done = step + 1
        history.append(LossPoint(done, float(loss), lr))
        if done % train_cfg.log_every == 0 or done == steps:
            elapsed = time.time() - last_log
            metrics = {"train/loss": float(loss), "train/lr": lr,
                       "train/tokens_per_s": (done - last_logged) * tokens_per_step / max(elapsed, 1e-9)}
            if train_cfg.z_loss > 0:
                metrics["train/z_loss"] = float(z_loss)
            last_log, last_logged = time.time(), done
            if rank == 0:
                print(json.dumps({"step": done, **{k: round(v, 6) for k, v in metrics.items()}}), flush=True)
                report_progress(done, steps, f"loss {float(loss):.3f}")
                tracker and tracker.log_metrics(metrics, step=done)
        check_loss(job.kind, done, history[-1].loss, train_cfg.loss_ceiling, train_cfg.warmup_steps)
        if train_cfg.keep_every and done % train_cfg.keep_every == 0 and done < steps and rank == 0:
            _save_atomic(engine, s.tokenizer, kept_dir / f"step{done}")
        if done % train_cfg.checkpoint_every == 0 and done < steps:
            engine.save_checkpoint(str(ckpt_dir), tag=f"step{done}", client_state={"step": done})

    wall = time.time() - t0
    final_lr = scheduler.get_last_lr()[0]
    handoff = export_state(engine, s.peak_lr, final_lr, handoff_lr(s.peak_lr, final_lr))  # collective under ZeRO
    summary = {"final_loss": history[-1].loss if history else float("nan"), "steps": float(steps),
               "resumed_from": float(start), "tokens_seen": float(steps * tokens_per_step),
               "peak_lr": s.peak_lr, "final_lr": final_lr}
    timing = {"wall_s": wall, "tokens_per_s": (steps - start) * tokens_per_step / max(wall, 1e-9)}
    if rank == 0:
        _save(engine, s.tokenizer, out / "model")
        handoff.save(out)
        kept = _publish_kept(kept_dir, out, train_cfg.keep_every, steps, tokens_per_step)
        JobOutputs(summary, history, timing, s.runtime.precision, kept).write(out)
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


def _save_atomic(engine, tokenizer, model_dir: Path) -> None:
    """`_save` to a temporary name, then rename: a kill mid-save never leaves a half-written checkpoint."""
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _save(engine, tokenizer, tmp)
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)


def _publish_kept(kept_dir: Path, out: Path, every: int, steps: int, tokens_per_step: int) -> list[KeptCheckpoint]:
    """Move the kept checkpoints from work/ (which survives a crash and a resume, and is not published) into
    the artifact. The last step's model is `model/`, so it is not kept twice."""
    if not every:
        return []
    kept = []
    for step in range(every, steps, every):
        src, rel = kept_dir / f"step{step}", f"{KEPT_DIR}/step{step}"
        if not src.is_dir():
            raise FileNotFoundError(f"kept checkpoint {src} is missing (train.keep_every={every})")
        dst = out / rel
        shutil.rmtree(dst, ignore_errors=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), dst)
        kept.append(KeptCheckpoint(step, step * tokens_per_step, rel))
    return kept


def main() -> None:
    gated_main(lambda job_file: train(TrainJob.read(job_file)))


if __name__ == "__main__":
    main()
