"""The local team stack: a Prefect server, a process worker and an MLflow tracking server on loopback,
so deployments, scheduled runs and both UIs work on one machine the way they do on a shared cluster.

    olmo3-flow stack up | down | status

Everything lives under `<project home>/stack/`: one `<service>.json` (pid, port, start time) and one
`<service>.log` per service, plus `env.sh` with the variables a shell needs to talk to the stack.
Every process the stack starts carries `OLMO3_STACK=<that folder>` in its environment, and so does
whatever those processes spawn (flow runs, training launchers), which is how `down` finds them all.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from olmo3_core.home import configure_environment, project_home
from olmo3_core.procs import stop_processes

HOST = "127.0.0.1"
POOL = "olmo3-process"
GPU_POOL = "gpu-cluster"
MARKER = "OLMO3_STACK"
ARTIFACTS_ENV = "OLMO3_MLFLOW_ARTIFACTS"
START_TIMEOUT_S = float(os.environ.get("OLMO3_STACK_TIMEOUT", "180"))


class StackError(RuntimeError):
    """A service did not come up; the message names its log file."""


@dataclass(frozen=True)
class Service:
    name: str
    port_env: str
    default_port: int
    health_path: str

    def port(self) -> int:
        return int(os.environ.get(self.port_env) or self.default_port)

    def url(self, port: int) -> str:
        return f"http://{HOST}:{port}"


PREFECT = Service("prefect", "OLMO3_PREFECT_PORT", 4200, "/api/health")
MLFLOW = Service("mlflow", "OLMO3_MLFLOW_PORT", 5001, "/health")
WORKER = Service("worker", "OLMO3_WORKER_PORT", 4201, "/health")  # the worker's own health endpoint
SERVICES = (PREFECT, MLFLOW, WORKER)  # start order; `down` stops in reverse


def stack_dir() -> Path:
    return project_home() / "stack"


def _state_path(service: Service) -> Path:
    return stack_dir() / f"{service.name}.json"


def log_path(service: Service) -> Path:
    return stack_dir() / f"{service.name}.log"


def _read_state(service: Service) -> dict | None:
    try:
        return json.loads(_state_path(service).read_text())
    except (OSError, ValueError):
        return None


def _process(state: dict | None) -> psutil.Process | None:
    """The recorded process if it still runs; the start time guards against a recycled pid."""
    if not state:
        return None
    try:
        proc = psutil.Process(state["pid"])
        alive = proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - state["create_time"]) < 1
    except psutil.Error:
        return None
    return proc if alive else None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def _bin(name: str) -> str:
    """The `prefect`/`mlflow` next to this interpreter, so the stack runs the venv's versions."""
    return str(Path(sys.executable).parent / name)


def client_env(ports: dict[str, int]) -> dict[str, str]:
    """What any client (a shell, a worker, a flow run) needs to use the stack, not only this process."""
    home = project_home()
    return {"OLMO3_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_API_URL": f"{PREFECT.url(ports['prefect'])}/api",
            "MLFLOW_TRACKING_URI": MLFLOW.url(ports["mlflow"])}


def _service_env(ports: dict[str, int]) -> dict[str, str]:
    configure_environment()  # Prefect logging/analytics defaults, inherited by flow runs
    # MLflow's GenAI job runner forks seven consumers (~1.5 GB) that the model flow never uses.
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, **client_env(ports),
            MARKER: str(stack_dir()), "PREFECT_WORKER_WEBSERVER_HOST": HOST,
            "PREFECT_WORKER_WEBSERVER_PORT": str(ports["worker"])}


def _default_root(artifacts: str) -> list[str]:
    """A local destination is also where new experiments point, not `mlflow-artifacts:/`: the server
    shares mlflow.db with `olmo3-flow run` without the stack, whose SQLite client can only write to
    plain paths. A remote destination (s3://) keeps the proxy, so clients need no bucket credentials."""
    return [] if "://" in artifacts else ["--default-artifact-root", artifacts]


def _command(service: Service, port: int, artifacts: str) -> list[str]:
    if service is PREFECT:
        return [_bin("prefect"), "server", "start", "--host", HOST, "--port", str(port)]
    if service is MLFLOW:
        return [_bin("mlflow"), "server", "--host", HOST, "--port", str(port), "--workers", "1",
                "--backend-store-uri", f"sqlite:///{project_home() / 'mlflow.db'}",
                "--artifacts-destination", artifacts, *_default_root(artifacts)]
    return [_bin("prefect"), "worker", "start", "--pool", POOL, "--type", "process",
            "--name", f"olmo3-{socket.gethostname()}", "--with-healthcheck"]


def _spawn(service: Service, cmd: list[str], env: dict[str, str], port: int) -> dict:
    """Start detached in its own process group, so `down` can signal the service and its children."""
    with open(log_path(service), "ab") as log:
        log.write(f"\n=== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=stack_dir(), start_new_session=True)
    state = {"pid": proc.pid, "port": port, "create_time": psutil.Process(proc.pid).create_time(), "cmd": cmd}
    _state_path(service).write_text(json.dumps(state, indent=2))
    return state


def _wait_until(service: Service, state: dict, ready: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if _process(state) is None:
            raise StackError(f"{service.name} exited while starting; see {log_path(service)}")
        time.sleep(0.5)
    raise StackError(f"{service.name} did not answer on port {state['port']} within {timeout_s:.0f}s; "
                     f"see {log_path(service)}")


def _api(ports: dict[str, int], path: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{PREFECT.url(ports['prefect'])}/api{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or "null")


def _worker_online(ports: dict[str, int]) -> bool:
    """The worker answers its health check and has registered with the Prefect server."""
    if not _answers(WORKER.url(ports["worker"]) + WORKER.health_path):
        return False
    try:
        workers = _api(ports, f"/work_pools/{POOL}/workers/filter", {})
    except (OSError, urllib.error.URLError):
        return False
    return any(w.get("status") == "ONLINE" for w in workers)


def _ensure_pool(ports: dict[str, int], name: str, paused: bool) -> None:
    """Create the work pool unless it exists; the CLI fills in the process worker's job template."""
    try:
        _api(ports, f"/work_pools/{name}")
        return
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    cmd = [_bin("prefect"), "work-pool", "create", name, "--type", "process"] + (["--paused"] if paused else [])
    env = {**os.environ, **client_env(ports)}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=stack_dir())
    if result.returncode != 0:
        raise StackError(f"could not create work pool {name!r}: {result.stdout}{result.stderr}")


def _ready_check(service: Service, ports: dict[str, int]) -> Callable[[], bool]:
    if service is WORKER:
        return lambda: _worker_online(ports)
    return lambda: _answers(service.url(ports[service.name]) + service.health_path)


def _start(service: Service, ports: dict[str, int], artifacts: str, timeout_s: float) -> dict:
    port = ports[service.name]
    if _port_taken(port):
        raise StackError(f"port {port} for {service.name} is already in use by another program; "
                         f"pick another with {service.port_env}=<port>")
    if service is WORKER:
        _ensure_pool(ports, POOL, paused=False)
        _ensure_pool(ports, GPU_POOL, paused=True)  # placeholder so GPU deployments register; never runs here
    state = _spawn(service, _command(service, port, artifacts), _service_env(ports), port)
    _wait_until(service, state, _ready_check(service, ports), timeout_s)
    return state


def _running_ports() -> dict[str, int]:
    """Ports of services that run now, else the configured ones: a partial stack keeps its ports."""
    ports = {}
    for service in SERVICES:
        state = _read_state(service)
        ports[service.name] = state["port"] if _process(state) else service.port()
    return ports


def _write_env_file(ports: dict[str, int]) -> None:
    lines = (f"export {key}={shlex.quote(value)}\n" for key, value in client_env(ports).items())
    (stack_dir() / "env.sh").write_text("".join(lines))


def up(artifacts: str | None = None, timeout_s: float = START_TIMEOUT_S) -> dict[str, dict]:
    """Start whatever part of the stack is not running; return the state of every service.

    On a failure the services this call started are stopped again, so a failed `up` leaves nothing behind.
    """
    stack_dir().mkdir(parents=True, exist_ok=True)
    artifacts = artifacts or os.environ.get(ARTIFACTS_ENV) or str(project_home() / "mlartifacts")
    ports = _running_ports()
    running = {service for service in SERVICES if _process(_read_state(service))}
    states = {}
    try:
        for service in SERVICES:
            state = _read_state(service) if service in running else _start(service, ports, artifacts, timeout_s)
            states[service.name] = {**state, "started": service not in running}
    except BaseException:
        for service in reversed(SERVICES):
            if service not in running:
                _stop(service)
        raise
    _write_env_file(ports)
    return states


def _stack_processes() -> list[psutil.Process]:
    """Every process that carries this stack's marker, including flow runs whose worker is gone."""
    marker, own = str(stack_dir()), {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid not in own and proc.environ().get(MARKER) == marker:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _group(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except ProcessLookupError:
        return None


def _terminate(procs: list[psutil.Process], grace_s: float = 15) -> None:
    """SIGTERM once (by process group where we can, Prefect escalates a second signal to SIGKILL),
    SIGKILL what is left after `grace_s`, and reap them all."""
    groups = {_group(p) for p in procs} - {None, os.getpgid(0)}
    signalled = frozenset(p.pid for p in procs if _group(p) in groups)
    for group in groups:
        try:
            os.killpg(group, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    stop_processes(procs, grace_s, signalled)


def _stop(service: Service) -> bool:
    """Stop one service with its whole process tree (collected first: children outlive a dead parent)."""
    proc = _process(_read_state(service))
    _state_path(service).unlink(missing_ok=True)
    if proc is None:
        return False
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        tree = [proc]
    _terminate(tree)
    return True


def down() -> list[str]:
    """Stop every service (worker first, so no new flow runs start), then any stray stack process."""
    stopped = [service.name for service in reversed(SERVICES) if _stop(service)]
    strays = _stack_processes()
    _terminate(strays)
    (stack_dir() / "env.sh").unlink(missing_ok=True)
    return stopped + [f"stray pid {p.pid}" for p in strays]


def status() -> dict[str, dict]:
    """Per service: pid, whether that pid is still the service, port, whether the port answers, URL."""
    report = {}
    for service in SERVICES:
        state = _read_state(service)
        port = state["port"] if state else service.port()
        report[service.name] = {"pid": state["pid"] if state else None, "alive": _process(state) is not None,
                                "port": port, "answering": _answers(service.url(port) + service.health_path),
                                "url": service.url(port), "log": str(log_path(service))}
    return report


def _print_status(report: dict[str, dict]) -> None:
    for name, s in report.items():
        print(f"{name:<8} pid {str(s['pid'] or '-'):<8} {'alive' if s['alive'] else 'not running':<12} "
              f"port {s['port']:<6} {'answering' if s['answering'] else 'not answering':<14} log {s['log']}")


def _print_up(states: dict[str, dict]) -> None:
    for name, state in states.items():
        action = "started" if state["started"] else "already running"
        print(f"{name:<8} {action} (pid {state['pid']}, port {state['port']})")
    ports = {name: state["port"] for name, state in states.items()}
    print(f"\nPrefect UI: {PREFECT.url(ports['prefect'])}\nMLflow UI:  {MLFLOW.url(ports['mlflow'])}")
    print(f"Work pool:  {POOL} (process worker running); {GPU_POOL} (paused placeholder)")
    print(f"Use it from a shell: source {stack_dir() / 'env.sh'}")


def add_arguments(parser) -> None:
    """The `olmo3-flow stack` arguments, kept here so flows/cli.py only wires the subcommand."""
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--artifacts-destination", default=None,
                        help=f"MLflow artifact store, e.g. s3://bucket/mlflow (default ${ARTIFACTS_ENV} "
                             "or <home>/mlartifacts)")


def main(args) -> int:
    """Dispatch `olmo3-flow stack ...`: 0 on success; 1 when a service failed to start or is down."""
    if args.action == "up":
        try:
            _print_up(up(args.artifacts_destination))
        except StackError as exc:
            print(f"stack up failed: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.action == "down":
        stopped = down()
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    report = status()
    _print_status(report)
    return 0 if all(s["alive"] and s["answering"] for s in report.values()) else 1
