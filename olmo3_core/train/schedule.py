"""Learning-rate schedules of the OLMo 3 base-training stages, as pure functions of the step.

`lr_factor(cfg, s)` is the multiple of the peak LR that optimizer step `s` (0-based) uses; `s = cfg.steps`
is the LR the stage hands on (the LR its next step would use), so a stage that continues from it starts
exactly where this one stopped. Shapes follow OLMo-core's `CosWithWarmup`, `LinearWithWarmup`, `WSD` and
`ConstantWithWarmup` (src/olmo_core/optim/scheduler.py), with the warmup starting at peak / warmup_steps
rather than 0 so no step is wasted at LR 0.
"""
from __future__ import annotations

import math

from olmo3_core.config.schema import TrainConfig


def lr_factor(cfg: TrainConfig, step: int) -> float:
    warmup, total = cfg.warmup_steps, cfg.max_steps
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return 1.0 - progress
    if cfg.schedule == "wsd":
        decay_start = 1.0 - cfg.decay_fraction  # in units of post-warmup progress
        if progress <= decay_start:
            return 1.0
        return 1.0 - (1 - floor) * (progress - decay_start) / cfg.decay_fraction
    raise ValueError(f"train.schedule must be cosine, linear, wsd or constant, got {cfg.schedule!r}")


def handoff_lr(peak: float, final: float) -> float:
    """The LR a stage continuing from this one peaks at: where this one stopped, or, when it annealed to
    zero, the LR it started its decay from, so OLMo 3's long-context extension (which follows a midtraining
    that decayed to 0) warms back up to the midtraining peak (both scripts use LR 2.07e-4, pretraining's last)."""
    return final if final > 0 else peak
