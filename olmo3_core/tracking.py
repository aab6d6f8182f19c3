"""Experiment tracking: the one seam between the library and MLflow.

- `Tracker` is what a stage logs through (`MlflowTracker` for one MLflow run, `NullTracker` without).
- `FlowTracking` is what the runner talks to: one experiment per flow, a parent run per flow run, a
  child run per stage with its resolved config as params, its upstream artifacts (or raw data files)
  as inputs and tags that tie it to its fingerprint and artifact; cache hits get a run of their own
  that points at the run that built the artifact.

Lineage is clickable in the MLflow UI: every stage run's description (the run note) links the runs of
its upstream stages, and a registered model version's description holds the whole lineage table down
to the raw data digests; exported models are MLflow LoggedModels. Links use the tracking server's URL
when there is one and the UI's relative routes otherwise.

Run ids are always explicit (MLflow's "active run" is thread-local and Prefect runs tasks in threads),
so a stage running in a worker thread or a training subprocess logs to exactly the run it was given.
Progress reporting is not tracking: it reaches a stage as `StageContext.progress`.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol

from olmo3_core.redaction import redact

DIGEST_LEN = 32  # MLflow caps dataset digests at 36 characters; the full hash goes in a tag
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's model-training view
RUN_NOTE = "mlflow.note.content"  # the run description the UI renders as markdown
# MLflow 3.17's UI picks its GenAI or model-training view from a browser-wide toggle (default GenAI) that
# a route's `workflowType` parameter sets; the experiment kind tag alone does not switch it.
UI_VIEW = "workflowType=machine_learning"


def run_link(tracking_uri: str | None, experiment_id: str | None, run_id: str | None) -> str | None:
    """The MLflow UI route of a run, in the model-training view: absolute on a tracking server,
    relative (same UI) otherwise."""
    if not (experiment_id and run_id):
        return None
    base = tracking_uri.rstrip("/") + "/" if tracking_uri and tracking_uri.startswith("http") else ""
    return f"{base}#/experiments/{experiment_id}/runs/{run_id}?{UI_VIEW}"


def _key_metrics(metrics: dict[str, float], n: int = 4) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in list(metrics.items())[:n]) or "-"


def lineage_table(tracking_uri: str | None, rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per stage (as `olmo3_core.lineage.summarize` gives them), each linking its run,
    then the raw inputs of the data stage with their digests."""
    lines = ["| stage | fingerprint | MLflow run | key metrics |", "|---|---|---|---|"]
    for r in rows:
        link = run_link(tracking_uri, r.get("mlflow_experiment_id"), r.get("mlflow_run_id"))
        run = f"[{r['mlflow_run_id'][:8]}]({link})" if link else "-"
        lines.append(f"| {r['stage']} | `{r['fingerprint'][:12]}` | {run} | {_key_metrics(r.get('metrics', {}))} |")
    raw = [i for r in rows for i in r.get("raw_inputs", [])]
    if raw:
        lines += ["", f"Raw inputs ({len(raw)}):", "", "| file | sha256 |", "|---|---|"]
        lines += [f"| `{i.get('uri')}` | `{str(i.get('sha256'))[:16]}` |" for i in raw[:50]]
        if len(raw) > 50:
            lines.append(f"| ... {len(raw) - 50} more (see lineage.json) | |")
    return "\n".join(lines)


class Tracker(Protocol):
    tracking_uri: str | None
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, obj: Any, name: str) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def describe(self, markdown: str) -> None: ...
    def register_model(self, name: str, model_dir: Path, description: str = "", tags: dict[str, str] | None = None,
                       metrics: dict[str, float] | None = None) -> str | None: ...


class NullTracker:
    """Tracker for library use without MLflow (unit tests, notebooks); keeps metrics in memory."""

    tracking_uri = None
    run_id = None

    def __init__(self):
        self.metrics: list[tuple[str, float, int | None]] = []

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

    def log_text(self, text, name):
        pass

    def describe(self, markdown):
        pass

    def register_model(self, name, model_dir, description="", tags=None, metrics=None):
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

    def __init__(self, tracking_uri: str, run_id: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.run_id = run_id

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

    def log_text(self, text, name):
        self.client.log_text(self.run_id, text, name)

    def describe(self, markdown):
        """The run's description in the UI."""
        self.client.set_tag(self.run_id, RUN_NOTE, markdown)

    def register_model(self, name, model_dir, description="", tags=None, metrics=None):
        """Log the model directory as an MLflow LoggedModel of this run (with `metrics`, e.g. its eval
        results, linked to it) and register it as a new version of `name`, carrying `description` and
        `tags` so the registry can be searched by them; returns the version."""
        from mlflow.exceptions import MlflowException

        tags = {k: str(v) for k, v in (tags or {}).items()}
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        model = self.client.create_logged_model(experiment_id, name=name, source_run_id=self.run_id, tags=tags,
                                                model_type="olmo3")
        self.client.log_model_artifacts(model.model_id, str(model_dir))
        for key, value in (metrics or {}).items():
            self.client.log_metric(self.run_id, key, float(value), model_id=model.model_id)
        self.client.finalize_logged_model(model.model_id, "READY")
        try:
            self.client.create_registered_model(name, description="olmo3-flow exports; each version's description is its lineage")
        except MlflowException:
            pass  # already registered: add a version
        version = self.client.create_model_version(name, f"models:/{model.model_id}", run_id=self.run_id, tags=tags,
                                                   description=description, model_id=model.model_id)
        return version.version

    def end(self, ok: bool) -> None:
        from mlflow.entities import RunStatus

        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED))


def _dataset(name: str, digest: str, source: str, source_type: str, context: str):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(name=name, digest=digest[:DIGEST_LEN], source_type=source_type, source=json.dumps({"uri": source}))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context), InputTag("sha256", digest)])


# Columns of MLflow's SQL store that hold artifact locations.
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "source"),
                     ("model_versions", "storage_location"))


def relocate_store(db: Path, artifacts: str) -> list[str]:
    """A project home's own SQLite store after the home was moved or copied: its experiments still keep
    run artifacts in the old home's `mlartifacts` folder, so new runs would write there. Point every
    stored location under a former `.../mlartifacts` at `artifacts`; returns the former locations."""
    if not db.is_file():
        return []
    with sqlite3.connect(db, timeout=60) as conn:
        try:
            found = [row[0] for row in conn.execute("SELECT DISTINCT artifact_location FROM experiments")]
        except sqlite3.OperationalError:  # no MLflow schema yet
            return []
        former = [loc for loc in found if loc.startswith("file://") and loc.rstrip("/").endswith("/mlartifacts")
                  and loc.rstrip("/") != artifacts.rstrip("/")]
        for old in former:
            for table, column in _LOCATION_COLUMNS:
                conn.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} LIKE ? || '%'",
                             (artifacts.rstrip("/"), len(old.rstrip("/")) + 1, old.rstrip("/")))
    return former


class FlowTracking:
    """MLflow for one flow run: the experiment, the parent run, and a child run per stage."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None, default_artifacts: str,
                 tags: dict[str, str], config: dict[str, Any], run_name: str):
        """`default_artifacts`: where a new experiment keeps run artifacts when no location is configured
        and there is no tracking server (MLflow would otherwise use ./mlruns of the current directory)."""
        from mlflow.tracking import MlflowClient
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        existing = self.client.get_experiment_by_name(experiment)
        if existing:
            self.experiment_id = existing.experiment_id
            if existing.tags.get("mlflow.experimentKind") is None:
                self.client.set_experiment_tag(self.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        else:
            if artifact_location is None and not tracking_uri.startswith("http"):
                artifact_location = default_artifacts
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_location,
                                                               tags=EXPERIMENT_KIND)
        run = self.client.create_run(self.experiment_id, tags={MLFLOW_RUN_NAME: run_name, **tags})
        self.parent_run_id = run.info.run_id
        self.client.log_dict(self.parent_run_id, redact(config), "config.json")

    def run_link(self, run_id: str) -> str | None:
        """A clickable MLflow UI address when tracking goes through a server; None for a local store."""
        return run_link(self.tracking_uri, self.experiment_id, run_id) if self.tracking_uri.startswith("http") else None

    def describe_stage(self, tracker: MlflowTracker, manifest: dict[str, Any], upstream: list[dict[str, Any]]) -> None:
        """The stage run's description: what it built, its key outputs, and a link to each upstream run."""
        lines = [f"**{manifest['stage']}** (`{manifest['kind']}`, fingerprint `{manifest['fingerprint'][:12]}`)", "",
                 f"Artifact: `{manifest['uri']}`", "", f"Key outputs: {_key_metrics(manifest.get('metrics', {}), 8)}", ""]
        if upstream:
            lines += ["Built from:", "", "| upstream stage | fingerprint | MLflow run | artifact |", "|---|---|---|---|"]
            for m in upstream:
                run_id, exp = m.get("mlflow", {}).get("run_id"), m.get("mlflow", {}).get("experiment_id")
                link = run_link(self.tracking_uri, exp, run_id)
                lines.append(f"| {m['stage']} | `{m['fingerprint'][:12]}` | "
                             f"{f'[{run_id[:8]}]({link})' if link else '-'} | `{m['uri']}` |")
        raw = manifest.get("raw_inputs", [])
        if raw:
            lines += ["", f"Raw inputs: {len(raw)} files (digests in the run's inputs and `artifact.json`)"]
        tracker.describe("\n".join(lines))

    def start_stage(self, spec, config: dict[str, Any], upstream: list[dict[str, Any]], tags: dict[str, str]) -> MlflowTracker:
        """A child run for one stage: its config as params, its upstream artifacts as inputs."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        run_tags = {MLFLOW_RUN_NAME: spec.name, MLFLOW_PARENT_RUN_ID: self.parent_run_id, "stage": spec.name,
                    "kind": spec.kind, "line": spec.line, "fingerprint": spec.fingerprint,
                    "upstream_fingerprints": ",".join(u["fingerprint"] for u in upstream), **tags}
        tracker = MlflowTracker(self.tracking_uri, self.client.create_run(self.experiment_id, tags=run_tags).info.run_id)
        tracker.log_params(config)
        inputs = [_dataset(u["stage"], u["fingerprint"], u["uri"], "olmo3-artifact", "upstream") for u in upstream]
        if inputs:
            self.client.log_inputs(tracker.run_id, datasets=inputs)
        return tracker

    def record_cache_hit(self, spec, config: dict[str, Any], manifest: dict[str, Any], tags: dict[str, str]) -> None:
        """A finished run saying this flow reused the artifact, and which run built it."""
        source = manifest.get("mlflow", {})
        tracker = self.start_stage(spec, config, manifest.get("upstream", []),
                                   {"cache_hit": "true", "source_run_id": str(source.get("run_id")),
                                    "artifact_uri": manifest["uri"], **tags})
        built_by, link = str(source.get("run_id")), run_link(self.tracking_uri, source.get("experiment_id"), source.get("run_id"))
        tracker.describe(f"**{spec.name}**: cache hit, reused artifact `{manifest['uri']}` built by "
                         + (f"[run {built_by[:8]}]({link})." if link else "an earlier run."))
        tracker.end(ok=True)

    def log_raw_inputs(self, run_id: str, raw_inputs: list[dict[str, Any]]) -> None:
        """The data stage's raw files as MLflow inputs, with their content digests."""
        inputs = [_dataset(r.get("source", "raw"), r["sha256"], r["uri"], "raw-file", "raw") for r in raw_inputs if r.get("sha256")]
        for i in range(0, len(inputs), 100):
            self.client.log_inputs(run_id, datasets=inputs[i : i + 100])

    def close(self, ok: bool) -> None:
        MlflowTracker(self.tracking_uri, self.parent_run_id).end(ok)
