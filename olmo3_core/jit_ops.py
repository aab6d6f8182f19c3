"""Torch's JIT-built C++ ops without the hang of a stale build lock.

DeepSpeed builds a C++ op on first use (on CPU, `deepspeed_shm_comm`, at `init_distributed`) through
`torch.utils.cpp_extension`, and every later process re-checks the build under the same lock. That lock
is a *file* that torch deletes when it is done: a process killed while holding it (a stopped flow, a
timeout, a SIGKILLed job) leaves the file behind, and every later process sleeps on it forever (seen:
a whole CI run's training jobs asleep on `deepspeed_shm_comm/lock`).

Here every process of this project builds or loads such ops under an `flock`, which the kernel releases
when its holder dies. Whoever holds it knows that no other process of this project is building, so a
torch lock file it finds was left by a dead process and is removed. (A process outside this project that
builds into the same extensions directory at the same moment is not covered: point
`TORCH_EXTENSIONS_DIR` elsewhere for it.)

Only the build/load runs under the lock, never the process group's rendezvous: the ranks of one job
must meet, and a rank waiting for the lock while another holds it at the rendezvous would deadlock
(seen: 2-process SFT). `preload_deepspeed_ops` loads the op first; DeepSpeed then finds it cached.
"""
from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def extensions_root() -> Path:
    """Where torch builds JIT extensions: `$TORCH_EXTENSIONS_DIR/<op>/` or `<default>/py3X_<device>/<op>/`."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def stale_build_locks(root: Path) -> list[Path]:
    return sorted({*root.glob("*/lock"), *root.glob("*/*/lock")})


@contextmanager
def jit_build_guard() -> Iterator[None]:
    """Run a JIT op build/load (e.g. `deepspeed.init_distributed`) under the project's build flock,
    after removing the lock files that dead builders left."""
    root = extensions_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".olmo3-build.flock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            for lock in stale_build_locks(root):
                log.warning("removing the stale torch extension build lock %s (its builder died)", lock)
                lock.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def preload_deepspeed_ops() -> None:
    """Build or load, under the guard, the op `deepspeed.init_distributed` loads (DeepSpeed caches it per
    process), so the initialization that follows, a collective, runs outside the lock."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")  # None where no such op (CUDA)
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return
    with jit_build_guard():
        builder.load()
