"""Run a training job as a subprocess: one process, torchrun (one node, or several through its c10d
rendezvous), or the DeepSpeed launcher (hostfile for multi-node). Output is streamed line by line; `PROGRESS done total desc` lines become progress
updates. The job runs in its own process group with a wall-clock limit, and dies with its parent
(PR_SET_PDEATHSIG), so a timeout, a cancelled flow or a killed worker never leaves orphans.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from olmo3_core.config.schema import LaunchConfig
    from olmo3_core.stages.jobs import Job

PROGRESS_PREFIX = "PROGRESS "
PR_SET_PDEATHSIG = 1


class JobFailed(RuntimeError):
    pass


_RUNNING: set[subprocess.Popen] = set()  # jobs of this process, killed if the process is told to stop
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set once the process is stopping: no job may start after that


def terminate_running_jobs() -> int:
    """Kill every job this process launched and has not reaped, and launch no more. A flow that is
    cancelled or crashes calls this: its jobs run in worker threads that would otherwise keep the
    process alive, and a stage retried by Prefect after its job was killed would start a new one."""
    with _RUNNING_LOCK:
        _STOPPING.set()
        jobs = list(_RUNNING)
    for proc in jobs:
        _kill_group(proc)
    return len(jobs)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to signal this process when its parent exits (no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except OSError:
        pass


def report_progress(done: int, total: int, desc: str = "") -> None:
    """Called inside a job: a line the launcher turns into a progress update."""
    print(f"{PROGRESS_PREFIX}{done} {total} {desc}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HOSTFILE_LINE = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+)\s+slots=(?P<slots>[1-9][0-9]*)$")


def validate_hostfile(path: str) -> int:
    """Check a DeepSpeed hostfile (`hostname slots=N` per line, # comments) before launching on it;
    returns the total number of slots (processes)."""
    if not Path(path).is_file():
        raise ValueError(f"launch.hostfile {path} does not exist")
    entries = [line.split("#")[0].strip() for line in Path(path).read_text().splitlines()]
    slots = 0
    for number, line in enumerate(entries, 1):
        if not line:
            continue
        match = HOSTFILE_LINE.match(line)
        if not match:
            raise ValueError(f"launch.hostfile {path}:{number}: {line!r} is not 'hostname slots=N'")
        slots += int(match["slots"])
    if not slots:
        raise ValueError(f"launch.hostfile {path} lists no hosts")
    return slots


def check_multi_node(launch: LaunchConfig) -> None:
    """The rules of the `launch` keys a type cannot express (ValueError naming the keys); compose checks
    them before compute, `job_command` again for launch configs built in code."""
    multi_node = launch.nnodes > 1
    if multi_node and not (launch.master_addr and launch.master_port):
        raise ValueError(f"launch.nnodes={launch.nnodes} needs launch.master_addr and launch.master_port: the address "
                         f"and port of node 0, where every node's torchrun meets (c10d rendezvous)")
    if launch.node_rank >= launch.nnodes:
        raise ValueError(f"launch.node_rank ({launch.node_rank}) must be < launch.nnodes ({launch.nnodes})")
    if multi_node and launch.hostfile:
        raise ValueError("launch.nnodes > 1 (torchrun on each node) and launch.hostfile (DeepSpeed starts every node "
                         "from this one) are two ways to go multi-node: set one of them")


def job_command(module: str, job_file: Path, launch: LaunchConfig) -> tuple[list[str], dict[str, str]]:
    """The command (and extra environment) that runs `python -m module job_file` under the launcher.

    - a hostfile: the DeepSpeed launcher, which ssh-starts `nprocs`-per-slot processes on its hosts;
    - `nnodes > 1`: torchrun with c10d rendezvous at master_addr:master_port; every node runs this same
      command with its own `node_rank` (global ranks follow the rendezvous, data sharding follows rank);
    - `nprocs > 1` on one node: torchrun (or DeepSpeed's launcher with launcher=deepspeed);
    - one process: plain `python -m`, with the distributed environment set here."""
    check_multi_node(launch)
    multi_node = launch.nnodes > 1
    port = launch.master_port or free_port()
    addr = launch.master_addr or "127.0.0.1"
    nprocs = launch.nprocs
    if launch.hostfile or (nprocs > 1 and launch.launcher == "deepspeed"):
        cmd = ["deepspeed", "--master_port", str(port)]
        if launch.hostfile:
            validate_hostfile(launch.hostfile)
            cmd += ["--hostfile", launch.hostfile]
            if launch.master_addr:  # else DeepSpeed takes the hostfile's first host
                cmd += ["--master_addr", launch.master_addr]
        else:
            cmd += ["--num_gpus", str(nprocs)]
        return cmd + ["--module", module, str(job_file)], {}
    if multi_node:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(launch.nnodes), "--node_rank",
                str(launch.node_rank), "--nproc_per_node", str(nprocs), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"{addr}:{port}", "--rdzv-id", f"olmo3-{Path(job_file).parent.name}",
                "-m", module, str(job_file)], {}
    if nprocs > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nprocs),
                "--master_addr", addr, "--master_port", str(port), "-m", module, str(job_file)], {}
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": addr, "MASTER_PORT": str(port)}
    return [sys.executable, "-m", module, str(job_file)], env


def run_job(module: ModuleType, job: Job, work_dir: Path, launch: LaunchConfig,
            log: Callable[[str], None], on_progress: Callable[[int, int, str], None] | None = None) -> None:
    """Write `job` to `work_dir/job.json`, run `python -m <module> job.json` under the chosen launcher.

    `module` is the job's module object (not a name), so the stage's import graph, and with it the
    stage's fingerprint, covers the code the job runs."""
    work_dir.mkdir(parents=True, exist_ok=True)
    job_file = work_dir / "job.json"
    job.write(job_file)
    name = module.__name__
    cmd, extra_env = job_command(name, job_file, launch)
    env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
    log(f"launching: {' '.join(cmd)}")
    with _RUNNING_LOCK:
        if _STOPPING.is_set():
            raise JobFailed(f"not launching {name}: this process is stopping")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True, preexec_fn=die_with_parent)
        _RUNNING.add(proc)
    timed_out = threading.Event()

    def kill_group() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(float(launch.timeout_s), kill_group)
    timer.start()
    try:
        for line in proc.stdout:
            _route(line.rstrip("\n"), log, on_progress)
        proc.wait()
    finally:  # an exception here (cancellation) must not leave the job running
        timer.cancel()
        if proc.poll() is None:
            _kill_group(proc)
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    if timed_out.is_set():
        raise JobFailed(f"{name} exceeded launch.timeout_s={launch.timeout_s} and was killed")
    if proc.returncode != 0:
        raise JobFailed(f"{name} exited with code {proc.returncode}; see the log above")


def _route(line: str, log: Callable[[str], None], on_progress) -> None:
    if line.startswith(PROGRESS_PREFIX):
        parts = line[len(PROGRESS_PREFIX):].split(" ", 2)
        if on_progress and len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            on_progress(int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else "")
        return
    if line.strip():
        log(line)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
