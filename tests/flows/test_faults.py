"""Faults a team meets: a crashed training job, concurrent flows. (Stopped and killed flows, leaked
secrets: test_reliability.py; concurrent first starts: tests/olmo3_core/test_home_lock.py.)"""
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from olmo3_core.stages.jobs import JobOutputs
from olmo3_flows.model_flow import model_flow
from olmo3_core.home import default_storage_root

pytestmark = pytest.mark.slow


def _training_pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if int(p) != os.getpid()]


def test_crashed_training_job_is_retried_by_prefect_and_resumes_from_its_checkpoint(wait_for):
    overrides = ["preset=micro", "stages=[pretrain]", "pretrain.max_steps=60", "pretrain.anneal_stop_step=null", "pretrain.checkpoint_every=10",
                 "pretrain.seed=11", "orchestration.retries=1"]
    root = Path(default_storage_root()) / "pretrain"

    def crash_once_checkpointed():
        latest = wait_for(lambda: next(iter(root.glob("*/work/checkpoints/latest")), None), 600, "a checkpoint")
        job = latest.parents[1] / "job.json"
        pids = wait_for(lambda: _training_pids(str(job)), 60, "the training process")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=crash_once_checkpointed, daemon=True)
    killer.start()
    uris = model_flow(overrides=overrides)
    killer.join(timeout=5)
    history = JobOutputs.read(Path(uris["pretrain"])).loss_history
    first_step = history[0].step
    assert first_step > 10, "the retry must resume from the checkpoint, not restart"
    assert [p.step for p in history] == list(range(first_step, 61))


def test_concurrent_flows_with_different_configs_do_not_clobber_each_other():
    results, errors = {}, []

    def run(seed):
        try:
            results[seed] = model_flow(overrides=["preset=micro", "stages=[pretrain]", f"pretrain.seed={seed}"])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (21, 22)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results[21]["data"] == results[22]["data"], "the shared data stage is built once"
    assert results[21]["pretrain"] != results[22]["pretrain"]
    for seed in (21, 22):
        manifest = json.loads((Path(results[seed]["pretrain"]) / "artifact.json").read_text())
        assert manifest["config"]["train"]["seed"] == seed
