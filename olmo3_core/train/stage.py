"""The pretrain, midtrain and longmino stages: one implementation, three configs.

pretrain starts from random init on the pretrain mix; midtrain continues from pretrain on the
Dolmino-style mix, by default from pretrain's final LR and AdamW state with a linear decay to zero;
longmino continues from midtrain (or from the soup of several midtrain runs, `olmo3_core.soup`) at a
longer sequence length with YaRN on the full-attention layers. Each artifact holds `model/`,
`optimizer/state.pt` (what the next stage continues from), its chain's LR and loss curves
(`chain_curves.json`) and any kept checkpoints (`checkpoints/step{N}/`).
"""
from __future__ import annotations

import logging

from olmo3_core.config.schema import TrainStageConfig
from olmo3_core.stages import StageContext, StageResult
from olmo3_core.stages.jobs import JobOutputs, TrackingRef, TrainJob
from olmo3_core.stages.report import training_result
from olmo3_core.train import loop
from olmo3_core.train.curves import ChainCurves
from olmo3_core.train.health import run_gated_job

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> StageResult:
    config: TrainStageConfig = ctx.config
    data = ctx.input("data")
    # the model it continues from: the previous base-training stage or a soup (None: random init)
    upstream = next((a for a in ctx.inputs.values() if a.kind != "data"), None)
    job = TrainJob(
        kind=ctx.kind,
        train=config.train,
        model=config.model,
        tokenizer_dir=str(data.path / "tokenizer"),
        mix_dir=str(data.path / "mixes" / config.train.mix),
        output_dir=str(ctx.output_dir),
        checkpoint_dir=str(ctx.output_dir / "work" / "checkpoints"),
        init_model_dir=str(upstream.path / "model") if upstream else None,
        original_context=upstream.config.trained_context if upstream else None,
        # the upstream's optimizer/state.pt: its AdamW moments and hand-off LR (train.continue_from_upstream)
        init_optimizer_dir=str(upstream.path) if upstream and config.train.continue_from_upstream else None,
        tracking=TrackingRef(ctx.tracker.tracking_uri, ctx.tracker.run_id),
    )
    run_gated_job(loop, job, ctx.output_dir / "work", ctx.execution.launch, log.info, ctx.progress)
    result = training_result(ctx)
    outputs = JobOutputs.read(ctx.output_dir)
    result.report_markdown += f"\n\nprecision: {outputs.precision}; peak LR {outputs.summary['peak_lr']:.4g}, " \
                              f"final LR {outputs.summary['final_lr']:.4g}"
    if outputs.kept:
        result.report_markdown += "\n\nkept checkpoints: " + ", ".join(
            f"`{k.path}` ({k.tokens_seen:,} tokens)" for k in outputs.kept)
    chain = (ChainCurves.read(upstream.path) if upstream else ChainCurves()).then(ctx.name, ctx.fingerprint,
                                                                                 outputs.loss_history)
    chain.write(ctx.output_dir)
    for path in chain.plot(ctx.output_dir, ctx.name):
        ctx.tracker.log_artifact(path, "plots")
    return result
