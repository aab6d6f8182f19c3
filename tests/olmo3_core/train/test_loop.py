"""The DeepSpeed training loop as the stages launch it: resume after SIGKILL, and multi-process
training that matches one process with the same global batch."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from olmo3_core.config.schema import LaunchConfig
from olmo3_core.launch import job_command, run_job
from olmo3_core.stages.jobs import JobOutputs
from olmo3_core.train import loop

from .conftest import pretrain_job

pytestmark = pytest.mark.slow
ONE = LaunchConfig(nprocs=1)


def _losses(out: Path) -> tuple[int, list[float]]:
    """(first step of this run, its losses)."""
    history = JobOutputs.read(out).loss_history
    return history[0].step - 1, [p.loss for p in history]


def test_sigkilled_pretrain_resumes_from_its_checkpoint_onto_the_same_loss_curve(corpus, tmp_path):
    straight = tmp_path / "straight"
    run_job(loop, pretrain_job(corpus, straight), straight / "work", ONE, print)
    _, reference = _losses(straight)

    killed = tmp_path / "killed"
    job = pretrain_job(corpus, killed)
    (killed / "work").mkdir(parents=True)
    job.write(killed / "work" / "job.json")
    cmd, env = job_command(loop.__name__, killed / "work" / "job.json", ONE)
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    for line in proc.stdout:  # kill hard once the step-20 checkpoint exists and training has moved on
        if line.startswith('{"step": 22'):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (killed / "work" / "ckpt" / "latest").read_text().strip() == "step20"
    assert not (killed / "model").exists(), "a killed job must not leave a finished-looking model"

    run_job(loop, job, killed / "work", ONE, print)
    start, resumed = _losses(killed)
    assert start == 20
    np.testing.assert_allclose(resumed, reference[20:], rtol=1e-4)


def test_two_processes_match_one_process_with_the_same_global_batch(corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_job(loop, pretrain_job(corpus, one, max_steps=8, micro_batch_size=8), one / "work", ONE, print)
    run_job(loop, pretrain_job(corpus, two, max_steps=8, micro_batch_size=4), two / "work",
            LaunchConfig(nprocs=2, launcher="torchrun"), print)
    np.testing.assert_allclose(_losses(two)[1], _losses(one)[1], rtol=2e-3)


def test_job_exceeding_its_wall_clock_limit_is_killed_with_its_children(corpus, tmp_path):
    from olmo3_core.launch import JobFailed

    out = tmp_path / "slow"
    started = time.time()
    with pytest.raises(JobFailed, match="timeout_s"):
        run_job(loop, pretrain_job(corpus, out, max_steps=100000), out / "work", LaunchConfig(nprocs=1, timeout_s=15), print)
    assert time.time() - started < 40
    leftover = subprocess.run(["pgrep", "-f", str(out / "work" / "job.json")], capture_output=True, text=True).stdout
    assert leftover.strip() == ""
