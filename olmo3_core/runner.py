"""Run stages of a plan: the one generic mechanism every stage goes through.

For any stage: return early on a complete artifact (cache hit), materialize and verify the upstream
artifacts, open an MLflow child run, call the stage function, publish the artifact with its manifest
written last. Prefect's task (tasks/stage.py) is a thin wrapper around `execute_stage`; without
Prefect, `run_plan` executes the same stages in order. All MLflow calls go through
`olmo3_core.tracking.FlowTracking`.
"""
from __future__ import annotations

import dataclasses
import fcntl
import logging
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo3_core.artifacts import ArtifactStore, InvalidManifest, now_iso
from olmo3_core.config.schema import FlowConfig, StorageConfig, TrainConfig
from olmo3_core.config.typed import ConfigError, from_dict, to_dict
from olmo3_core.home import default_storage_root, default_tracking_uri, local_cache_dir, project_home, setup_lock
from olmo3_core.kinds import MODEL_KINDS
from olmo3_core.lineage import read_manifest
from olmo3_core.model import count_parameters
from olmo3_core.model.memory import MemoryEstimate, available_bytes, training_memory
from olmo3_core.plan import KINDS, Plan, build_plan, code_digest, library_versions
from olmo3_core.procs import owner_tags
from olmo3_core.redaction import redact, redact_overrides
from olmo3_core.stages import InputArtifact, StageContext
from olmo3_core.stages.context import Execution, ProgressHook, no_progress
from olmo3_core.tracking import FlowTracking, ensure_experiment, relocate_store

log = logging.getLogger(__name__)


def git_commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_store(storage: StorageConfig) -> ArtifactStore:
    return ArtifactStore(storage.root or default_storage_root(), storage.storage_options, local_cache_dir())


@dataclass
class Session:
    """One flow run: its config, plan, store, and the MLflow runs everything hangs under."""

    cfg: FlowConfig
    plan: Plan
    store: ArtifactStore
    tracking: FlowTracking
    execution: Execution
    tags: dict[str, str] = field(default_factory=dict)


def forked_artifact(cfg: FlowConfig, store: ArtifactStore, uri: str) -> dict[str, Any]:
    """The manifest of an artifact to continue from; it must be complete and in this flow's store.

    `<artifact uri>/checkpoints/step{N}` names a kept checkpoint of a base-training artifact: it resolves
    to a derived artifact in the store (`olmo3_core.checkpoints`)."""
    from olmo3_core.checkpoints import resolve

    manifest = resolve(store, uri, cfg.storage.storage_options)
    if store.load_manifest(manifest["kind"], manifest["fingerprint"]) is None:
        raise ConfigError(f"fork_from={uri} is not a complete artifact under storage.root={store.root}")
    return manifest


def plan_for(cfg: FlowConfig, store: ArtifactStore) -> Plan:
    """The config's plan, continuing from `fork_from` when it names an artifact (or a kept checkpoint)."""
    if not cfg.fork_from:
        return build_plan(cfg)
    from olmo3_core.checkpoints import check_fork

    manifest = forked_artifact(cfg, store, cfg.fork_from)
    plan = build_plan(cfg, manifest)
    check_fork(manifest, plan, cfg.fork_from)
    return plan


class ResourceError(RuntimeError):
    """The plan cannot run on this machine; found before compute."""


def memory_needed(cfg: FlowConfig, plan: Plan, store: ArtifactStore) -> MemoryEstimate | None:
    """The largest training-memory estimate among the model-training stages that will run here (not
    cached, not launched on a hostfile's nodes); None when there are none."""
    if cfg.launch.hostfile:
        return None
    to_run = [s for s in plan.stages.values() if s.kind in MODEL_KINDS and not store.has(s.kind, s.fingerprint)]
    if not to_run:
        return None
    params = count_parameters(cfg.model)
    return max((training_memory(cfg.model, getattr(s.config, "train", TrainConfig(micro_batch_size=0)), params)
                for s in to_run), key=lambda e: e.bytes)


def check_memory(cfg: FlowConfig, plan: Plan, store: ArtifactStore) -> None:
    if not cfg.launch.check_memory:
        return
    need = memory_needed(cfg, plan, store)
    have, what = available_bytes()
    if need and need.bytes > have:
        raise ResourceError(f"training this model needs {need.describe()}; this machine has {have / 2**30:.1f} GiB "
                            f"{what}. Use a machine or cluster that fits it (launch.hostfile), a smaller model, "
                            f"or launch.check_memory=false to try anyway")


def open_session(cfg: FlowConfig, overrides: list[str] | None = None, tags: dict[str, str] | None = None,
                 plan: Plan | None = None, run_name: str = "model-flow") -> Session:
    """Start a flow run: MLflow parent run, artifact store and the plan (from the config unless given)."""
    store = make_store(cfg.storage)
    plan = plan or plan_for(cfg, store)
    check_memory(cfg, plan, store)
    tags = {**owner_tags(), **(tags or {})}  # every run names its owner process, so `olmo3-flow doctor` can end orphans
    run_tags = {"git_commit": git_commit(), "hydra_overrides": " ".join(redact_overrides(overrides or [])), **tags}
    with setup_lock():
        tracking_uri, experiment_id = prepare_tracking(cfg)
    tracking = FlowTracking(tracking_uri, experiment_id, run_tags, to_dict(cfg), run_name)
    return Session(cfg, plan, store, tracking, Execution(cfg.launch, cfg.storage.storage_options), tags)


def prepare_tracking(cfg: FlowConfig) -> tuple[str, str]:
    """The flow's tracking URI and experiment id, set up: a moved or copied home's own store re-pointed
    at this home, the schema and the experiment created. Call under the home's setup lock."""
    tracking_uri, artifacts = cfg.tracking.uri or default_tracking_uri(), (project_home() / "mlartifacts").as_uri()
    own_store = project_home() / "mlflow.db"
    if tracking_uri == f"sqlite:///{own_store}" and cfg.tracking.artifact_location is None:
        for former in relocate_store(own_store, artifacts):
            log.warning("this project home was moved or copied: MLflow artifacts at %s now resolve under %s", former, artifacts)
    return tracking_uri, ensure_experiment(tracking_uri, cfg.tracking.experiment, cfg.tracking.artifact_location, artifacts)


def miss_reason(store: ArtifactStore, plan: Plan, name: str) -> str:
    """Why a stage is not cached, against the newest complete artifact of the same stage in the store."""
    spec, others = plan.stages[name], []
    for fingerprint in store.fingerprints(spec.kind):
        try:
            manifest = store.load_manifest(spec.kind, fingerprint)
        except InvalidManifest:
            continue
        if manifest and manifest["stage"] == spec.name:
            others.append(manifest)
    if not others:
        return "never built"
    last = max(others, key=lambda m: m.get("created_at", ""))
    reasons = []
    before = {(f["uri"], f["digest"]) for f in last.get("files_read", [])}
    now = {(f.uri, f.digest) for f in spec.files}
    if before != now:
        changed = sorted({uri for uri, _ in before ^ now})
        reasons.append(f"input files changed: {', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}")
    if {u["fingerprint"] for u in last["upstream"]} != {plan.stages[p].fingerprint for p in spec.parents}:
        reasons.append("an upstream stage changed")
    if last.get("code_digest") != code_digest(spec.kind):
        reasons.append("its code changed")
    if last.get("libraries") != library_versions():
        reasons.append("library versions changed")
    if last["config"] != redact(to_dict(spec.config)):
        reasons.append("its config changed")
    return "; ".join(reasons) or f"built as {last['fingerprint'][:12]} with other inputs"


def close_session(session: Session, ok: bool) -> None:
    session.tracking.close(ok)


@contextmanager
def _artifact_lock(store: ArtifactStore, kind: str, fingerprint: str):
    """Two flow runs of the same stage config serialize here; the second then finds the cache. The lock
    file lives outside the artifact dir, which a quarantine moves away."""
    if not store.is_local:
        yield
        return
    path = Path(store.root) / ".locks" / kind / f"{fingerprint}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _upstream(session: Session, name: str) -> list[dict[str, Any]]:
    out = []
    for parent in session.plan.stages[name].parents:
        spec = session.plan.stages[parent]
        manifest = session.store.load_manifest(spec.kind, spec.fingerprint)
        if manifest is None:
            raise RuntimeError(f"stage {name!r} needs {parent!r} ({spec.fingerprint[:12]}), which has no complete artifact")
        out.append(manifest)
    return out


def _reusable(session: Session, name: str, repair: bool) -> dict[str, Any] | None:
    """The stage's complete artifact if its files check out, else None. With `repair` (under the
    artifact lock) a damaged one is quarantined (kept aside, never reused) so the stage is rebuilt."""
    spec, store = session.plan.stages[name], session.store
    try:
        manifest = store.load_manifest(spec.kind, spec.fingerprint)
        problem = manifest and store.check(manifest, full=session.cfg.orchestration.verify == "full")
    except InvalidManifest as exc:
        manifest, problem = None, str(exc)
    if not problem or not repair:
        return None if problem else manifest
    moved = store.quarantine(spec.kind, spec.fingerprint)
    log.warning("%s: cached artifact %s is damaged (%s); moved to %s and rebuilding", name,
                store.uri(spec.kind, spec.fingerprint), problem, moved)
    return None


def execute_stage(session: Session, name: str, progress: ProgressHook = no_progress,
                  prefect_flow_run_id: str | None = None) -> dict[str, Any]:
    """Run one stage unless its artifact is complete and intact; return its manifest."""
    spec, store = session.plan.stages[name], session.store
    cached = _reusable(session, name, repair=False)
    if cached is None:
        with _artifact_lock(store, spec.kind, spec.fingerprint):
            cached = _reusable(session, name, repair=True)
            if cached is None:
                return _run(session, name, progress, prefect_flow_run_id)
    log.info("%s: cache hit %s (built by MLflow run %s)", name, cached["uri"], cached.get("mlflow", {}).get("run_id"))
    session.tracking.record_cache_hit(spec, to_dict(spec.config), cached, session.tags)
    return cached


def _links(upstream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: u[k] for k in ("stage", "kind", "fingerprint", "uri")} for u in upstream]


def _input(store: ArtifactStore, manifest: dict[str, Any]) -> InputArtifact:
    """An upstream artifact as its consumer sees it: a verified local copy and its typed config."""
    config = from_dict(KINDS[manifest["kind"]].config_type, manifest["config"], f"config in {manifest['uri']}")
    return InputArtifact(manifest["stage"], manifest["kind"], manifest["fingerprint"], manifest["uri"],
                         store.materialize(manifest), config, manifest)


def _run(session: Session, name: str, progress: ProgressHook, prefect_flow_run_id: str | None) -> dict[str, Any]:
    spec, store = session.plan.stages[name], session.store
    upstream = _upstream(session, name)
    inputs = {parent: _input(store, m) for parent, m in zip(spec.parents, upstream)}  # by the plan's names
    config = to_dict(spec.config)
    tracker = session.tracking.start_stage(spec, config, _links(upstream),
                                           {"artifact_uri": store.uri(spec.kind, spec.fingerprint), **session.tags})
    ctx = StageContext(name=name, kind=spec.kind, config=spec.config, inputs=inputs,
                       output_dir=store.clean_staging(spec.kind, spec.fingerprint), tracker=tracker, progress=progress,
                       execution=session.execution, files=spec.files, fingerprint=spec.fingerprint,
                       uri=store.uri(spec.kind, spec.fingerprint))
    started = time.time()
    log.info("%s: running (fingerprint %s)", name, spec.fingerprint[:12])
    try:
        result = KINDS[spec.kind].entrypoint(ctx)
        if result.raw_inputs:
            session.tracking.log_raw_inputs(tracker.run_id, result.raw_inputs)
        tracker.log_metrics({**result.metrics, "stage_wall_s": time.time() - started})
        manifest = store.publish(spec.kind, spec.fingerprint, ctx.output_dir, {
            "stage": name, "kind": spec.kind, "line": spec.line, "fingerprint": spec.fingerprint,
            "config": redact(config), "upstream": _links(upstream), "raw_inputs": result.raw_inputs,
            "metrics": result.metrics, "report_markdown": result.report_markdown,
            "mlflow": {"run_id": tracker.run_id, "experiment_id": session.tracking.experiment_id},
            "prefect_flow_run_id": prefect_flow_run_id, "git_commit": git_commit(), "created_at": now_iso(),
            "code_digest": code_digest(spec.kind), "libraries": library_versions(),
            "files_read": [dataclasses.asdict(f) for f in spec.files], "varies_between_runs": result.varies,
        })
        tracker.log_dict(manifest, "artifact.json")
        session.tracking.describe_stage(tracker, manifest, upstream)
        if result.report_markdown:
            tracker.log_text(result.report_markdown, "report.md")
    except BaseException:
        tracker.end(ok=False)
        raise
    tracker.end(ok=True)
    log.info("%s: done in %.1fs -> %s", name, time.time() - started, manifest["uri"])
    return manifest


def run_plan(cfg: FlowConfig, overrides: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every stage of the plan in order, without Prefect (library and notebook use)."""
    session = open_session(cfg, overrides)
    manifests, ok = {}, False
    try:
        for name in session.plan.stages:
            manifests[name] = execute_stage(session, name)
        ok = True
    finally:
        close_session(session, ok)
    return manifests
