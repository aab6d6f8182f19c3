"""`olmo3-flow`: the user entry point.

    olmo3-flow run [--dry-run] [--verify fast|full] [hydra overrides...]
    olmo3-flow eval-checkpoint <artifact uri | artifact uri/checkpoints/step<N>> [overrides...]
    olmo3-flow lineage <exported model dir | artifact uri | mlflow run id> [--json] [overrides...]
    olmo3-flow trace-tokens <shard.npy> <offset>
    olmo3-flow trace-output "<text>" (--model <export dir> | --data <data artifact dir>) [--json] [overrides...]
    olmo3-flow doctor [--dry-run]          (mark runs left RUNNING by a dead process FAILED)
    olmo3-flow serve <export dir | registered model name[@version]> [--host H] [--port P] [--backend auto|vllm|transformers]
    olmo3-flow stack up|down|status        (local Prefect server + worker + MLflow server)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from olmo3_cli import stack
from olmo3_core.home import configure_environment


def _dry_run(overrides: list[str]) -> int:
    from olmo3_core.model import count_parameters
    from olmo3_core.model.memory import available_bytes
    from olmo3_core.runner import memory_needed, miss_reason

    cfg, store, plan = _preflight(overrides, memory=False)
    params = count_parameters(cfg.model)
    print(f"model: {params / 1e9:.2f}B parameters ({params:,}); artifacts under {store.root}")
    for line in _training_summary(cfg, plan):
        print(line)
    need, (have, what) = memory_needed(cfg, plan, store), available_bytes()
    if need:
        verdict = "fits" if need.bytes <= have else "does NOT fit: `run` refuses it unless launch.check_memory=false"
        print(f"training memory: {need.describe()}; this machine has {have / 2**30:.1f} GiB {what}: {verdict}")
    print(f"{'stage':<18} {'kind':<11} {'fingerprint':<14} status")
    for name, spec in plan.stages.items():
        status = "cached" if store.has(spec.kind, spec.fingerprint) else f"to run ({miss_reason(store, plan, name)})"
        print(f"{name:<18} {spec.kind:<11} {spec.fingerprint[:12]:<14} {status}")
    return 0


def _training_summary(cfg, plan) -> list[str]:
    """One line per planned base-training stage: the hyperparameters that define the run, with the global
    batch in tokens as the processes of this launch config would see it."""
    from olmo3_core.kinds import BASE_TRAINING
    from olmo3_core.plan import world_size

    world = world_size(cfg.launch)  # the processes that share a global batch, over every node
    kinds = {spec.kind for spec in plan.stages.values()}
    lines = []
    for kind in (k for k in BASE_TRAINING if k in kinds):
        t = getattr(cfg, kind)
        batch = t.micro_batch_size * t.grad_accum_steps * world * t.seq_len
        extra = f", schedule {t.schedule}"
        if t.steps != t.max_steps:
            extra += f" laid out over {t.max_steps:,} steps, stopped at {t.steps:,} before it anneals"
        if t.continue_from_upstream:
            extra += ", from the upstream's final LR and AdamW state"
        extra += f", z-loss {t.z_loss:g}"
        if t.document_masking:
            extra += ", intra-document attention"
        if t.yarn_factor > 1:
            extra += f", YaRN x{t.yarn_factor:g}"
        if len(getattr(t, "ingredients", ())) > 1:
            extra += f", {len(t.ingredients)} ingredients (data-order seeds {', '.join(map(str, t.ingredients))}) souped"
        lines.append(
            f"{kind}: seq_len {t.seq_len}, global batch {batch:,} tokens ({t.micro_batch_size} x {t.grad_accum_steps} accum "
            f"x {world} procs x {t.seq_len}), {t.steps:,} steps = {t.steps * batch / 1e9:,.1f}B tokens, "
            f"peak lr {t.lr:.4g}, warmup {t.warmup_steps:,}, min lr {t.min_lr_ratio:g}x, weight decay {t.weight_decay:g}, "
            f"betas ({t.beta1:g}, {t.beta2:g}), grad clip {t.grad_clip:g}, {t.precision}, ZeRO-{t.zero_stage}{extra}")
    return lines


SECRETS_REFUSED = """refusing to run: these overrides carry credentials (shown masked):
  {found}
Overrides are stored as Prefect flow parameters and in MLflow, so credentials must not be passed
this way. Give them through the environment instead: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
(/ AWS_SESSION_TOKEN) or AWS_PROFILE with ~/.aws/credentials for s3://, or the variables your fsspec
backend reads; pass endpoints without user:password@ (e.g.
+storage.storage_options.client_kwargs.endpoint_url=http://127.0.0.1:9000)."""


def _refuse_secret_overrides(overrides: list[str]) -> None:
    from olmo3_core.redaction import secret_overrides

    found = secret_overrides(overrides)
    if found:
        print(SECRETS_REFUSED.format(found="\n  ".join(found)), file=sys.stderr)
        raise SystemExit(2)


def _compose(overrides: list[str]):
    from olmo3_core.config.compose import compose_config
    from olmo3_core.config.typed import ConfigError

    try:
        return compose_config(overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _preflight(overrides: list[str], memory: bool = True):
    """Config, store and plan, with everything that can be refused before compute refused here, clearly:
    bad config, input globs that match nothing, a fork from a damaged artifact, a model that won't fit."""
    from olmo3_core.artifacts import InvalidManifest
    from olmo3_core.config.typed import ConfigError
    from olmo3_core.lineage import LineageError
    from olmo3_core.runner import ResourceError, check_memory, make_store, plan_for

    cfg = _compose(overrides)
    try:
        store = make_store(cfg.storage)
        plan = plan_for(cfg, store)
        if memory:
            check_memory(cfg, plan, store)
    except (ConfigError, ResourceError, LineageError, InvalidManifest) as exc:
        print(f"{'config error' if isinstance(exc, ConfigError) else 'cannot run'}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return cfg, store, plan


def _run(overrides: list[str]) -> int:
    cfg, _, _ = _preflight(overrides)  # refuse what can be refused before Prefect starts anything
    from olmo3_flows.model_flow import model_flow
    from olmo3_core import procs
    from olmo3_core.home import default_tracking_uri, project_home

    started = time.time()
    tracking_uri = cfg.tracking.uri or default_tracking_uri()
    procs.start_guard()  # a SIGKILL of this process must not leave the Prefect server or workers behind
    try:
        with procs.stop_signals_raise(on_stuck=lambda signum: _shut_down(signum, tracking_uri)):
            _set_up_stores(cfg)
            uris = model_flow(overrides=overrides)
    except procs.Stopped as stop:
        _shut_down(stop.signum, tracking_uri)
    print(f"\nmodel flow finished in {time.time() - started:.0f}s. Exported models:")
    for name, uri in uris.items():
        if name.endswith("/export"):
            print(f"  {name.split('/')[0]:<10} {uri}/model")
    print(f"\nLineage:   olmo3-flow lineage {next((u for n, u in uris.items() if n.endswith('/export')), '<uri>')}/model")
    tracking = default_tracking_uri()
    ui = tracking if tracking.startswith("http") else "http://127.0.0.1:5000"
    if not tracking.startswith("http"):
        print(f"MLflow UI: mlflow ui --backend-store-uri {tracking} --port 5000, then")
    print(f"MLflow models (lineage in each version's description): {ui}/#/models?workflowType=machine_learning")
    print(f"Prefect UI: PREFECT_HOME={project_home() / 'prefect'} prefect server start")
    return 0


def _eval_checkpoint(target: str, overrides: list[str]) -> int:
    """Evaluate one model artifact, or a kept checkpoint `<artifact uri>/checkpoints/step<N>`, with the
    eval config of `overrides`; what cannot be evaluated is refused before compute (exit 2)."""
    from olmo3_core.artifacts import InvalidManifest
    from olmo3_core.checkpoints import resolve
    from olmo3_core.config.typed import ConfigError
    from olmo3_core.kinds import MODEL_KINDS
    from olmo3_core.lineage import LineageError
    from olmo3_core.runner import make_store

    cfg = _compose(overrides)
    try:
        manifest = resolve(make_store(cfg.storage), target, cfg.storage.storage_options)
        if manifest["kind"] not in MODEL_KINDS:
            raise ConfigError(f"{target} is a {manifest['kind']} artifact, not a model (one of {', '.join(MODEL_KINDS)})")
    except (ConfigError, LineageError, InvalidManifest) as exc:
        print(f"eval-checkpoint: {exc}", file=sys.stderr)
        return 2
    from olmo3_flows.model_flow import eval_checkpoint_flow

    _set_up_stores(cfg)
    uris = eval_checkpoint_flow(target, overrides=overrides)
    evaluated = next(name for name in uris if name.endswith("/eval"))
    step = manifest.get("checkpoint", {}).get("step")
    print(f"evaluated {manifest['stage']}{f' checkpoint step{step}' if step is not None else ''} "
          f"({manifest['uri']}): {uris[evaluated]}/results.json")
    return 0


def _set_up_stores(cfg) -> None:
    """Create the MLflow schema and experiment and start Prefect's temporary server (which migrates its
    database) under the home's setup lock: two runs starting at once on a fresh home would otherwise
    both migrate the same SQLite databases and one of them crash. The server started here is the one
    the flow then uses; with PREFECT_API_URL set, this only checks the server answers."""
    from prefect.client.orchestration import get_client

    from olmo3_core.home import setup_lock
    from olmo3_core.runner import prepare_tracking

    with setup_lock():
        prepare_tracking(cfg)
        with get_client(sync_client=True) as prefect:
            prefect.hello()


# --- SIGTERM / SIGINT -------------------------------------------------------------------------------
# `stop_signals_raise` turns both signals into `Stopped` in the main thread. When that happens during
# the flow, by the time it reaches `_run` Prefect's engine has marked the flow run Crashed and
# `run_session` has killed the training jobs and failed the MLflow parent run. The rest is done here.

def _shut_down(signum: int, tracking_uri: str) -> None:
    """End everything this run started and every run it left RUNNING, then exit 128+signum.

    Exits with os._exit: stage threads may still be blocked (a data stage waiting on its pool), and
    a normal interpreter exit would wait for them. The guard process (`procs.start_guard`) then stops
    the processes still carrying this run's marker: pool workers and Prefect's temporary server."""
    from olmo3_core import procs
    from olmo3_core.launch import terminate_running_jobs

    if threading.current_thread() is threading.main_thread():  # the watchdog thread cannot set handlers
        procs.ignore_stop_signals()
    reason = f"olmo3-flow run stopped by {signal.Signals(signum).name}"

    def attempt(what: str, step, default):
        try:
            return step()
        except Exception as exc:  # the rest of the shutdown must still happen; `olmo3-flow doctor` can finish it
            print(f"{reason}: could not {what}: {exc}", file=sys.stderr)
            return default

    attempt("stop training jobs", terminate_running_jobs, 0)
    flow_runs = attempt("mark MLflow runs KILLED", lambda: procs.end_runs_owned_by_this_process(tracking_uri, reason), [])
    attempt("mark Prefect runs Crashed", lambda: procs.crash_prefect_runs(flow_runs, reason), [])
    print(f"\n{reason}; its processes are being stopped", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)


def _doctor(dry_run: bool, tracking_uri: str | None) -> int:
    from olmo3_core import procs
    from olmo3_core.home import default_tracking_uri

    failed, flow_runs = procs.fail_runs_of_dead_owners(tracking_uri or default_tracking_uri(), dry_run)
    if dry_run:
        print(f"doctor: would mark {len(failed)} MLflow run(s) FAILED and crash their Prefect flow runs")
        return 0
    crashed = procs.crash_prefect_runs(flow_runs, "owner process died; found by olmo3-flow doctor")
    for flow_run_id in crashed:
        print(f"Prefect flow run {flow_run_id}: owner gone; marked Crashed")
    print(f"doctor: marked {len(failed)} MLflow run(s) FAILED and {len(crashed)} Prefect flow run(s) Crashed")
    return 0


def _lineage(target: str, as_json: bool, overrides: list[str]) -> int:
    from pathlib import Path

    from olmo3_core.lineage import LineageError, find_manifest, format_text, read_manifest, summarize, walk

    options = _compose(overrides).storage.storage_options if overrides else {}
    try:
        if Path(target).exists():
            manifest = find_manifest(target)
        elif "://" in target:
            manifest = read_manifest(target.removesuffix("/model"), options)
        else:
            manifest = read_manifest(_artifact_of_run(target, overrides), options)
        rows = summarize(walk(manifest, options))
    except LineageError as exc:
        print(f"lineage: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if as_json else format_text(rows))
    return 0


def _artifact_of_run(run_id: str, overrides: list[str]) -> str:
    from mlflow.tracking import MlflowClient

    from olmo3_core.home import default_tracking_uri
    from olmo3_core.lineage import LineageError

    uri = (_compose(overrides).tracking.uri if overrides else None) or default_tracking_uri()
    try:
        tags = MlflowClient(tracking_uri=uri).get_run(run_id).data.tags
    except Exception as exc:  # MLflow raises its own exception types for unknown ids
        raise LineageError(f"{run_id!r} is neither a path, an artifact URI nor an MLflow run id: {exc}") from exc
    if "artifact_uri" not in tags:
        raise LineageError(f"MLflow run {run_id} is not a stage run (no artifact_uri tag)")
    return tags["artifact_uri"]


def _serve(args) -> int:
    from olmo3_core.serve import ServeError, serve

    try:
        return serve(args.target, args.host, args.port, args.backend, args.tracking_uri)
    except ServeError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2


def _trace(shard: str, offset: int) -> int:
    from olmo3_core.data.provenance import trace_token

    print(json.dumps(trace_token(shard, offset), indent=2, default=str))
    return 0


def _trace_output(args, overrides: list[str]) -> int:
    """Spans of a text found verbatim in a model's (or a data artifact's) training data. The data's index
    is its trace_index stage artifact in the flow's store (storage/tracking from `overrides`), built
    through the runner if the store has none."""
    import dataclasses
    from pathlib import Path

    from olmo3_core.evaluation.trace import format_spans, trace
    from olmo3_core.evaluation.trace_output import TraceError, data_index, lineage_indexes

    cfg = _compose(overrides)
    try:
        found = [data_index(cfg, Path(args.data))] if args.data else lineage_indexes(cfg, Path(args.model))
    except TraceError as exc:
        print(f"trace-output: {exc}", file=sys.stderr)
        return 2
    for f in found:
        if f.built_s:
            run = f" (MLflow run {f.mlflow_run_id})" if f.mlflow_run_id else ""
            print(f"built the trace index of {f.stage} in {f.built_s:.1f}s: {f.where}{run}", file=sys.stderr)
    spans = trace([f.index for f in found], args.text, min_tokens=args.min_tokens, max_spans=args.max_spans)
    print(json.dumps([dataclasses.asdict(s) for s in spans], indent=2) if args.json else format_spans(spans))
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_environment()
    parser = argparse.ArgumentParser(prog="olmo3-flow", description="The OLMo 3 model flow.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the model flow (Hydra overrides, e.g. preset=micro posttrain.instruct.sft.lr=1e-4)")
    run.add_argument("--dry-run", action="store_true", help="print the plan, fingerprints and cache status only")
    run.add_argument("--verify", choices=("fast", "full"),
                     help="how cached artifacts are checked before reuse (orchestration.verify; full re-hashes every file)")
    run.add_argument("overrides", nargs="*")
    ev = sub.add_parser("eval-checkpoint", help="evaluate one model artifact, or a kept checkpoint "
                                               "<artifact uri>/checkpoints/step<N>, with the flow's eval config")
    ev.add_argument("target")
    ev.add_argument("overrides", nargs="*")
    lin = sub.add_parser("lineage", help="show where an artifact or exported model came from")
    lin.add_argument("target")
    lin.add_argument("--json", action="store_true")
    lin.add_argument("overrides", nargs="*", help="config overrides for storage/tracking (e.g. storage.root=s3://...)")
    trace = sub.add_parser("trace-tokens", help="name the document a training token came from")
    trace.add_argument("shard")
    trace.add_argument("offset", type=int)
    out = sub.add_parser("trace-output", help="find spans of a text that occur verbatim in a model's training data (base mixes and post-training sets)")
    out.add_argument("text")
    where = out.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="an exported model directory (its lineage names the data artifact)")
    where.add_argument("--data", help="a data artifact directory")
    out.add_argument("--min-tokens", type=int, default=8, help="shortest span reported, in tokens")
    out.add_argument("--max-spans", type=int, default=10)
    out.add_argument("--json", action="store_true")
    out.add_argument("overrides", nargs="*", help="config overrides for storage/tracking (e.g. storage.root=s3://...)")
    doctor = sub.add_parser("doctor", help="mark MLflow runs (and their Prefect flow runs) left RUNNING by a dead process FAILED")
    doctor.add_argument("--dry-run", action="store_true", help="only report what would be marked")
    doctor.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or the project home's SQLite)")
    from olmo3_core.serve import add_arguments as serve_arguments

    serve_arguments(sub.add_parser("serve", help="OpenAI-compatible chat endpoint for an exported model "
                                                 "(vLLM on GPU, transformers otherwise)"))
    stack.add_arguments(sub.add_parser("stack", help="local Prefect server + worker + MLflow server (up|down|status)"))
    args, extra = parser.parse_known_args(argv)  # lineage / trace-output overrides may come after an option
    if extra and args.command not in ("lineage", "trace-output"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "run":
        _refuse_secret_overrides(args.overrides)
        overrides = args.overrides + ([f"orchestration.verify={args.verify}"] if args.verify else [])
        return _dry_run(overrides) if args.dry_run else _run(overrides)
    if args.command == "eval-checkpoint":
        _refuse_secret_overrides(args.overrides)
        return _eval_checkpoint(args.target, args.overrides)
    if args.command == "lineage":
        return _lineage(args.target, args.json, args.overrides + extra)
    if args.command == "stack":
        return stack.main(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "doctor":
        return _doctor(args.dry_run, args.tracking_uri)
    if args.command == "trace-output":
        _refuse_secret_overrides(args.overrides + extra)  # a build opens MLflow runs, as `run` does
        return _trace_output(args, args.overrides + extra)
    return _trace(args.shard, args.offset)


if __name__ == "__main__":
    sys.exit(main())
