"""The OLMo 3 model flow: compose the config, build the plan, run each stage as a Prefect task in
dependency order, and summarize what was built where. `eval_checkpoint_flow` evaluates any existing
model artifact with the same machinery.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.futures import wait
from prefect.runtime import flow_run

from olmo3_core.config.compose import compose_config
from olmo3_core.launch import terminate_running_jobs
from olmo3_core.checkpoints import resolve
from olmo3_core.plan import checkpoint_eval_plan
from olmo3_core.runner import Session, close_session, make_store, open_session
from olmo3_tasks.stage import run_stage

logging.getLogger("olmo3_core").setLevel(logging.INFO)  # library logs reach the Prefect run logs


def summary_markdown(plan, manifests: dict[str, dict[str, Any]]) -> str:
    rows = ["| stage | fingerprint | artifact | key metrics |", "|---|---|---|---|"]
    for name, spec in plan.stages.items():
        m = manifests.get(name, {})
        metrics = ", ".join(f"{k}={v:.3g}" for k, v in list(m.get("metrics", {}).items())[:3])
        rows.append(f"| {name} | `{spec.fingerprint[:12]}` | `{m.get('uri', '-')}` | {metrics} |")
    return "\n".join(rows)


def _flow_tags() -> dict[str, str]:
    """Tags of every MLflow run of this flow run; the owner tags let `olmo3-flow doctor` and the CLI's
    signal handler find runs left RUNNING by a dead or stopped process."""
    return {"prefect_flow_run_id": str(flow_run.id), "prefect_flow_run_name": str(flow_run.name)}


def _open(cfg, overrides: list[str], plan=None) -> Session:
    """The MLflow parent run is named after the Prefect flow run, so the two UIs name a run alike."""
    return open_session(cfg, overrides, tags=_flow_tags(), plan=plan, run_name=str(flow_run.name))


@contextmanager
def stage_slots(limit: int):
    """A Prefect concurrency limit of `limit` stages for this flow run, as a task tag.

    Prefect holds a tagged task run in Pending until a slot is free, so the UI shows a queued stage
    as waiting and a task run's Running time is its work (a lock inside the task would show it Running)."""
    tag = f"olmo3-stages-{flow_run.id}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=f"tag:{tag}", limit=limit))
        try:
            yield tag
        finally:
            client.delete_global_concurrency_limit_by_name(f"tag:{tag}")


def run_session(session: Session) -> dict[str, str]:
    """Submit every stage of the session's plan as a task, parents first; return stage -> artifact URI."""
    cfg = session.cfg
    get_run_logger().info("plan: %s; MLflow parent run %s", ", ".join(session.plan.stages), session.tracking.parent_run_id)
    with stage_slots(cfg.orchestration.max_parallel_stages) as tag:
        manifests = _run_stages(session, run_stage.with_options(retries=cfg.orchestration.retries, retry_delay_seconds=2,
                                                                tags=[tag]))
    create_markdown_artifact(markdown=summary_markdown(session.plan, manifests), key="model-flow-summary",
                             description="Stages, fingerprints and artifacts of this flow run")
    return {name: m["uri"] for name, m in manifests.items()}


def _run_stages(session: Session, task) -> dict[str, dict[str, Any]]:
    """Every stage as a task run, parents first; closes the session's MLflow run either way."""
    futures: dict[str, Any] = {}
    ok = False
    try:
        for name, spec in session.plan.stages.items():
            futures[name] = task.with_options(task_run_name=name).submit(
                session, name, wait_for=[futures[p] for p in spec.parents if p in futures])
        wait(list(futures.values()))  # a failed stage does not cut the independent branches short
        manifests = {name: future.result() for name, future in futures.items()}
        ok = True
    except Exception:
        raise
    except BaseException:  # cancelled (SIGTERM) or interrupted: no training job may outlive the flow
        terminate_running_jobs()
        raise
    finally:
        close_session(session, ok)
    return manifests


@flow(name="model-flow", log_prints=True)
def model_flow(overrides: list[str] | None = None) -> dict[str, str]:
    """Run the model flow for Hydra `overrides` (e.g. ["preset=micro", "posttrain.instruct.sft.lr=1e-4"])."""
    overrides = list(overrides or [])
    return run_session(_open(compose_config(overrides), overrides))


@flow(name="eval-checkpoint", log_prints=True)
def eval_checkpoint_flow(artifact_uri: str, overrides: list[str] | None = None) -> dict[str, str]:
    """Evaluate any model artifact (pretrain ... rlvr), or a kept checkpoint of a base-training artifact
    (`<artifact uri>/checkpoints/step<N>`), with the eval config of `overrides`."""
    overrides = list(overrides or [])
    cfg = compose_config(overrides)
    plan = checkpoint_eval_plan(cfg, resolve(make_store(cfg.storage), artifact_uri, cfg.storage.storage_options))
    return run_session(_open(cfg, overrides, plan))
