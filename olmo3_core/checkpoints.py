"""Kept checkpoints of base-training artifacts as artifacts of their own.

A base-training artifact keeps a loadable model every `train.keep_every` steps under
`checkpoints/step{N}/` (listed in its `job_outputs.json` as `kept`, with the step and tokens seen).
Such a checkpoint is addressed by that path, `<artifact uri>/checkpoints/step{N}`, wherever an artifact
URI is accepted (`fork_from=`, `olmo3-flow eval-checkpoint`).

`resolve` turns it into a *derived artifact* in the store: same stage and kind as its parent, `model/` =
the checkpoint, fingerprint = sha256(parent fingerprint, step), the parent as its only upstream and a
`checkpoint` entry (step, tokens seen) in its manifest. Every other mechanism (pin, materialize, verify,
lineage, cache hits) then works on it unchanged. It holds no `optimizer/state.pt`: a stage that continues
its upstream's AdamW state (`continue_from_upstream`) cannot start from it (`check_fork`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import fsspec

from olmo3_core.artifacts import ArtifactStore, now_iso
from olmo3_core.config.typed import ConfigError
from olmo3_core.kinds import BASE_TRAINING
from olmo3_core.stages.jobs import KEPT_DIR, OPTIMIZER_STATE

_CHECKPOINT = re.compile(rf"^(?P<artifact>.+?)/{KEPT_DIR}/(?P<name>[^/]*)/?$")
_STEP = re.compile(r"^step(\d+)$")


def split_uri(uri: str) -> tuple[str, int | None]:
    """(`artifact uri`, step) of `<artifact uri>/checkpoints/step{N}`; (uri, None) for a plain artifact URI."""
    match = _CHECKPOINT.match(uri.rstrip("/"))
    if match is None:
        return uri.rstrip("/"), None
    step = _STEP.match(match["name"])
    if step is None:
        raise ConfigError(f"{uri}: a kept checkpoint is addressed as <artifact uri>/{KEPT_DIR}/step<N>, "
                          f"got {KEPT_DIR}/{match['name']!r}")
    return match["artifact"], int(step[1])


def kept(manifest: dict[str, Any], storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The kept checkpoints of a base-training artifact, by step: {step, tokens_seen, path}."""
    if manifest["kind"] not in BASE_TRAINING or "job_outputs.json" not in manifest["files"]:
        return []
    with fsspec.open(f"{manifest['uri']}/job_outputs.json", "r", **(storage_options or {})) as fh:
        return sorted(json.load(fh).get("kept", []), key=lambda k: k["step"])


def derived_fingerprint(parent_fingerprint: str, step: int) -> str:
    return hashlib.sha256(json.dumps({"checkpoint_of": parent_fingerprint, "step": step}, sort_keys=True).encode()).hexdigest()


def _link(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: manifest[k] for k in ("stage", "kind", "fingerprint", "uri")}


def find_kept(parent: dict[str, Any], step: int, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parent's kept checkpoint at `step`; an error lists the steps it kept."""
    where = f"{parent['uri']}/{KEPT_DIR}/step{step}"
    if parent["kind"] not in BASE_TRAINING:
        raise ConfigError(f"{where}: only base-training artifacts ({', '.join(BASE_TRAINING)}) keep checkpoints; "
                          f"this is a {parent['kind']} artifact")
    if parent.get("checkpoint"):
        raise ConfigError(f"{where}: {parent['uri']} is itself a kept checkpoint; address its parent's checkpoints")
    checkpoints = kept(parent, storage_options)
    for checkpoint in checkpoints:
        if checkpoint["step"] == step:
            return checkpoint
    keep_every = parent["config"].get("train", {}).get("keep_every")
    steps = ", ".join(f"step{c['step']}" for c in checkpoints) or "none"
    raise ConfigError(f"{where}: {parent['stage']} kept no checkpoint at step {step}; kept: {steps} "
                      f"({parent['stage']}.keep_every={keep_every}; the final model is the artifact itself: {parent['uri']})")


def resolve(store: ArtifactStore, uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest `uri` names: the artifact itself, or for `<artifact>/checkpoints/step{N}` its derived
    artifact in `store` (created on first use, from then on found complete like any other)."""
    from olmo3_core.lineage import read_manifest

    artifact, step = split_uri(uri)
    parent = read_manifest(artifact, storage_options)
    if step is None:
        return parent
    checkpoint = find_kept(parent, step, storage_options)
    fingerprint = derived_fingerprint(parent["fingerprint"], step)
    existing = store.load_manifest(parent["kind"], fingerprint)
    if existing is not None and not store.check(existing):
        return existing
    from olmo3_core.runner import _artifact_lock  # the runner's per-artifact lock: one builder at a time

    with _artifact_lock(store, parent["kind"], fingerprint):
        existing = store.load_manifest(parent["kind"], fingerprint)
        if existing is not None and not store.check(existing):
            return existing
        if existing is not None:
            store.quarantine(parent["kind"], fingerprint)
        return _build(store, parent, checkpoint, fingerprint)


def _build(store: ArtifactStore, parent: dict[str, Any], checkpoint: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    kind, step = parent["kind"], checkpoint["step"]
    source = store.materialize({**parent, "files": {rel: meta for rel, meta in parent["files"].items()
                                                    if rel.startswith(checkpoint["path"] + "/")}}) \
        if parent["uri"].startswith(store.root + "/") else None
    staging = store.clean_staging(kind, fingerprint)
    model = staging / "model"
    if source is not None:
        _link_tree(source / checkpoint["path"], model)
    else:  # a parent outside this store (another root): copy through fsspec
        fs, path = fsspec.core.url_to_fs(f"{parent['uri']}/{checkpoint['path']}")
        fs.get(path, str(model), recursive=True)
    info = {"step": step, "tokens_seen": checkpoint["tokens_seen"], "path": checkpoint["path"], "of": _link(parent)}
    (staging / "checkpoint.json").write_text(json.dumps(info, indent=2))
    report = (f"### {parent['stage']} checkpoint step{step}\n\nKept checkpoint `{checkpoint['path']}` of "
              f"`{parent['uri']}`: step {step}, {checkpoint['tokens_seen']:,} tokens seen. No optimizer state.\n")
    return store.publish(kind, fingerprint, staging, {
        "stage": parent["stage"], "kind": kind, "line": parent.get("line", "base"), "fingerprint": fingerprint,
        "config": parent["config"], "upstream": [_link(parent)], "raw_inputs": [],
        "metrics": {"step": float(step), "tokens_seen": float(checkpoint["tokens_seen"])},
        "report_markdown": report, "checkpoint": info,
        "mlflow": parent.get("mlflow", {}),  # the run that trained it (and logged its step)
        "prefect_flow_run_id": parent.get("prefect_flow_run_id"), "git_commit": parent.get("git_commit"),
        "created_at": now_iso(), "code_digest": parent.get("code_digest"), "libraries": parent.get("libraries"),
        "files_read": [], "varies_between_runs": {},
    })


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links where the file system allows (a checkpoint is immutable once published), else copies."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def check_fork(manifest: dict[str, Any], plan, uri: str) -> None:
    """A stage of `plan` continuing the forked artifact's optimizer state needs `optimizer/state.pt` in it."""
    if OPTIMIZER_STATE in manifest["files"]:
        return
    for name, spec in plan.stages.items():
        train = getattr(spec.config, "train", None)
        if manifest["stage"] in spec.parents and spec.kind in BASE_TRAINING and getattr(train, "continue_from_upstream", False):
            raise ConfigError(f"fork_from={uri}: {spec.kind}.continue_from_upstream=true continues {manifest['stage']}'s "
                              f"AdamW state ({OPTIMIZER_STATE}), which this artifact does not hold (a kept checkpoint "
                              f"is a model only); fork from the finished artifact or set {spec.kind}.continue_from_upstream=false")
