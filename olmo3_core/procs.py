"""Process lifecycle of a flow run: nothing it started outlives it, and no run it opened stays RUNNING.

- `owner_tags()` are MLflow tags naming the process that opened a run (pid, host, process start
  time, so a reused pid is not mistaken for the owner); `owner_alive()` tells whether it still lives.
- `fail_runs_of_dead_owners()` (`olmo3-flow doctor`) and `end_runs_owned_by_this_process()` (a signal
  handler) mark RUNNING MLflow runs FAILED / KILLED and crash the Prefect flow and task runs named in
  their `prefect_flow_run_id` tag.
- `start_guard()` starts a small watchdog process that is signalled when its parent dies
  (PR_SET_PDEATHSIG) and then stops every process carrying the parent's marker in its environment:
  what a SIGKILLed CLI leaves behind, such as Prefect's temporary API server.
- `stop_signals_raise()` turns SIGTERM and SIGINT into a `Stopped` exception for the CLI to act on.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import psutil

OWNER_PID, OWNER_HOST, OWNER_START = "owner_pid", "owner_host", "owner_start_time"
END_REASON = "end_reason"
MARKER_ENV = "OLMO3_RUN_MARKER"
START_TIME_TOLERANCE_S = 1.0  # psutil's create_time is derived from boot time and clock ticks


def owner_tags() -> dict[str, str]:
    """Tags for an MLflow run opened by this process."""
    me = psutil.Process()
    return {OWNER_PID: str(me.pid), OWNER_HOST: socket.gethostname(), OWNER_START: f"{me.create_time():.3f}"}


def owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process named by `owner_tags` still runs; None when that cannot be known here
    (owner tags missing, or a process of another host)."""
    if not {OWNER_PID, OWNER_HOST, OWNER_START} <= tags.keys() or tags[OWNER_HOST] != socket.gethostname():
        return None
    try:
        started = psutil.Process(int(tags[OWNER_PID])).create_time()
    except psutil.NoSuchProcess:
        return False
    return abs(started - float(tags[OWNER_START])) < START_TIME_TOLERANCE_S


def running_runs(client, filter_string: str = "") -> list:
    """Every RUNNING MLflow run of every experiment, optionally narrowed by an MLflow filter."""
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    query = "attributes.status = 'RUNNING'" + (f" and {filter_string}" if filter_string else "")
    runs, token = [], None
    while True:
        page = client.search_runs(experiments, query, run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def end_runs(client, runs: Iterable, status: str, reason: str) -> list[str]:
    """Mark `runs` terminated with `status` (FAILED, KILLED) and a tag saying why; returns the
    Prefect flow run ids they name, so those can be crashed too."""
    flow_runs = []
    for run in runs:
        client.set_tag(run.info.run_id, END_REASON, reason)
        client.set_terminated(run.info.run_id, status)
        if run.data.tags.get("prefect_flow_run_id"):
            flow_runs.append(run.data.tags["prefect_flow_run_id"])
    return sorted(set(flow_runs))


def end_runs_owned_by_this_process(tracking_uri: str, reason: str) -> list[str]:
    """KILLED for every RUNNING MLflow run this process opened; returns their Prefect flow run ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    tags = owner_tags()
    mine = running_runs(client, f"tags.{OWNER_PID} = '{tags[OWNER_PID]}' and tags.{OWNER_HOST} = '{tags[OWNER_HOST]}'")
    return end_runs(client, [r for r in mine if owner_alive(r.data.tags)], "KILLED", reason)


def fail_runs_of_dead_owners(tracking_uri: str, dry_run: bool = False,
                             report: Callable[[str], None] = print) -> tuple[list[str], list[str]]:
    """FAILED for every RUNNING MLflow run whose owner process is gone (`olmo3-flow doctor`).
    Runs whose owner lives, or cannot be checked from here, are reported and left alone.
    Returns (run ids marked FAILED, Prefect flow run ids they name)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    dead = []
    for run in running_runs(client):
        tags, name = run.data.tags, run.info.run_name or run.info.run_id
        alive = owner_alive(tags)
        where = f"pid {tags.get(OWNER_PID)} on {tags.get(OWNER_HOST)}"
        if alive is None:
            report(f"run {run.info.run_id} ({name}): RUNNING, owner unknown ({where}); left as is")
        elif alive:
            report(f"run {run.info.run_id} ({name}): RUNNING, owner {where} is alive; left as is")
        else:
            report(f"run {run.info.run_id} ({name}): RUNNING but its owner {where} is gone"
                   + ("" if dry_run else "; marked FAILED"))
            dead.append(run)
    if dry_run:
        return [r.info.run_id for r in dead], []
    flow_runs = end_runs(client, dead, "FAILED", "owner process died; found by olmo3-flow doctor")
    return [r.info.run_id for r in dead], flow_runs


def crash_prefect_runs(flow_run_ids: list[str], message: str) -> list[str]:
    """Set every non-final Prefect flow run among `flow_run_ids`, and its non-final task runs, to
    Crashed. Returns the flow runs changed. Talks to the configured Prefect API (or starts Prefect's
    temporary server on the project's Prefect database)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Crashed

    changed = []
    if not flow_run_ids:  # without ids, do not start a Prefect server just to do nothing
        return changed
    with get_client(sync_client=True) as prefect:
        for flow_run_id in flow_run_ids:
            flow_run = prefect.read_flow_run(uuid.UUID(flow_run_id))
            tasks = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
            for task_run in tasks:
                if task_run.state is not None and not task_run.state.is_final():
                    prefect.set_task_run_state(task_run.id, Crashed(message=message), force=True)
            if flow_run.state is not None and not flow_run.state.is_final():
                prefect.set_flow_run_state(flow_run.id, Crashed(message=message), force=True)
                changed.append(flow_run_id)
    return changed


def marked_processes(marker: str) -> list[psutil.Process]:
    """Processes (of any parent) whose environment carries `MARKER_ENV=marker`, except this one."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARKER_ENV) == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def stop_processes(procs: list[psutil.Process], grace_s: float = 5.0, signalled: frozenset[int] = frozenset()) -> None:
    """SIGTERM (except to the pids in `signalled`, which the caller already sent one), then SIGKILL whatever
    is still alive after `grace_s`, and reap them."""
    for proc in procs:
        try:
            if proc.pid not in signalled:
                proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


def start_guard() -> subprocess.Popen:
    """Give this process a fresh marker (in its environment, so every process it starts from now on
    inherits it) and start the watchdog for it. Fresh, not inherited: a guard must never stop the
    processes of an enclosing run. Call it from the main thread: Linux sends the parent-death signal
    when the thread that started the child ends."""
    marker = os.environ[MARKER_ENV] = uuid.uuid4().hex
    return subprocess.Popen([sys.executable, "-m", "olmo3_core.procs", marker, str(os.getpid())],
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _guard(marker: str, parent_pid: int) -> None:
    """Wait for the parent's death (SIGTERM via PR_SET_PDEATHSIG), then stop every marked process.
    SIGTERM is blocked before the death signal is armed and the parent checked after, so a parent
    that dies at any moment of the guard's start is noticed and the signal cannot be lost."""
    from olmo3_core.launch import die_with_parent

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    die_with_parent(signal.SIGTERM)
    if os.getppid() == parent_pid:
        signal.sigwait({signal.SIGTERM})
    stop_processes(marked_processes(marker))


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived; a BaseException so that `except Exception` blocks let it through."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_signals_raise(on_stuck: Callable[[int], None] | None = None, grace_s: float = 20.0) -> Iterator[None]:
    """Inside: SIGTERM and SIGINT raise `Stopped` in the main thread. Prefect's flow engine, which
    bridges SIGTERM itself, marks its flow run Crashed and then re-delivers the signal to this handler.
    If the process is still alive `grace_s` after the signal (the exception was swallowed by code it
    interrupted), `on_stuck(signum)` runs from a watchdog thread: the stop happens either way."""
    def handler(signum: int, frame: Any) -> None:
        ignore_stop_signals()  # one shutdown; a second signal must not interrupt it
        if on_stuck:
            watchdog = threading.Timer(grace_s, on_stuck, args=(signum,))
            watchdog.daemon = True
            watchdog.start()
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def ignore_stop_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    _guard(sys.argv[1], int(sys.argv[2]))
