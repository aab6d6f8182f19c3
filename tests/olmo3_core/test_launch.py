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


def test_multi_node_torchrun_meets_at_the_c10d_rendezvous_of_node_0(tmp_path):
    launch = LaunchConfig(nprocs=4, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29400)
    cmd, env = job_command("m", tmp_path / "work" / "job.json", launch)
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", "1",
                   "--nproc_per_node", "4", "--rdzv-backend", "c10d", "--rdzv-endpoint", "10.0.0.1:29400",
                   "--rdzv-id", "olmo3-work", "-m", "m", str(tmp_path / "work" / "job.json")]
    assert env == {}  # torchrun sets RANK/WORLD_SIZE/MASTER_* for its workers


@pytest.mark.parametrize("launch, message", [
    (LaunchConfig(nnodes=2, master_port=29400), "needs launch.master_addr and launch.master_port"),
    (LaunchConfig(nnodes=2, master_addr="10.0.0.1"), "needs launch.master_addr and launch.master_port"),
    (LaunchConfig(nnodes=2, node_rank=2, master_addr="h", master_port=1), r"launch.node_rank \(2\) must be < launch.nnodes \(2\)"),
])
def test_multi_node_settings_that_cannot_meet_are_refused_naming_the_key(tmp_path, launch, message):
    with pytest.raises(ValueError, match=message):
        job_command("m", tmp_path / "j", launch)


def test_deepspeed_hostfile_launch_is_this_exact_command(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=8\nnode-b slots=8  # second node\n")
    cmd, env = job_command("olmo3_core.train.loop", tmp_path / "job.json",
                           LaunchConfig(nprocs=8, launcher="deepspeed", hostfile=str(hostfile), master_port=29500))
    assert cmd == ["deepspeed", "--master_port", "29500", "--hostfile", str(hostfile), "--module",
                   "olmo3_core.train.loop", str(tmp_path / "job.json")]
    assert env == {}
    cmd, _ = job_command("olmo3_core.train.loop", tmp_path / "job.json",
                         LaunchConfig(hostfile=str(hostfile), master_addr="node-a", master_port=29500))
    assert cmd[:7] == ["deepspeed", "--master_port", "29500", "--hostfile", str(hostfile), "--master_addr", "node-a"]
    with pytest.raises(ValueError, match="two ways to go multi-node"):
        job_command("m", tmp_path / "j", LaunchConfig(hostfile=str(hostfile), nnodes=2, master_addr="a", master_port=1))


def test_multi_node_settings_are_refused_at_compose_before_compute():
    from olmo3_core.config.compose import compose_config
    from olmo3_core.config.typed import ConfigError

    with pytest.raises(ConfigError, match="launch.nnodes=2 needs launch.master_addr and launch.master_port"):
        compose_config(["preset=micro", "launch.nnodes=2"])


def test_world_size_counts_the_processes_of_every_node(tmp_path):
    from olmo3_core.plan import world_size

    assert world_size(LaunchConfig(nprocs=4, nnodes=2, master_addr="h", master_port=1)) == 8
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=8\nnode-b slots=8\n")
    assert world_size(LaunchConfig(nprocs=1, hostfile=str(hostfile))) == 16
