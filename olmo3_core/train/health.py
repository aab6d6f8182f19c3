"""Health gates of training jobs: a loss that is not finite, or above `train.loss_ceiling` once warmup
is over, stops the job with an error naming the step, so its stage fails and nothing is published
(the runner publishes only when the stage function returns).

The job and its stage are two processes: the job writes the gate's message next to its `job.json`
and exits non-zero; the stage turns the launcher's `JobFailed` back into that message.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from olmo3_core.launch import JobFailed, run_job

FAILURE_FILE = "health_gate.txt"


class LossGateFailed(RuntimeError):
    """A training job's loss failed a health gate; the model must not be published."""


def check_loss(kind: str, step: int, loss: float, ceiling: float | None = None, warmup_steps: int = 0) -> None:
    """Raise `LossGateFailed` for a non-finite loss at any step, or one above `ceiling` after warmup
    (`step` counts optimizer steps done, so step `warmup_steps + 1` is the first one after it)."""
    if not math.isfinite(loss):
        raise LossGateFailed(f"{kind}: loss is {loss} at step {step}; not publishing")
    if ceiling is not None and step > warmup_steps and loss > ceiling:
        raise LossGateFailed(f"{kind}: loss {loss:.4g} at step {step} is above train.loss_ceiling={ceiling} "
                             f"(warmup ended at step {warmup_steps}); not publishing")


def gated_main(train: Callable[[Path], object]) -> None:
    """A job's entry point: `train(job_file)`; a failed gate exits 1 after leaving its message for the stage.
    Every rank sees the same (all-reduced) loss and stops; rank 0 writes the message."""
    job_file = Path(sys.argv[-1])
    try:
        train(job_file)
    except LossGateFailed as exc:
        if int(os.environ.get("RANK", 0)) == 0:
            (job_file.parent / FAILURE_FILE).write_text(str(exc))
        print(str(exc), file=sys.stderr, flush=True)
        sys.exit(1)


def run_gated_job(module: ModuleType, job, work_dir: Path, launch, log: Callable[[str], None], progress=None) -> None:
    """`run_job`, raising `LossGateFailed` with the job's own message when a health gate stopped it."""
    failure = work_dir / FAILURE_FILE
    failure.unlink(missing_ok=True)  # a retry must not report the previous attempt's failure
    try:
        run_job(module, job, work_dir, launch, log, progress)
    except JobFailed as exc:
        if failure.exists():
            raise LossGateFailed(failure.read_text()) from exc
        raise
