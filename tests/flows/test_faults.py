"""Faults a team meets: a crashed training job, a cancelled flow, concurrent flows, leaked secrets."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from olmo3_core.stages.jobs import JobOutputs
from olmo3_flows.model_flow import model_flow
from olmo3_core.home import default_storage_root, default_tracking_uri

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _training_pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if int(p) != os.getpid()]


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_crashed_training_job_is_retried_by_prefect_and_resumes_from_its_checkpoint():
    overrides = ["preset=micro", "stages=[pretrain]", "pretrain.max_steps=60", "pretrain.checkpoint_every=10",
                 "pretrain.seed=11", "orchestration.retries=1"]
    root = Path(default_storage_root()) / "pretrain"

    def crash_once_checkpointed():
        latest = _wait_for(lambda: next(iter(root.glob("*/work/checkpoints/latest")), None), 600, "a checkpoint")
        job = latest.parents[1] / "job.json"
        pids = _wait_for(lambda: _training_pids(str(job)), 60, "the training process")
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


def test_cancelled_flow_leaves_no_training_process(tmp_path):
    env = {**os.environ, "OLMO3_HOME": str(tmp_path / "home")}
    env.pop("PREFECT_HOME", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "olmo3_cli.main", "run", "preset=micro", "stages=[pretrain]", "pretrain.max_steps=100000"]
    flow = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    pattern = str(tmp_path / "home" / "artifacts" / "pretrain")
    _wait_for(lambda: _training_pids(pattern), 600, "the training job to start")
    flow.send_signal(signal.SIGTERM)  # what a worker does to a cancelled flow run's process
    try:
        flow.wait(timeout=60)
        _wait_for(lambda: not _training_pids(pattern), 30, "the training job to die with its flow")
    finally:
        try:  # Prefect's temporary API server of that CLI run lives in the same process group
            os.killpg(flow.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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


def test_credentials_never_reach_mlflow_or_prefect_logs():
    secret = "hunter2-not-a-real-secret"
    overrides = ["preset=micro", "stages=[data]", f"+data.storage_options.secret={secret}",
                 "+data.storage_options.key=AKIAFAKEKEY123"]
    uris = model_flow(overrides=overrides)
    client = MlflowClient(default_tracking_uri())
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=500)
    for run in runs:
        blob = json.dumps({"params": run.data.params, "tags": run.data.tags})
        assert secret not in blob and "AKIAFAKEKEY123" not in blob
    manifest = (Path(uris["data"]) / "artifact.json").read_text()
    assert secret not in manifest

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    async def logs():
        async with get_client() as prefect:
            return await prefect.read_logs(LogFilter(), limit=200)

    import asyncio

    messages = " ".join(log.message for log in asyncio.run(logs()))
    assert messages and secret not in messages
