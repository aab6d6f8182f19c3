"""Issue 9: nothing is left running, no run stays RUNNING, no secret is stored.

Tests that look at machine-wide state only look at processes they started: the processes a test
launches carry `OLMO3_TEST_MARKER=<fresh uuid>` in their environment, which every process they start
(Prefect's server, pool workers, training jobs) inherits, or are children of such a process.
"""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from olmo3_cli.main import main
from olmo3_core.home import default_tracking_uri
from olmo3_core.procs import OWNER_HOST, OWNER_PID, OWNER_START, owner_tags

REPO = Path(__file__).resolve().parents[2]
TEST_MARKER = "OLMO3_TEST_MARKER"


def _marked(marker: str) -> list[psutil.Process]:
    """Live processes started (directly or not) by a process this test launched with `marker`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TEST_MARKER) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _python(script: str, marker: str, home: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, TEST_MARKER: marker, "PYTHONPATH": os.pathsep.join(sys.path)}
    if home is not None:  # a project home of its own, not the test session's
        env["OLMO3_HOME"] = str(home)
        for var in ("PREFECT_HOME", "MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
            env.pop(var, None)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)


def _alive(proc: psutil.Process) -> bool:
    try:  # is_running also checks the start time, so a reused pid does not count
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(procs: list[psutil.Process]) -> bool:
    return not any(_alive(p) for p in procs)


# --- processes die with their owner -----------------------------------------------------------------

def test_data_pool_workers_die_with_the_process_that_owns_the_pool(wait_for):
    marker = uuid.uuid4().hex
    owner = _python("""
        import time
        from olmo3_core.data.config import DataConfig
        from olmo3_core.data.executor import make_executor
        with make_executor(DataConfig(workers=2)) as pool:
            busy = [pool.submit(time.sleep, 120) for _ in range(2)]
            print("ready", flush=True)
            time.sleep(120)
    """, marker)
    try:
        assert owner.stdout.readline().strip() == "ready"

        def pool_workers():
            found = [p for p in psutil.Process(owner.pid).children() if "spawn_main" in " ".join(p.cmdline())]
            return found if len(found) == 2 else None

        workers = wait_for(pool_workers, 30, "two pool workers")
        owner.kill()
        owner.wait()
        wait_for(lambda: _gone(workers), 10, "the pool workers to die with their owner")
    finally:
        _kill(_marked(marker))


def test_guard_stops_what_a_killed_process_started(wait_for):
    """A process killed with SIGKILL cannot clean up; its guard stops what it started, even a
    process in its own session that would not die with its parent (like Prefect's temporary server)."""
    marker = uuid.uuid4().hex
    owner = _python("""
        import subprocess, time
        from olmo3_core.procs import start_guard
        start_guard()
        sleeper = subprocess.Popen(["sleep", "120"], start_new_session=True)
        print(sleeper.pid, flush=True)
        time.sleep(120)
    """, marker)
    try:
        sleeper = psutil.Process(int(owner.stdout.readline()))
        owner.kill()
        owner.wait()
        wait_for(lambda: _gone([sleeper]), 15, "the orphaned sleeper to be stopped")
        wait_for(lambda: not _marked(marker), 15, "the guard itself to exit")
    finally:
        _kill(_marked(marker))


# --- olmo3-flow doctor -------------------------------------------------------------------------------

def _running_prefect_flow_run() -> str:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    @flow(name="doctor-probe")
    def probe():
        pass

    with get_client(sync_client=True) as prefect:
        return str(prefect.create_flow_run(probe, state=Running()).id)


def _prefect_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        return prefect.read_flow_run(uuid.UUID(flow_run_id)).state.type.value


def test_doctor_fails_runs_whose_owner_died_and_only_those(capsys):
    client = MlflowClient(default_tracking_uri())
    experiment = client.create_experiment(f"doctor-{uuid.uuid4().hex[:8]}")
    sleeper = subprocess.Popen(["sleep", "60"])
    dead = {OWNER_PID: str(sleeper.pid), OWNER_HOST: socket.gethostname(),
            OWNER_START: f"{psutil.Process(sleeper.pid).create_time():.3f}"}
    sleeper.kill()
    sleeper.wait()
    flow_run_id = _running_prefect_flow_run()
    runs = {
        "dead": client.create_run(experiment, tags={**dead, "prefect_flow_run_id": flow_run_id}),
        "pid_reused": client.create_run(experiment, tags={**owner_tags(), OWNER_START: "1000.000"}),
        "alive": client.create_run(experiment, tags=owner_tags()),
        "untagged": client.create_run(experiment),
        "other_host": client.create_run(experiment, tags={**dead, OWNER_HOST: "another-host.invalid"}),
    }

    def statuses():
        return {name: client.get_run(run.info.run_id).info.status for name, run in runs.items()}

    try:
        assert main(["doctor", "--dry-run"]) == 0
        assert set(statuses().values()) == {"RUNNING"}, "--dry-run only reports"
        assert "would mark 2 MLflow run(s) FAILED" in capsys.readouterr().out
        assert main(["doctor"]) == 0
        assert statuses() == {"dead": "FAILED", "pid_reused": "FAILED", "alive": "RUNNING", "untagged": "RUNNING",
                              "other_host": "RUNNING"}
        assert _prefect_state(flow_run_id) == "CRASHED"
        out = capsys.readouterr().out
        assert "marked 2 MLflow run(s) FAILED and 1 Prefect flow run(s) Crashed" in out
    finally:
        for run in runs.values():
            if client.get_run(run.info.run_id).info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "FINISHED")


# --- the CLI under SIGTERM and SIGKILL ----------------------------------------------------------------

def _cli(home: Path, marker: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OLMO3_HOME": str(home), TEST_MARKER: marker}
    for var in ("PREFECT_HOME", "MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        env.pop(var, None)
    with open(home.parent / "cli.log", "a") as log:
        return subprocess.Popen([sys.executable, "-m", "olmo3_cli.main", *args], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def _mlflow_statuses(home: Path) -> dict[str, str]:
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {f"{r.info.run_name}/{r.info.run_id[:6]}": r.info.status for r in runs}


def _prefect_states(home: Path) -> list[str]:
    db = sqlite3.connect(home / "prefect" / "prefect.db")
    try:
        return [row[0] for table in ("flow_run", "task_run") for row in db.execute(f"select state_type from {table}")]
    finally:
        db.close()


def _job_running(marker: str) -> bool:
    return any("job.json" in " ".join(p.cmdline()) for p in _marked(marker))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopped_cli_ends_every_process_it_started_and_every_run(tmp_path, signum, wait_for):
    home, marker = tmp_path / "home", uuid.uuid4().hex
    cli = _cli(home, marker, "run", "preset=micro", "stages=[pretrain]", "pretrain.max_steps=100000",
                 "pretrain.anneal_stop_step=null")
    try:
        wait_for(lambda: _job_running(marker), 600, "the training job to start")
        time.sleep(3)  # into training, past the job's start-up
        cli.send_signal(signum)
        assert cli.wait(timeout=60) in (128 + signum, -signum), (tmp_path / "cli.log").read_text()[-3000:]
        wait_for(lambda: not _marked(marker), 15, "every process of the stopped run to end")
    finally:
        _kill(_marked(marker))
        if cli.poll() is None:
            cli.kill()
    statuses = _mlflow_statuses(home)
    assert any(name.startswith("pretrain/") for name in statuses), statuses
    assert "RUNNING" not in statuses.values(), statuses
    states = _prefect_states(home)
    assert states and "RUNNING" not in states and "PENDING" not in states, states


@pytest.mark.slow
def test_sigkilled_cli_leaves_no_worker_and_doctor_fails_its_runs(tmp_path, wait_for):
    home, marker = tmp_path / "home", uuid.uuid4().hex
    # the tiny preset's data config: its pool lives for about half a minute, time enough to kill the CLI in it
    cli = _cli(home, marker, "run", "preset=micro", "data=default", "stages=[data]")

    def pool_workers():
        return [p for p in _marked(marker) if "spawn_main" in " ".join(p.cmdline())]

    try:
        workers = wait_for(pool_workers, 600, "the data stage's pool workers")
        time.sleep(1)
        workers = pool_workers()
        cli.kill()
        cli.wait()
        wait_for(lambda: _gone(workers), 10, "the pool workers to die with the CLI")
        wait_for(lambda: not _marked(marker), 20, "every process of the killed run to end")
    finally:
        _kill(_marked(marker))
    statuses = _mlflow_statuses(home)
    assert "RUNNING" in statuses.values(), f"the killed run could not end its runs: {statuses}"
    assert "RUNNING" in _prefect_states(home)

    doctor = _cli(home, marker, "doctor")
    try:
        assert doctor.wait(timeout=300) == 0, (tmp_path / "cli.log").read_text()[-3000:]
    finally:
        _kill(_marked(marker))
    statuses = _mlflow_statuses(home)
    assert statuses and set(statuses.values()) == {"FAILED"}, statuses
    states = _prefect_states(home)
    assert "RUNNING" not in states and "CRASHED" in states, states


# --- no secret at rest --------------------------------------------------------------------------------

def _files_containing(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """Every file under `root` (SQLite databases and their WAL files included) holding one of `needles`."""
    hits: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found = [n for n in needles if n.encode() in data]
            if found:
                hits[str(path.relative_to(root))] = found
    return hits


@pytest.mark.slow
def test_canary_credentials_reach_no_store(tmp_path):
    """Canaries where credentials may go (the environment), where the CLI refuses them (overrides), and
    where only the library path lets them through (model_flow called directly): no store under the
    home holds one, and the CLI's output does not either."""
    home, marker = tmp_path / "home", uuid.uuid4().hex
    env_canaries = {"AWS_ACCESS_KEY_ID": "AKIACANARY0ENV0KEY0ID", "AWS_SECRET_ACCESS_KEY": "canary-env-secret-access-key",
                    "AWS_SESSION_TOKEN": "canary-env-session-token"}
    refused = "canary-refused-override"
    in_values = ["canary-url-password", "canary-bearer-token", "canary-account-key"]
    os.environ.update(env_canaries)
    try:
        cli = _cli(home, marker, "run", "preset=micro", "stages=[data]", f"+storage.storage_options.password={refused}")
        assert cli.wait(timeout=120) == 2
        cli = _cli(home, marker, "run", "preset=micro", "stages=[data]")
        assert cli.wait(timeout=600) == 0, (tmp_path / "cli.log").read_text()[-3000:]
        library = _python(f"""
            from olmo3_core.home import configure_environment
            configure_environment()  # Prefect under the home, as the CLI does; before Prefect is imported
            from olmo3_flows.model_flow import model_flow
            model_flow(overrides=["preset=micro", "stages=[data]",
                "+data.storage_options.client_kwargs.endpoint_url=http://olmo:{in_values[0]}@127.0.0.1:9",
                "+data.storage_options.headers.Authorization='Bearer {in_values[1]}'",
                "+data.storage_options.connection='AccountName=olmo;AccountKey={in_values[2]};'"])
        """, marker, home)
        assert library.wait(timeout=600) == 0
    finally:
        for var in env_canaries:
            os.environ.pop(var)
        _kill(_marked(marker))
    assert "refusing to run" in (tmp_path / "cli.log").read_text()
    statuses = _mlflow_statuses(home)
    assert len(statuses) >= 4 and set(statuses.values()) == {"FINISHED"}, statuses
    assert not _files_containing(tmp_path, [*env_canaries.values(), refused])
    # The library path's overrides are Prefect flow parameters (which is why the CLI refuses them), so
    # Prefect's database holds them; every other store must be clean.
    hits = _files_containing(home, in_values)
    assert hits and all(path.startswith("prefect/") for path in hits), hits


@pytest.mark.slow
def test_two_runs_starting_at_once_on_a_fresh_home_both_succeed(tmp_path):
    home, marker = tmp_path / "home", uuid.uuid4().hex
    runs = [_cli(home, marker, "run", "preset=micro", "stages=[data]") for _ in range(2)]
    try:
        codes = [run.wait(timeout=600) for run in runs]
    finally:
        _kill(_marked(marker))
    assert codes == [0, 0], (tmp_path / "cli.log").read_text()[-5000:]
    statuses = _mlflow_statuses(home)
    # each run: its parent run (named after its Prefect flow run) and its data stage run (one builds, one reuses)
    assert sum(n.startswith("data/") for n in statuses) == 2 and len(statuses) == 4, statuses
    assert set(statuses.values()) == {"FINISHED"}
