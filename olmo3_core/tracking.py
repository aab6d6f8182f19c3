"""Experiment tracking as the library sees it: a small protocol, an MLflow implementation, a null one.

Run ids are always explicit (MLflow's "active run" is thread-local and Prefect runs tasks in threads),
so a stage running in a worker thread or a training subprocess logs to exactly the run it was given.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from olmo3_core.redaction import redact

ProgressHook = Callable[[int, int, str], None]


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, obj: Any, name: str) -> None: ...
    def progress(self, done: int, total: int, desc: str = "") -> None: ...
    def register_model(self, name: str, model_dir: Path) -> str | None: ...


class NullTracker:
    """Tracker for library use without MLflow (unit tests, notebooks)."""

    run_id = None

    def __init__(self, on_progress: ProgressHook | None = None):
        self.metrics: list[tuple[str, float, int | None]] = []
        self._on_progress = on_progress

    def log_metrics(self, metrics, step=None):
        self.metrics.extend((k, float(v), step) for k, v in metrics.items())

    def log_params(self, params):
        pass

    def set_tags(self, tags):
        pass

    def log_artifact(self, local_path, artifact_path=None):
        pass

    def log_dict(self, obj, name):
        pass

    def progress(self, done, total, desc=""):
        if self._on_progress:
            self._on_progress(done, total, desc)

    def register_model(self, name, model_dir):
        return None


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def flatten_params(params: dict[str, Any]) -> dict[str, str]:
    """Nested config -> dotted MLflow params (secrets redacted, values cut to MLflow's 6000-char limit)."""
    out: dict[str, str] = {}
    _flatten("", redact(params), out)
    return {k: v[:6000] for k, v in out.items()}


class MlflowTracker:
    """Logs to one explicit MLflow run through `MlflowClient` (thread- and process-safe)."""

    def __init__(self, tracking_uri: str, run_id: str, on_progress: ProgressHook | None = None):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self._on_progress = on_progress

    def log_metrics(self, metrics, step=None):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_params(self, params):
        from mlflow.entities import Param

        flat = flatten_params(params)
        items = [Param(k[:250], v) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags):
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, local_path, artifact_path=None):
        path = Path(local_path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, obj, name):
        self.client.log_dict(self.run_id, redact(obj), name)

    def progress(self, done, total, desc=""):
        if self._on_progress:
            self._on_progress(done, total, desc)

    def register_model(self, name, model_dir):
        """Log the model directory to this run and register it: the version's source run is the lineage."""
        from mlflow.exceptions import MlflowException

        self.client.log_artifacts(self.run_id, str(model_dir), "model")
        try:
            self.client.create_registered_model(name)
        except MlflowException:
            pass  # already registered: add a version
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/model"
        version = self.client.create_model_version(name, source, run_id=self.run_id)
        return version.version
