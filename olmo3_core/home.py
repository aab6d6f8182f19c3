"""One project home for Prefect, MLflow and artifacts, so tests can point everything at a temp dir."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

HOME_ENV = "OLMO3_HOME"


def project_home() -> Path:
    """`$OLMO3_HOME`, else `./.olmo3`, always absolute (Prefect process workers run in temp dirs)."""
    return Path(os.environ.get(HOME_ENV) or ".olmo3").expanduser().resolve()


def default_storage_root() -> str:
    return str(project_home() / "artifacts")


def default_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI` (e.g. the stack's MLflow server), else SQLite under the project home."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_home() / 'mlflow.db'}"


@contextmanager
def setup_lock(home: Path | None = None) -> Iterator[None]:
    """Hold the project home's setup lock (`flock` on `<home>/.setup.lock`, released if the holder
    dies). Two runs starting at once on a fresh home would otherwise both create the MLflow SQLite
    schema (and the experiment) and one of them crash; whoever holds the lock does it alone."""
    home = home or project_home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".setup.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def local_cache_dir() -> Path:
    """Where remote (e.g. s3://) artifacts are materialized for reading and staged for writing."""
    return project_home() / "cache"


def configure_environment() -> Path:
    """Point Prefect at the project home unless the user already chose a Prefect profile/API.

    Must run before `prefect` is imported, because Prefect reads its settings at import time.
    """
    home = project_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "olmo3_core")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")  # library use outside flows
    # The flow's temporary Prefect server must be given time to start on a loaded 2-core machine
    # (Prefect's default of 20 s failed there: "Timed out while attempting to connect").
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    return home
