"""The one Prefect task every stage runs through: a thin wrapper around `olmo3_core.runner.execute_stage`
that adds what only Prefect has: the task run, live progress and links from the UI to MLflow.
"""
from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from olmo3_core.lineage import summarize, walk
from olmo3_core.runner import Session, execute_stage


def _progress_hook(name: str, min_interval_s: float = 2.0):
    """Progress updates for the Prefect UI, throttled so a fast loop does not flood the API."""
    artifact_id = create_progress_artifact(progress=0.0, description=f"{name} progress")
    logger, last = get_run_logger(), [0.0]

    def hook(done: int, total: int, desc: str) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < min_interval_s:
            return
        last[0] = now
        update_progress_artifact(artifact_id, progress=100.0 * done / max(total, 1))
        logger.info("%s: %d/%d %s", name, done, total, desc)

    return hook


@task(name="stage", cache_policy=NONE, persist_result=False)
def run_stage(session: Session, name: str) -> dict:
    """Run (or reuse) one stage of the session's plan and return its manifest. How many run at once is
    a Prefect concurrency limit on the task's tag (see the flow), so waiting shows as Pending."""
    manifest = execute_stage(session, name, progress=_progress_hook(name), prefect_flow_run_id=str(flow_run.id))
    run_id = manifest.get("mlflow", {}).get("run_id")
    link = session.tracking.run_link(run_id) if run_id else None
    if link:
        create_link_artifact(link=link, link_text=f"MLflow run of {name}", description=f"{name} in MLflow")
    if manifest["kind"] == "export":
        rows = summarize(walk(manifest, session.execution.storage_options))
        create_table_artifact([{"stage": r["stage"], "fingerprint": r["fingerprint"][:12], "mlflow_run": r["mlflow_run_id"],
                                "artifact": r["uri"]} for r in rows], key=f"lineage-{manifest['line'].replace('_', '-')}",
                              description=f"Lineage of the {manifest['line']} export, from the model back to the data")
    if manifest.get("report_markdown"):
        create_markdown_artifact(markdown=manifest["report_markdown"] + f"\n\nArtifact: `{manifest['uri']}`  \n"
                                 f"MLflow run: `{run_id}`", description=f"{name} report")
    return manifest
