"""What training stages show people: a loss-curve plot in MLflow and a metrics table for Prefect."""
from __future__ import annotations

from olmo3_core.plots import line_plot
from olmo3_core.stages.context import StageContext, StageResult
from olmo3_core.stages.jobs import JobOutputs


def metrics_table(title: str, metrics: dict[str, float]) -> str:
    rows = "".join(f"| {key} | {value:.4g} |\n" for key, value in metrics.items())
    return f"### {title}\n\n| metric | value |\n|---|---|\n{rows}"


def training_result(ctx: StageContext) -> StageResult:
    """The stage result of a finished training job: its summary as metrics, its loss curve as a plot."""
    outputs = JobOutputs.read(ctx.output_dir)
    if outputs.loss_history:
        curve = ([p.step for p in outputs.loss_history], [p.loss for p in outputs.loss_history])
        path = line_plot({"loss": curve}, ctx.output_dir / "loss_curve.png", f"{ctx.name} loss", "step", "loss")
        ctx.tracker.log_artifact(path, "plots")
    metrics = {**outputs.summary, **outputs.timing}
    return StageResult(metrics=metrics, report_markdown=metrics_table(ctx.name, metrics))
