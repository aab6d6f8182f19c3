"""Eval config checks that need the eval-set registry, run at compose time (before any compute)."""
from __future__ import annotations

import importlib.util

from olmo3_core.config.schema import EvalConfig
from olmo3_core.config.typed import ConfigError
from olmo3_core.kinds import BASE_TRAINING
from olmo3_core.problems.evalsets import EVAL_SETS
from olmo3_core.problems.needle import MAX_NEW_TOKENS


def check_eval_config(cfg: EvalConfig, max_positions: int | None = None) -> None:
    """Raises ConfigError naming the key; `max_positions` is the model's context (checked when given)."""
    for name in cfg.sets:
        if name not in EVAL_SETS:
            raise ConfigError(f"eval.sets.{name}: unknown eval set; known: {sorted(EVAL_SETS)}")
    for stage in cfg.compare_base_stages:
        if stage not in BASE_TRAINING[:-1]:
            raise ConfigError(f"eval.compare_base_stages: {stage!r} is not an earlier base-training stage; "
                              f"choose from {list(BASE_TRAINING[:-1])}")
    for name in cfg.lm_eval_sets:
        if cfg.sets.get(name, 0) <= 0 or name == "needle":
            raise ConfigError(f"eval.lm_eval_sets: {name!r} must be an evaluated eval set (eval.sets.{name} > 0), "
                              f"not the needle set (built per tokenizer at eval time)")
    if cfg.lm_eval_sets and importlib.util.find_spec("lm_eval") is None:
        raise ConfigError("eval.lm_eval_sets needs lm-eval installed: pip install -e '.[lmeval]'")
    curve = cfg.checkpoint_curve
    if curve.enabled:
        key = "eval.checkpoint_curve"
        if curve.metric_set not in EVAL_SETS or EVAL_SETS[curve.metric_set].scorer not in ("math", "code"):
            pass_fail = sorted(n for n, s in EVAL_SETS.items() if s.scorer in ("math", "code"))
            raise ConfigError(f"{key}.metric_set: {curve.metric_set!r} is not a pass/fail eval set; choose from {pass_fail}")
        if curve.items is None and cfg.sets.get(curve.metric_set, 0) <= 0:
            raise ConfigError(f"{key}.items is null (use eval.sets.{curve.metric_set}) but eval.sets.{curve.metric_set} "
                              f"is not evaluated: set {key}.items")
        if curve.items is not None and curve.items <= 0:
            raise ConfigError(f"{key}.items must be > 0 (or null), got {curve.items}")
    s = cfg.sampling
    for k in s.k:
        if s.samples and not 1 <= k <= s.samples:
            raise ConfigError(f"eval.sampling.k contains {k}, outside [1, eval.sampling.samples={s.samples}]: "
                              f"pass@k needs at least k samples per item")
    if s.samples and not s.k:
        raise ConfigError("eval.sampling.k is empty while eval.sampling.samples > 0: name the k of pass@k to report")
    if s.top_p > 1:
        raise ConfigError(f"eval.sampling.top_p must be <= 1, got {s.top_p}")
    if cfg.sets.get("needle", 0) > 0:
        if not cfg.needle_lengths or any(n <= 0 for n in cfg.needle_lengths):
            raise ConfigError(f"eval.needle_lengths must be positive token counts, got {list(cfg.needle_lengths)}")
        longest = max(cfg.needle_lengths) + MAX_NEW_TOKENS
        if max_positions is not None and longest > max_positions:
            raise ConfigError(f"eval.needle_lengths: {max(cfg.needle_lengths)} tokens plus the answer exceed "
                              f"model.max_position_embeddings ({max_positions})")
