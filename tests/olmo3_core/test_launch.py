import sys

import pytest

from olmo3_core.config.schema import LaunchConfig
from olmo3_core.launch import job_command, validate_hostfile


def test_single_process_gets_the_distributed_environment(tmp_path):
    cmd, env = job_command("m", tmp_path / "job.json", LaunchConfig(nprocs=1))
    assert cmd == [sys.executable, "-m", "m", str(tmp_path / "job.json")]
    assert env["WORLD_SIZE"] == "1" and env["RANK"] == "0" and env["MASTER_ADDR"] == "127.0.0.1"


def test_multi_process_uses_torchrun_or_the_deepspeed_launcher(tmp_path):
    cmd, _ = job_command("m", tmp_path / "j", LaunchConfig(nprocs=2, launcher="torchrun"))
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node" in cmd and "2" in cmd
    cmd, _ = job_command("m", tmp_path / "j", LaunchConfig(nprocs=2, launcher="deepspeed"))
    assert cmd[0] == "deepspeed" and cmd[cmd.index("--num_gpus") + 1] == "2" and "--module" in cmd


def test_hostfile_is_validated_before_a_multi_node_launch(tmp_path):
    good = tmp_path / "hostfile"
    good.write_text("# two nodes\nworker-1 slots=8\nworker-2 slots=8\n")
    assert validate_hostfile(str(good)) == 16
    cmd, _ = job_command("m", tmp_path / "j", LaunchConfig(nprocs=1, hostfile=str(good)))
    assert cmd[cmd.index("--hostfile") + 1] == str(good)
    bad = tmp_path / "bad"
    bad.write_text("worker-1 slots=8\nworker-2 8\n")
    with pytest.raises(ValueError, match=r"bad:2: 'worker-2 8'"):
        job_command("m", tmp_path / "j", LaunchConfig(hostfile=str(bad)))
    with pytest.raises(ValueError, match="does not exist"):
        validate_hostfile(str(tmp_path / "missing"))
