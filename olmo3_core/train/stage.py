"""The pretrain, midtrain and longmino stages: one implementation, three configs.

pretrain starts from random init on the pretrain mix; midtrain continues from pretrain on the
Dolmino-style mix at a lower LR; longmino continues from midtrain at a longer sequence length with
YaRN on the full-attention layers.
"""
from __future__ import annotations

import json
import logging

from olmo3_core.launch import run_job
from olmo3_core.stages import StageContext, StageResult
from olmo3_core.stages.report import log_loss_curve, metrics_table

log = logging.getLogger(__name__)
INIT_FROM = {"pretrain": None, "midtrain": "pretrain", "longmino": "midtrain"}


def run(ctx: StageContext) -> StageResult:
    data, train = ctx.input("data"), ctx.config["train"]
    upstream = ctx.input(INIT_FROM[ctx.kind]) if INIT_FROM[ctx.kind] else None
    job = {
        "kind": ctx.kind,
        "train": train,
        "model": ctx.config["model"],
        "tokenizer_dir": str(data.path / "tokenizer"),
        "mix_dir": str(data.path / "mixes" / train["mix"]),
        "init_model_dir": str(upstream.path / "model") if upstream else None,
        "original_context": upstream.manifest["config"]["train"]["seq_len"] if upstream else None,
        "output_dir": str(ctx.output_dir),
        "checkpoint_dir": str(ctx.output_dir / "work" / "checkpoints"),
        "tracking": {"uri": getattr(ctx.tracker, "tracking_uri", None), "run_id": ctx.tracker.run_id},
    }
    run_job("olmo3_core.train.loop", job, ctx.output_dir / "work", ctx.global_config.get("launch", {}),
            log.info, ctx.tracker.progress)
    summary = json.loads((ctx.output_dir / "train_summary.json").read_text())
    history = json.loads((ctx.output_dir / "loss_history.json").read_text())
    start = history["start_step"]
    log_loss_curve(ctx, list(range(start + 1, start + 1 + len(history["loss"]))), history["loss"])
    metrics = {k: summary[k] for k in ("final_loss", "tokens_seen", "tokens_per_s", "wall_s")}
    return StageResult(metrics=metrics, report_markdown=metrics_table(ctx.name, metrics))
