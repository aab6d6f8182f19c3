"""Multi-node pretraining simulated on this machine: two torchrun launchers (`--nnodes 2`, node ranks 0
and 1, one process each) meet through the c10d rendezvous on loopback and train one model; the loss
curve must match one process with the same global batch."""
import os
import subprocess

import numpy as np
import pytest

from olmo3_core.config.schema import LaunchConfig
from olmo3_core.launch import free_port, job_command, run_job
from olmo3_core.stages.jobs import JobOutputs
from olmo3_core.train import loop

from tests.olmo3_core.train.conftest import corpus, pretrain_job  # noqa: F401  (corpus is a fixture)

pytestmark = pytest.mark.slow


def test_two_nodes_of_one_process_match_one_process_with_the_same_global_batch(corpus, tmp_path):  # noqa: F811
    one, two = tmp_path / "one", tmp_path / "two"
    run_job(loop, pretrain_job(corpus, one, max_steps=6, micro_batch_size=8), one / "work", LaunchConfig(nprocs=1), print)

    job_file = two / "work" / "job.json"
    job_file.parent.mkdir(parents=True)
    pretrain_job(corpus, two, max_steps=6, micro_batch_size=4).write(job_file)
    port = free_port()
    nodes = []
    for rank in (0, 1):
        launch = LaunchConfig(nprocs=1, nnodes=2, node_rank=rank, master_addr="127.0.0.1", master_port=port)
        cmd, env = job_command(loop.__name__, job_file, launch)
        assert cmd[cmd.index("--node_rank") + 1] == str(rank) and cmd[cmd.index("--nnodes") + 1] == "2"
        log = (tmp_path / f"node{rank}.log").open("w")
        nodes.append((subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), log))
    try:
        codes = [proc.wait(timeout=600) for proc, _ in nodes]
    finally:
        for proc, log in nodes:  # only the launchers this test started
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
            log.close()
    logs = "\n".join((tmp_path / f"node{r}.log").read_text() for r in (0, 1))
    assert codes == [0, 0], logs
    reference = [p.loss for p in JobOutputs.read(one).loss_history]
    two_nodes = [p.loss for p in JobOutputs.read(two).loss_history]
    assert len(two_nodes) == 6
    # each node saw half of every global batch: with micro batch 4 alone, the curve would differ
    np.testing.assert_allclose(two_nodes, reference, rtol=2e-3)
