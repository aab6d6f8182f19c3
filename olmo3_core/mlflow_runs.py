"""The MLflow shape of lineage: one experiment per flow, a parent run per flow run, a child run per
stage with its resolved config as params, its upstream artifacts (or raw data files) as inputs, and
tags that tie it to its fingerprint and artifact.
"""
from __future__ import annotations

import json
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from olmo3_core.home import project_home
from olmo3_core.redaction import redact
from olmo3_core.tracking import MlflowTracker

DIGEST_LEN = 32  # MLflow caps dataset digests at 36 characters; the full hash goes in a tag


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, creating it if needed. Without a tracking server, MLflow would put run
    artifacts in ./mlruns of whatever directory the process runs in: keep them under the project home."""
    existing = client.get_experiment_by_name(name)
    if existing:
        return existing.experiment_id
    if artifact_location is None and not client.tracking_uri.startswith("http"):
        artifact_location = (project_home() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def start_flow_run(client: MlflowClient, experiment: str, tags: dict[str, str], config: dict[str, Any]) -> str:
    run = client.create_run(experiment, tags={MLFLOW_RUN_NAME: tags.get("flow_run_name", "model-flow"), **tags})
    client.log_dict(run.info.run_id, redact(config), "config.json")
    return run.info.run_id


def _dataset(name: str, digest: str, source: str, source_type: str, context: str) -> DatasetInput:
    dataset = Dataset(name=name, digest=digest[:DIGEST_LEN], source_type=source_type, source=json.dumps({"uri": source}))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context), InputTag("sha256", digest)])


def start_stage_run(client: MlflowClient, experiment: str, parent_run_id: str | None, spec, upstream: list[dict[str, Any]],
                    tags: dict[str, str]) -> str:
    run_tags = {MLFLOW_RUN_NAME: spec.name, "stage": spec.name, "kind": spec.kind, "line": spec.line,
                "fingerprint": spec.fingerprint, "upstream_fingerprints": ",".join(u["fingerprint"] for u in upstream), **tags}
    if parent_run_id:
        run_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run_id = client.create_run(experiment, tags=run_tags).info.run_id
    MlflowTracker(client.tracking_uri, run_id).log_params(spec.config)
    inputs = [_dataset(u["stage"], u["fingerprint"], u["uri"], "olmo3-artifact", "upstream") for u in upstream]
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
    return run_id


def log_raw_inputs(client: MlflowClient, run_id: str, raw_inputs: list[dict[str, Any]]) -> None:
    """The data stage's raw files as MLflow inputs, with their content digests."""
    inputs = [_dataset(r.get("source", "raw"), r["sha256"], r["uri"], "raw-file", "raw") for r in raw_inputs if r.get("sha256")]
    for i in range(0, len(inputs), 100):
        client.log_inputs(run_id, datasets=inputs[i : i + 100])


def end_run(client: MlflowClient, run_id: str, ok: bool) -> None:
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED))
