"""Checkpoint curves: how the base model improved over training, stage after stage.

The base eval (every eval stage with base-training models among its inputs) follows each such model back
through the base-training stages it continued (pretrain -> midtrain (each ingredient of a soup) -> longmino,
by the upstream links of the manifests, which its own fingerprint already covers) and scores every kept checkpoint
(`train.keep_every`) of each, plus each stage's final model, on `eval.checkpoint_curve.metric_set`:
greedy accuracy (Wilson interval) and bits-per-byte of the reference (bootstrap interval), each with its
item count. A final model the eval has just scored on the same items is not scored again: its numbers
are reused.

The x axis is the *global optimizer step*: steps of the stages before plus the step within the stage, so
pretrain's steps come first and midtrain's continue where pretrain stopped. MLflow gets the metrics
`checkpoint_curve/<set>/{accuracy,bits_per_byte}` (with `_ci_low`, `_ci_high`, `_n`) and
`checkpoint_curve/tokens_seen` (cumulative over stages) logged at that step, so its UI draws the curves;
the artifact gets `checkpoint_curve.json` and two plots, the report a table.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from olmo3_core.config.schema import EvalConfig
from olmo3_core.evaluation.results import SetResult
from olmo3_core.evaluation.stats import Estimate
from olmo3_core.kinds import BASE_TRAINING, SOUP

log = logging.getLogger(__name__)
PREFIX = "checkpoint_curve"
METRICS = ("accuracy", "bits_per_byte")


@dataclass
class StageModels:
    """One base-training artifact on the curve: where it is and where its steps start."""

    manifest: dict[str, Any]
    path: Path  # local copy
    step_offset: int  # optimizer steps of the stages before it
    token_offset: int  # tokens seen in the stages before it
    steps: int
    tokens: int
    kept: list[dict[str, Any]]  # {step, tokens_seen, path}


@dataclass
class CurvePoint:
    stage: str
    checkpoint: str  # "step20" for a kept checkpoint, "final" for the stage's model
    step: int  # within the stage
    global_step: int
    tokens_seen: int  # cumulative over stages
    metrics: dict[str, Estimate]
    reused: bool  # the eval's own numbers for this final model

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "metrics": {k: dataclasses.asdict(v) for k, v in self.metrics.items()}}


def _job_outputs(path: Path) -> dict[str, Any]:
    return json.loads((path / "job_outputs.json").read_text())


def _local_copy(manifest: dict[str, Any], storage_options: dict[str, Any]) -> Path:
    """A verified local copy of an ancestor's models and job outputs (the artifact dir itself when local)."""
    from olmo3_core.artifacts import ArtifactStore
    from olmo3_core.home import local_cache_dir

    root = manifest["uri"].rsplit("/", 2)[0]
    wanted = {rel: meta for rel, meta in manifest["files"].items()
              if rel == "job_outputs.json" or rel.startswith(("model/", "checkpoints/"))}
    return ArtifactStore(root, storage_options, local_cache_dir()).materialize({**manifest, "files": wanted})


def base_stages(inputs: Iterable[Any], storage_options: dict[str, Any]) -> list[StageModels]:
    """The base-training artifacts behind the eval's base-training inputs (InputArtifacts), each once,
    in training order, with their step and token offsets. Derived checkpoint artifacts are points of
    their parent's curve, not curves of their own, and are left out."""
    from olmo3_core.lineage import read_manifest

    found: dict[str, StageModels] = {}

    def visit(manifest: dict[str, Any], path: Path | None) -> StageModels | None:
        if manifest["kind"] not in BASE_TRAINING or manifest.get("checkpoint") or "job_outputs.json" not in manifest["files"]:
            return None
        if manifest["fingerprint"] in found:
            return found[manifest["fingerprint"]]
        # every ingredient of a soup is a curve of its own; they share one schedule (the soup refuses
        # ingredients whose steps differ), so any of them gives the offsets of what follows
        before = None
        for previous in _continued(manifest):
            before = visit(previous, None) or before
        path = path or _local_copy(manifest, storage_options)
        outputs = _job_outputs(path)
        stage = StageModels(manifest, path,
                            before.step_offset + before.steps if before else 0,
                            before.token_offset + before.tokens if before else 0,
                            int(outputs["summary"]["steps"]), int(outputs["summary"]["tokens_seen"]),
                            sorted(outputs.get("kept", []), key=lambda k: k["step"]))
        found[manifest["fingerprint"]] = stage
        return stage

    def _continued(manifest: dict[str, Any]) -> Iterable[dict[str, Any]]:
        """The manifests of the base-training stages `manifest` continued from (through a soup: its ingredients)."""
        for up in manifest.get("upstream", []):
            if up["kind"] == SOUP:
                yield from _continued(read_manifest(up["uri"], storage_options))
            elif up["kind"] in BASE_TRAINING:
                yield read_manifest(up["uri"], storage_options)

    for art in inputs:
        visit(art.manifest, art.path)
    return sorted(found.values(), key=lambda s: (s.step_offset, BASE_TRAINING.index(s.manifest["kind"])))


def curve_rows(cfg: EvalConfig, sets: dict[str, list]) -> tuple[list, bool]:
    """The curve's items, and whether they are exactly the eval's own items of that set (then the final
    models' numbers can be reused)."""
    from olmo3_core.problems.evalsets import load_eval_set

    curve = cfg.checkpoint_curve
    own = cfg.sets.get(curve.metric_set, 0)
    if curve.metric_set in sets and (curve.items is None or curve.items == own):
        return sets[curve.metric_set], True
    return load_eval_set(curve.metric_set, size=curve.items or own, seed=cfg.seed), False


def checkpoint_curve(stages: list[StageModels], cfg: EvalConfig, sets: dict[str, list],
                     evaluated: dict[str, dict[str, SetResult]],
                     evaluate: Callable[[Path, EvalConfig, dict[str, list]], dict[str, SetResult]],
                     progress: Callable[[str], None] = lambda desc: None) -> list[CurvePoint]:
    """Every kept checkpoint and final model of `stages`, scored on the curve set. `evaluated`: the eval's
    own results by artifact fingerprint, reused for final models when the items are the same."""
    name = cfg.checkpoint_curve.metric_set
    rows, same_items = curve_rows(cfg, sets)
    # greedy numbers only: pass@k sampling and the lm-eval harness are the eval's, not the curve's
    light = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, samples=0), lm_eval_sets=[])
    points = []
    for stage in stages:
        todo = [(f"step{k['step']}", k["step"], k["tokens_seen"], stage.path / k["path"]) for k in stage.kept]
        todo.append(("final", stage.steps, stage.tokens, stage.path / "model"))
        for label, step, tokens, model_dir in todo:
            own = evaluated.get(stage.manifest["fingerprint"], {}).get(name) if label == "final" and same_items else None
            if own is not None and all(m in own.metrics for m in METRICS):
                metrics, reused = {m: own.metrics[m] for m in METRICS}, True
            else:
                progress(f"checkpoint curve: {stage.manifest['stage']} {label}")
                result = evaluate(model_dir, light, {name: rows})[name]
                metrics, reused = {m: result.metrics[m] for m in METRICS}, False
            points.append(CurvePoint(stage.manifest["stage"], label, step, stage.step_offset + step,
                                     stage.token_offset + tokens, metrics, reused))
    return points


def log_curve(points: list[CurvePoint], metric_set: str, tracker, out_dir: Path) -> list[Path]:
    """MLflow metrics at each point's global step, `checkpoint_curve.json` and the plots; returns the plots."""
    from olmo3_core.plots import line_plot

    for p in points:
        metrics = {f"{PREFIX}/tokens_seen": float(p.tokens_seen)}
        for m, est in p.metrics.items():
            metrics.update(est.metrics(f"{PREFIX}/{metric_set}/{m}"))
        tracker.log_metrics(metrics, step=p.global_step)
    (out_dir / f"{PREFIX}.json").write_text(json.dumps({"metric_set": metric_set, "x": "global optimizer step",
                                                        "points": [p.to_json() for p in points]}, indent=2))
    plots = []
    for m in METRICS:
        series: dict[str, tuple[list[float], list[float]]] = {}
        for p in points:
            xs, ys = series.setdefault(p.stage, ([], []))
            xs.append(p.global_step)
            ys.append(p.metrics[m].value)
        plots.append(line_plot(series, out_dir / f"{PREFIX}_{m}.png", f"{metric_set} {m} over training", "global step", m))
    return plots


def curve_report(points: list[CurvePoint], metric_set: str) -> str:
    lines = [f"#### Checkpoint curve ({metric_set})", "",
             "Every kept checkpoint and final model of the base-training stages; global step = steps of the stages "
             "before + step in the stage. Value [95% interval] (items); bits-per-byte: lower is better.", "",
             "| stage | checkpoint | global step | tokens seen | accuracy | bits_per_byte |", "|---|---|---|---|---|---|"]
    for p in points:
        note = " (eval's own)" if p.reused else ""
        lines.append(f"| {p.stage} | {p.checkpoint}{note} | {p.global_step} | {p.tokens_seen:,} | "
                     f"{p.metrics['accuracy'].format()} | {p.metrics['bits_per_byte'].format()} |")
    return "\n".join(lines) + "\n"
