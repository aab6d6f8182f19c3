"""What `olmo3-flow trace-output` searches: the indexes of everything a model was trained on.

The data artifact's index is its `trace_index` stage artifact (`olmo3_core.evaluation.trace.run`), found
in the store by the fingerprint the plan gives it (`olmo3_core.plan.trace_index_plan`, the same stage
`_graph` adds after `data`); when the store has none (a flow run without that stage, or a damaged one)
it is built here through the runner, so it gets its manifest and MLflow run like any other stage.

Each SFT / DPO / RLVR stage's rows are indexed from the stage's recorded config (procedural sets are
deterministic in their seed; files are read again) into the local cache, keyed by that stage's
fingerprint: those indexes are small and quick to rebuild, and making them stages would mean
materializing each post-training artifact (its model weights) to read a config its manifest holds.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from olmo3_core.evaluation.trace import Segment, TraceIndex, build_index

# The layout of the locally cached post-training indexes: bump when `build_index`'s output changes (the
# data's index is a stage artifact, whose fingerprint follows the code by itself).
POSTTRAIN_INDEX_VERSION = 3


class TraceError(RuntimeError):
    """What trace-output cannot do with the given model or data, said plainly."""


@dataclasses.dataclass(frozen=True)
class Found:
    stage: str  # "data" or a post-training stage name
    index: TraceIndex
    built_s: float  # seconds spent building it now; 0.0 when it was there
    where: str  # the index's artifact URI or cache directory
    mlflow_run_id: str | None = None  # the stage run that built it (the data's index)


def data_index(cfg, data_dir: Path) -> Found:
    """The trace_index artifact of the data artifact at `data_dir` in the flow's store, built through
    the runner when the store has no intact one."""
    from olmo3_core.artifacts import InvalidManifest
    from olmo3_core.plan import trace_index_plan
    from olmo3_core.runner import close_session, execute_stage, make_store, open_session

    data_dir = Path(data_dir)
    try:
        fingerprint = json.loads((data_dir / "artifact.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError) as exc:
        raise TraceError(f"{data_dir} is not a data artifact (no readable artifact.json: {exc})") from None
    store = make_store(cfg.storage)
    try:
        data = store.load_manifest("data", fingerprint)
    except InvalidManifest as exc:
        raise TraceError(str(exc)) from None
    if data is None:
        raise TraceError(f"data artifact {fingerprint[:12]} ({data_dir}) is not in the store {store.root}; its index "
                         f"is a stage of the store that holds it: pass storage.root=<that store>")
    plan = trace_index_plan(data)
    spec = plan.stages["trace_index"]
    manifest, built, run_id = store.load_manifest(spec.kind, spec.fingerprint), 0.0, None
    if manifest is None or store.check(manifest):  # absent or damaged: the runner quarantines and rebuilds it
        session, ok = open_session(cfg, plan=plan, run_name="trace-index"), False
        t0 = time.perf_counter()
        try:
            manifest = execute_stage(session, "trace_index")
            ok = True
        finally:
            close_session(session, ok)
        built, run_id = time.perf_counter() - t0, manifest.get("mlflow", {}).get("run_id")
    return Found("data", TraceIndex(store.materialize(manifest), data_dir), built, manifest["uri"], run_id)


def posttrain_runs(manifest: dict, tokenizer) -> list[tuple[Segment, np.ndarray]]:
    """Every message of the rows a post-training stage trained on, rebuilt from its recorded config
    (procedural sets are deterministic in their seed; files are read again), as token runs."""
    from olmo3_core.config.schema import PosttrainStageConfig
    from olmo3_core.config.typed import from_dict
    from olmo3_core.posttrain import datasets

    kind = manifest["kind"]
    config = from_dict(PosttrainStageConfig, manifest["config"], f"config of {manifest.get('uri', kind)}")
    step = getattr(config, kind)
    only = {"mixture": {}, "files": []} | ({"gsm8k_train": 0} if kind == "rlvr" else {})
    parts = [(f"procedural:{name}", dataclasses.replace(step, **{**only, "mixture": {name: n}})) for name, n in step.mixture.items()]
    parts += [(url, dataclasses.replace(step, **{**only, "files": [url]})) for url in step.files]
    if kind == "rlvr" and step.gsm8k_train:
        parts.append(("gsm8k:train", dataclasses.replace(step, **{**only, "gsm8k_train": step.gsm8k_train})))
    runs = []
    for source, cfg in parts:
        try:
            rows, _ = datasets.build(kind, cfg, config.template, decontam=config.decontam)  # the rows it kept
        except ValueError:
            if source == "gsm8k:train":  # no local GSM8K copy here (training skipped it too, when it had none)
                continue
            raise
        for row_number, row in enumerate(rows):
            for field_name, value in row.items():
                messages = value if isinstance(value, list) else []
                for m, message in enumerate(messages):
                    if isinstance(message, dict) and isinstance(message.get("content"), str) and message["content"]:
                        ids = np.asarray(tokenizer.encode(message["content"], add_special_tokens=False).ids, dtype=np.uint32)
                        runs.append((Segment(0, document_id=f"{manifest['stage']}:{source}#{row_number}/{field_name}[{m}]",
                                             source=f"{manifest['stage']} ({kind})", documents_file=source,
                                             documents_row=row_number), ids))
    return runs


def open_posttrain_index(manifest: dict, data_dir: Path, cache_root: Path | None = None) -> Found:
    """The index of the rows one post-training stage (sft / dpo / rlvr manifest) trained on, from the
    local cache (keyed by the stage's fingerprint), built there on first use."""
    from tokenizers import Tokenizer

    from olmo3_core.home import local_cache_dir

    directory = (cache_root or local_cache_dir()) / "trace_index" / f"{manifest['fingerprint']}-v{POSTTRAIN_INDEX_VERSION}"
    built = 0.0
    if not directory.is_dir():
        t0 = time.perf_counter()
        tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")  # written whole, then renamed
        shutil.rmtree(tmp, ignore_errors=True)
        tokenizer = Tokenizer.from_file(str(Path(data_dir) / "tokenizer" / "tokenizer.json"))
        build_index(posttrain_runs(manifest, tokenizer), tmp)
        try:
            tmp.rename(directory)
        except OSError:  # another process built it first: theirs is the same index
            shutil.rmtree(tmp, ignore_errors=True)
        built = time.perf_counter() - t0
    return Found(manifest["stage"], TraceIndex(directory, data_dir), built, str(directory))


def lineage_indexes(cfg, model_dir: Path, cache_root: Path | None = None) -> list[Found]:
    """The data artifact's index and one per post-training stage an export was trained through, read
    from the export's lineage.json (local artifacts only)."""
    chain = _lineage(model_dir)
    data_dir = data_dir_of_export(model_dir)
    out = [data_index(cfg, data_dir)]
    for row in chain:
        if row["kind"] in ("sft", "dpo", "rlvr"):
            manifest = json.loads((_local(row["uri"]) / "artifact.json").read_text())
            out.append(open_posttrain_index(manifest, data_dir, cache_root))
    return out


def _local(uri: str) -> Path:
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if ("://" in uri and not uri.startswith("file://")) or not path.exists():
        raise TraceError(f"artifact {uri} is not on this machine: pass --data <local copy of the data artifact>")
    return path


def _lineage(model_dir: Path) -> list[dict[str, Any]]:
    lineage = Path(model_dir) / "lineage.json"
    if not lineage.exists():
        raise TraceError(f"{lineage} not found: --model takes an exported model directory")
    return json.loads(lineage.read_text())["chain"]


def data_dir_of_export(model_dir: Path) -> Path:
    """The local data artifact an exported model was trained on, from the export's lineage.json."""
    data = [row for row in _lineage(model_dir) if row["kind"] == "data"]
    if not data:
        raise TraceError(f"{Path(model_dir) / 'lineage.json'} names no data stage in the model's lineage")
    return _local(data[0]["uri"])
