"""The sft, dpo and rlvr stages: one implementation that launches the TRL job for its kind."""
from __future__ import annotations

import json
import logging

from olmo3_core.launch import run_job
from olmo3_core.stages import StageContext, StageResult
from olmo3_core.stages.report import log_loss_curve, metrics_table

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> StageResult:
    (upstream,) = ctx.inputs.values()  # the model this step continues from
    job = {
        "kind": ctx.kind,
        "step_config": ctx.config[ctx.kind],
        "template": ctx.config["template"],
        "init_model_dir": str(upstream.path / "model"),
        "output_dir": str(ctx.output_dir),
        "work_dir": str(ctx.output_dir / "work"),
        "storage_options": ctx.global_config.get("storage", {}).get("storage_options"),
        "tracking": {"uri": getattr(ctx.tracker, "tracking_uri", None), "run_id": ctx.tracker.run_id},
    }
    launch = {**ctx.global_config.get("launch", {}), "nprocs": 1}  # TRL jobs: one process on CPU
    run_job("olmo3_core.posttrain.trainers", job, ctx.output_dir / "work", launch, log.info, ctx.tracker.progress)
    summary = json.loads((ctx.output_dir / "train_summary.json").read_text())
    history = json.loads((ctx.output_dir / "loss_history.json").read_text())
    log_loss_curve(ctx, [step for step, _ in history], [loss for _, loss in history])
    metrics = {k: float(v) for k, v in summary.items()}
    return StageResult(metrics=metrics, report_markdown=metrics_table(ctx.name, metrics))
