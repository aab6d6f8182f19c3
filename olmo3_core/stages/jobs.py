"""What a training stage hands its subprocess job, and what the job hands back.

Each job is a dataclass written to `job.json` by the stage and read back by the job process through
the same class (`Job.read`), so both sides agree on every field and type. Both kinds of training job
write one `JobOutputs` file, read by `olmo3_core.stages.report.training_result`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, TypeVar

from olmo3_core.config.schema import ModelConfig, PosttrainStageConfig, TrainConfig
from olmo3_core.config.typed import from_dict, to_dict

J = TypeVar("J", bound="Job")


@dataclass
class TrackingRef:
    """The MLflow run a job logs to (explicit: the job runs in another process)."""

    uri: Optional[str] = None
    run_id: Optional[str] = None

    def tracker(self):
        from olmo3_core.tracking import MlflowTracker

        return MlflowTracker(self.uri, self.run_id) if self.run_id else None


class Job:
    def write(self, path: Path) -> None:
        path.write_text(json.dumps(to_dict(self), indent=2))

    @classmethod
    def read(cls: type[J], path: Path) -> J:
        return from_dict(cls, json.loads(Path(path).read_text()), str(path))


@dataclass
class TrainJob(Job):
    """A base-training job (pretrain, midtrain, longmino), run by `olmo3_core.train.loop`."""

    kind: str
    train: TrainConfig
    model: ModelConfig
    tokenizer_dir: str
    mix_dir: str
    output_dir: str
    checkpoint_dir: str
    init_model_dir: Optional[str] = None  # None: random init
    original_context: Optional[int] = None  # the upstream's sequence length, for YaRN
    init_optimizer_dir: Optional[str] = None  # upstream artifact whose optimizer/state.pt to continue from
    tracking: TrackingRef = field(default_factory=TrackingRef)


@dataclass
class PosttrainJob(Job):
    """An SFT, DPO or RLVR job (its stage's config), run by `olmo3_core.posttrain.trainers`."""

    kind: str
    config: PosttrainStageConfig
    init_model_dir: str
    output_dir: str
    work_dir: str
    storage_options: Dict[str, Any] = field(default_factory=dict)  # for user files on remote storage
    tracking: TrackingRef = field(default_factory=TrackingRef)
    pairs_file: Optional[str] = None  # DPO: the upstream dpo_pairs artifact's rows (delta learning)


@dataclass
class LossPoint:
    step: int  # optimizer steps done
    loss: float
    lr: Optional[float] = None  # the LR this step used (base training)


# Where a base-training artifact keeps what outlives the stage: a loadable HF model directory every
# `train.keep_every` steps, and the AdamW state a continuing stage starts from (`train.handoff`).
KEPT_DIR = "checkpoints"  # checkpoints/step{N}/
OPTIMIZER_STATE = "optimizer/state.pt"


@dataclass
class KeptCheckpoint:
    """A loadable HF model directory kept in a base-training artifact (`train.keep_every`)."""

    step: int  # optimizer steps done
    tokens_seen: int
    path: str  # relative to the artifact, e.g. "checkpoints/step100"


@dataclass
class JobOutputs:
    """A training job's result: scalar summary, the loss per optimizer step, and wall-clock timings.

    The summary and losses are a function of the config (`job_outputs.json`, published); timings
    differ run to run, so they go to `work/` (read by the stage, never published) and two runs of one
    config publish the same bytes."""

    summary: Dict[str, float]
    loss_history: List[LossPoint]
    timing: Dict[str, float] = field(default_factory=dict)
    precision: Optional[str] = None  # what base training ran in ("bf16" autocast or "fp32")
    kept: List[KeptCheckpoint] = field(default_factory=list)
    FILE = "job_outputs.json"
    TIMING_FILE = "work/job_timing.json"

    def write(self, out_dir: Path) -> None:
        results = {k: v for k, v in to_dict(self).items() if k != "timing"}
        (Path(out_dir) / self.FILE).write_text(json.dumps(results, indent=2))
        timing = Path(out_dir) / self.TIMING_FILE
        timing.parent.mkdir(parents=True, exist_ok=True)
        timing.write_text(json.dumps(self.timing, indent=2))

    @classmethod
    def read(cls, out_dir: Path) -> "JobOutputs":
        """Timings are empty once the artifact is published (its work/ is gone)."""
        path, timing = Path(out_dir) / cls.FILE, Path(out_dir) / cls.TIMING_FILE
        data = json.loads(path.read_text()) | {"timing": json.loads(timing.read_text()) if timing.exists() else {}}
        return from_dict(cls, data, str(path))
