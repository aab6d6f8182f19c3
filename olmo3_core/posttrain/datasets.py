"""Post-training datasets in Dolci formats, from built-in procedural sets and user files.

SFT rows: `messages`. DPO rows: `prompt` / `chosen` / `rejected` (message lists). RL rows: `prompt`
(message list) + `ground_truth` + `verifier` (+ test cases inside ground_truth for code).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

import fsspec

from olmo3_core.config.schema import DPOConfig, RLVRConfig, SFTConfig
from olmo3_core.data.config import DecontamConfig
from olmo3_core.data.decontam import build_decontaminator
from olmo3_core.problems.evalsets import EvalSetUnavailable, load_gsm8k
from olmo3_core.problems.procedural import code, instructions, math

REQUIRED = {"sft": ("messages",), "dpo": ("prompt", "chosen", "rejected"), "rlvr": ("prompt", "ground_truth", "verifier")}
TEXT_FIELDS = {"sft": ("messages",), "dpo": ("prompt", "chosen", "rejected"), "rlvr": ("prompt",)}  # what decontam reads
BUILDERS = {"sft": "sft_records", "dpo": "dpo_records", "rlvr": "rl_records"}
PROCEDURAL = {"math": math, "code": code, "ifeval": instructions}


def _procedural(kind: str, source: str, n: int, seed: int, style: str) -> list[dict[str, Any]]:
    if source not in PROCEDURAL:
        raise ValueError(f"unknown procedural set {source!r}; known: {sorted(PROCEDURAL)}")
    builder = getattr(PROCEDURAL[source], BUILDERS[kind], None)
    if builder is None:
        raise ValueError(f"the procedural set {source!r} has no {kind} rows; use it in another stage or give files")
    return builder(n, seed, "train", style) if source == "math" and kind != "rlvr" else builder(n, seed, "train")


def read_records(url: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """JSONL (optionally .gz/.zst) or Parquet, local or any fsspec URL."""
    if url.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fsspec.open(url, "rb", **(storage_options or {})) as fh:
            return pq.read_table(fh).to_pylist()
    with fsspec.open(url, "rt", compression="infer", encoding="utf-8", **(storage_options or {})) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _check(kind: str, rows: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    for i, row in enumerate(rows):
        missing = [key for key in REQUIRED[kind] if key not in row]
        if missing:
            raise ValueError(f"{origin}: row {i} lacks {missing} required for {kind} (Dolci format)")
    return rows


@dataclass
class DecontamCounts:
    """What decontamination did to one step's rows (the step's report shows it)."""

    checked: int = 0  # rows checked (0: no decontamination configured)
    removed: int = 0
    removed_by_set: Dict[str, int] = field(default_factory=dict)  # rows removed, by the first eval set each matched
    removed_by_origin: Dict[str, int] = field(default_factory=dict)  # rows removed, by where they came from
    notes: list = field(default_factory=list)  # eval sets that could not be checked, and why

    def summary(self) -> dict[str, float]:
        return {"decontam_checked": float(self.checked), "decontam_removed": float(self.removed),
                **{f"decontam_removed/{name}": float(n) for name, n in sorted(self.removed_by_set.items())}}


def row_text(kind: str, row: dict[str, Any]) -> str:
    """The text of a row that an eval question could leak into: every message's content (or plain string)."""
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict) and isinstance(value.get("content"), str):
            parts.append(value["content"])
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for key in TEXT_FIELDS[kind]:
        walk(row[key])
    return "\n".join(parts)


def decontaminate(kind: str, rows: list[tuple[str, dict[str, Any]]], cfg: Optional[DecontamConfig],
                  storage_options: dict[str, Any] | None) -> tuple[list[dict[str, Any]], DecontamCounts]:
    """Drop (origin, row) pairs that quote an eval question, with the data stage's decontaminator.

    Rows are always removed, whatever `data.decontam.mode`: a training conversation with its question
    masked out would teach the model to answer a question it cannot see."""
    if cfg is None:
        return [row for _, row in rows], DecontamCounts()
    decontaminator, notes = build_decontaminator(dataclasses.replace(cfg, mode="remove"), storage_options or {})
    counts = DecontamCounts(checked=len(rows), notes=notes)
    if decontaminator is None:
        return [row for _, row in rows], counts
    kept = []
    for origin, row in rows:
        _, reason = decontaminator({"text": row_text(kind, row)})
        if reason is None:
            kept.append(row)
            continue
        name = reason.split(":", 1)[1]
        counts.removed += 1
        counts.removed_by_set[name] = counts.removed_by_set.get(name, 0) + 1
        counts.removed_by_origin[origin] = counts.removed_by_origin.get(origin, 0) + 1
    return kept, counts


def build(kind: str, cfg: Union[SFTConfig, DPOConfig, RLVRConfig], style: str,
          storage_options: dict[str, Any] | None = None,
          decontam: Optional[DecontamConfig] = None,
          pairs_file: Optional[str] = None) -> tuple[list[dict[str, Any]], DecontamCounts]:
    """All rows for one post-training step: procedural mixture + files (+ GSM8K train for RL, + the
    delta-learning pairs for DPO), less the rows that quote an eval question (`decontam`, the data
    stage's config)."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for source, n in cfg.mixture.items():
        rows += [(f"procedural:{source}", r) for r in _check(kind, _procedural(kind, source, n, cfg.seed, style), f"procedural:{source}")]
    for url in cfg.files:
        rows += [(url, r) for r in _check(kind, read_records(url, storage_options), url)]
    if pairs_file:
        rows += [("dpo_pairs", r) for r in _check(kind, read_records(pairs_file), pairs_file)]
    if isinstance(cfg, RLVRConfig) and cfg.gsm8k_train:
        rows += [("gsm8k_train", r) for r in _gsm8k_rl_rows(cfg.gsm8k_train)]
    if not rows:
        raise ValueError(f"{kind}: the mixture and files produced no rows")
    kept, counts = decontaminate(kind, rows, decontam, storage_options)
    if not kept:
        raise ValueError(f"{kind}: decontamination removed all {len(rows)} rows ({counts.removed_by_set}); "
                         f"the step's files or mixture quote the eval sets (data.decontam)")
    return kept, counts


def _gsm8k_rl_rows(n: int) -> list[dict[str, Any]]:
    """GSM8K train prompts when a local copy exists; skipped when it does not."""
    try:
        data = load_gsm8k("train", limit=n)
    except EvalSetUnavailable:
        return []
    return [{"prompt": [{"role": "user", "content": r["prompt"]}], "ground_truth": r["answer"], "verifier": "math"} for r in data]
