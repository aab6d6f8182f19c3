"""The local stack as a team would use it: `olmo3-flow stack up`, `prefect deploy --all`, a deployment
run watched to completion by a process worker, the run visible in the MLflow server, `stack down`
leaving no process behind. Each test gets its own project home and free loopback ports.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from olmo3_cli import stack

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_OVERRIDES = ["preset=micro", "stages=[data,pretrain]"]  # the full flow is tested elsewhere


@pytest.fixture
def home(stack_home) -> Path:
    return stack_home


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=REPO, env=env or dict(os.environ),
                            capture_output=True, text=True, timeout=timeout)
    print(f"$ {shlex.join(args)}\n{result.stdout}{result.stderr}")
    return result


def _stack_env(home: Path) -> dict[str, str]:
    """The environment a user gets from `source <home>/stack/env.sh`."""
    lines = (home / "stack" / "env.sh").read_text().splitlines()
    return {**os.environ, **dict(shlex.split(line)[1].split("=", 1) for line in lines)}


def _post(url: str, body: dict) -> object:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _marked_processes(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(stack.MARKER) == str(home / "stack"):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _completed_flow_run(api: str) -> dict:
    runs = _post(f"{api}/flow_runs/filter", {"deployments": {"name": {"any_": ["tiny-cpu"]}}})
    assert len(runs) == 1, runs
    assert runs[0]["state_type"] == "COMPLETED", runs[0]["state"]
    return runs[0]


def _mlflow_runs_of(tracking_uri: str, flow_run_id: str) -> list[dict]:
    experiment = json.loads(urllib.request.urlopen(
        f"{tracking_uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=olmo3-flow", timeout=30).read())
    found = _post(f"{tracking_uri}/api/2.0/mlflow/runs/search", {
        "experiment_ids": [experiment["experiment"]["experiment_id"]],
        "filter": f"tags.prefect_flow_run_id = '{flow_run_id}'"})
    return found.get("runs", [])


@pytest.mark.slow
def test_deployment_runs_on_the_local_stack(home):
    assert _cli("olmo3-flow", "stack", "up").returncode == 0
    pids = {name: state["pid"] for name, state in stack.status().items()}
    again = _cli("olmo3-flow", "stack", "up")
    assert again.returncode == 0 and again.stdout.count("already running") == 3
    assert {name: state["pid"] for name, state in stack.status().items()} == pids
    assert _cli("olmo3-flow", "stack", "status").returncode == 0

    env = _stack_env(home)
    assert _cli("prefect", "deploy", "--all", env=env).returncode == 0
    watched = _cli("prefect", "deployment", "run", "model-flow/tiny-cpu", "--param",
                   f"overrides={json.dumps(RUN_OVERRIDES)}", "--watch", "--watch-timeout", "1200",
                   env=env, timeout=1300)
    assert watched.returncode == 0 and "Completed" in watched.stdout

    flow_run = _completed_flow_run(env["PREFECT_API_URL"])
    runs = _mlflow_runs_of(env["MLFLOW_TRACKING_URI"], flow_run["id"])
    names = {r["info"]["run_name"]: r for r in runs}
    assert {flow_run["name"], "data", "pretrain"} <= set(names), sorted(names)  # the parent is named like the flow run
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    parent = names[flow_run["name"]]["info"]["run_id"]
    child_tags = {t["key"]: t["value"] for t in names["pretrain"]["data"]["tags"]}
    assert child_tags["mlflow.parentRunId"] == parent

    assert _cli("olmo3-flow", "stack", "down").returncode == 0
    assert not any(psutil.pid_exists(pid) for pid in pids.values())
    assert _marked_processes(home) == []
    assert _cli("olmo3-flow", "stack", "status").returncode == 1


def test_up_refuses_a_taken_port(home):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", stack.PREFECT.port()))
        squatter.listen()
        result = _cli("olmo3-flow", "stack", "up")
    assert result.returncode == 1
    assert "already in use" in result.stderr and stack.PREFECT.port_env in result.stderr
    assert _marked_processes(home) == []


def test_failed_up_names_the_log_and_stops_what_it_started(home):
    with pytest.raises(stack.StackError, match="prefect.log"):
        stack.up(timeout_s=0.5)
    assert _marked_processes(home) == []
    assert not any(state["alive"] for state in stack.status().values())
