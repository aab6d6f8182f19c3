"""Every test session gets its own project home (Prefect, MLflow, artifacts); nothing touches ~."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="olmo3-test-")) / "home"
os.environ["OLMO3_HOME"] = str(_HOME)
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_HOME / 'mlflow.db'}"
os.environ.pop("PREFECT_API_URL", None)

from olmo3_core.home import configure_environment  # noqa: E402

configure_environment()


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-protocol server (moto's server mode) on loopback; credentials are dummies."""
    from moto.server import ThreadedMotoServer

    from olmo3_core.launch import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket; returns (s3fs filesystem, bucket name)."""
    import uuid

    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    name = f"olmo3-{uuid.uuid4().hex[:8]}"
    fs.mkdir(name)
    return fs, name


@pytest.fixture
def stack_home(tmp_path, monkeypatch):
    """A fresh project home and free loopback ports for the local stack, in os.environ (in-process
    calls) and for subprocesses; whatever the test left running of that stack is stopped after it."""
    from olmo3_cli import stack
    from olmo3_core.launch import free_port

    home = tmp_path / "home"
    monkeypatch.setenv("OLMO3_HOME", str(home))
    for service in stack.SERVICES:
        monkeypatch.setenv(service.port_env, str(free_port()))
    for name in ("PREFECT_HOME", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    yield home
    stack.down()


def pytest_sessionfinish(session, exitstatus):
    """Leave no process behind: servers a test started (Prefect's temporary API server among them,
    which Prefect only stops from an atexit hook) are ended with the session."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
