"""A build lock left by a killed process must not hang the next training job."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from olmo3_core.jit_ops import jit_build_guard

# What a training job does first: DeepSpeed's process group, which builds or loads its shared-memory op.
INIT = """
import deepspeed
from olmo3_core.jit_ops import preload_deepspeed_ops
preload_deepspeed_ops()
deepspeed.init_distributed(dist_backend="gloo", verbose=False)
print("initialized", flush=True)
"""


def _built_op_dir() -> Path:
    from torch.utils.cpp_extension import get_default_build_root
    return next(Path(get_default_build_root()).glob("*/deepspeed_shm_comm"), Path("/nonexistent"))


def test_a_stale_build_lock_left_by_a_killed_process_does_not_hang_deepspeed_init(tmp_path):
    extensions = tmp_path / "torch_extensions"
    built = _built_op_dir()
    if built.is_dir():  # reuse this machine's build (timestamps kept, so ninja has nothing to do)
        shutil.copytree(built, extensions / "deepspeed_shm_comm", symlinks=True)
    (extensions / "deepspeed_shm_comm").mkdir(parents=True, exist_ok=True)
    stale = extensions / "deepspeed_shm_comm" / "lock"
    stale.touch()  # what a builder killed mid-build leaves behind
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions), "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0"}
    started = time.time()
    done = subprocess.run([sys.executable, "-c", INIT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "initialized" in done.stdout
    assert not stale.exists()
    assert time.time() - started < 590


def test_the_guard_serializes_builders_and_is_released_when_its_holder_dies(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time\nfrom olmo3_core.jit_ops import jit_build_guard\n"
        "with jit_build_guard():\n    print('held', flush=True)\n    time.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        (tmp_path / "op").mkdir()
        (tmp_path / "op" / "lock").touch()  # a live builder's lock: must survive while the guard is held
        time.sleep(0.5)
        assert (tmp_path / "op" / "lock").exists()
        holder.kill()  # dies holding the guard: the kernel releases the flock
        holder.wait()
        started = time.time()
        with jit_build_guard():
            assert not (tmp_path / "op" / "lock").exists()
        assert time.time() - started < 30
    finally:
        holder.kill()


def test_two_ranks_of_one_job_meet_while_loading_the_op(tmp_path):
    """The ranks' rendezvous must not happen under the build lock (one rank holding it at the rendezvous
    while the other waits for it deadlocked a 2-process SFT job)."""
    from olmo3_core.launch import free_port

    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", INIT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                   "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
             for r in (0, 1)]
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 and "initialized" in out for p, out in zip(procs, outputs)), outputs
