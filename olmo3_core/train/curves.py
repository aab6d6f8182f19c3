"""The LR and loss of every base-training run that led to a model, carried from artifact to artifact.

A stage sees only its direct upstream, so to plot pretrain -> midtrain (each souped ingredient) ->
longmino in one figure each base-model artifact holds its chain's curves (`chain_curves.json`): its
upstream's chain plus its own run, placed after it on one step axis. A soup joins its ingredients'
chains (they share the pretrain prefix) and adds no run of its own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from olmo3_core.config.typed import from_dict, to_dict
from olmo3_core.stages.jobs import LossPoint

FILE = "chain_curves.json"


@dataclass
class StageCurve:
    stage: str
    fingerprint: str  # which artifact: two runs may share a stage name (a cache hit built under another name)
    offset: int  # optimizer steps along the chain before this run's first step
    points: List[LossPoint] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.offset + (self.points[-1].step if self.points else 0)


@dataclass
class ChainCurves:
    curves: List[StageCurve] = field(default_factory=list)

    @property
    def end(self) -> int:
        """Where a run continuing this chain starts on the step axis (after its longest branch)."""
        return max((c.end for c in self.curves), default=0)

    def then(self, stage: str, fingerprint: str, points: list[LossPoint]) -> "ChainCurves":
        return ChainCurves([*self.curves, StageCurve(stage, fingerprint, self.end, list(points))])

    @classmethod
    def join(cls, chains: list["ChainCurves"]) -> "ChainCurves":
        """Chains that share a prefix (souped ingredients from one pretrain) with each run once, in order."""
        runs: dict[str, StageCurve] = {}
        for chain in chains:
            for curve in chain.curves:
                runs.setdefault(curve.fingerprint, curve)
        return cls(list(runs.values()))

    def write(self, artifact_dir: Path) -> None:
        (Path(artifact_dir) / FILE).write_text(json.dumps(to_dict(self), indent=2))

    @classmethod
    def read(cls, artifact_dir: Path) -> "ChainCurves":
        """An artifact from before chains were recorded (e.g. one forked from) starts the chain afresh."""
        path = Path(artifact_dir) / FILE
        return from_dict(cls, json.loads(path.read_text()), str(path)) if path.exists() else cls()

    def plot(self, out_dir: Path, title: str) -> list[Path]:
        """LR and loss along the chain, one line per run: the hand-offs (no re-warming, decay to zero) show."""
        from olmo3_core.plots import line_plot

        names = [c.stage for c in self.curves]
        label = {c.fingerprint: c.stage if names.count(c.stage) == 1 else f"{c.stage} ({c.fingerprint[:8]})"
                 for c in self.curves}
        paths = []
        for metric, file in (("lr", "lr_curve.png"), ("loss", "chain_loss_curve.png")):
            series = {label[c.fingerprint]: ([c.offset + p.step for p in c.points], [getattr(p, metric) for p in c.points])
                      for c in self.curves if c.points and all(getattr(p, metric) is not None for p in c.points)}
            paths.append(line_plot(series, Path(out_dir) / file, f"{title} {metric}", "step (across stages)", metric))
        return paths
