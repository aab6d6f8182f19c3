"""The sft, dpo and rlvr stages: one implementation that launches the TRL job for its kind."""
from __future__ import annotations

import logging

from olmo3_core.kinds import MODEL_KINDS, PAIRS
from olmo3_core.posttrain import pairs as pairs_module
from olmo3_core.posttrain import trainers
from olmo3_core.stages import StageContext, StageResult
from olmo3_core.stages.jobs import PosttrainJob, TrackingRef
from olmo3_core.stages.report import training_result
from olmo3_core.train.health import run_gated_job

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> StageResult:
    (upstream,) = [a for a in ctx.inputs.values() if a.kind in MODEL_KINDS]  # the model this step continues from
    pairs = next(iter(ctx.inputs_of(PAIRS)), None)  # DPO with delta-learning pairs
    job = PosttrainJob(
        kind=ctx.kind,
        config=ctx.config,
        init_model_dir=str(upstream.path / "model"),
        output_dir=str(ctx.output_dir),
        work_dir=str(ctx.output_dir / "work"),
        storage_options=ctx.execution.storage_options,
        tracking=TrackingRef(ctx.tracker.tracking_uri, ctx.tracker.run_id),
        pairs_file=str(pairs.path / pairs_module.FILE) if pairs else None,
    )
    # the same launcher as base training: torchrun or the DeepSpeed launcher, `launch.nprocs`, hostfile
    run_gated_job(trainers, job, ctx.output_dir / "work", ctx.execution.launch, log.info, ctx.progress)
    return training_result(ctx)
