"""Where shard work runs: a local process pool by default, or a Dask cluster, behind one Executor API.

Worker processes are spawned, not forked: the stage may run inside a threaded orchestrator (Prefect
runs tasks in threads) and after the tokenizer's thread pool has started, where fork can deadlock.
They die with the process that owns the pool (PR_SET_PDEATHSIG), so a killed flow leaves no workers.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

from olmo3_core.data.config import DataConfig
from olmo3_core.launch import die_with_parent

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def make_executor(cfg: DataConfig) -> Iterator[Executor]:
    if cfg.executor.kind == "dask":
        from distributed import Client, LocalCluster

        cluster = None if cfg.executor.address else LocalCluster(
            n_workers=cfg.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cfg.executor.address or cluster)
        try:
            yield client.get_executor()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_die_with_owner, initargs=(os.getpid(),)) as pool:
        yield pool


def _die_with_owner(owner_pid: int) -> None:
    """Pool worker initializer: killed when the pool's owner dies, or exit now if it already has.
    (Linux signals the death of the thread that spawned the worker: the one using the pool.)"""
    die_with_parent()
    if os.getppid() != owner_pid:
        os._exit(1)


def map_ordered(executor: Executor, fn: Callable[[T], R], tasks: Sequence[T],
                progress: Callable[[int, int, str], None], desc: str) -> list[R]:
    """`fn` over `tasks` in parallel, results in task order, progress reported as each finishes."""
    futures = {executor.submit(fn, task): i for i, task in enumerate(tasks)}
    results: list[R] = [None] * len(tasks)  # type: ignore[list-item]
    for done, future in enumerate(as_completed(futures), 1):
        results[futures[future]] = future.result()
        progress(done, len(tasks), desc)
    return results
