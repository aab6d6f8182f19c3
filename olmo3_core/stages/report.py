"""What training stages show people: a loss-curve plot in MLflow and a metrics table for Prefect."""
from __future__ import annotations

from olmo3_core.plots import line_plot
from olmo3_core.stages.context import StageContext


def log_loss_curve(ctx: StageContext, steps: list[int], losses: list[float]) -> None:
    if steps:
        path = line_plot({"loss": (steps, losses)}, ctx.output_dir / "loss_curve.png", f"{ctx.name} loss", "step", "loss")
        ctx.tracker.log_artifact(path, "plots")


def metrics_table(title: str, metrics: dict[str, float]) -> str:
    rows = "".join(f"| {key} | {value:.4g} |\n" for key, value in metrics.items())
    return f"### {title}\n\n| metric | value |\n|---|---|\n{rows}"
