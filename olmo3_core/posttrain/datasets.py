"""Post-training datasets in Dolci formats, from built-in procedural sets and user files.

SFT rows: `messages`. DPO rows: `prompt` / `chosen` / `rejected` (message lists). RL rows: `prompt`
(message list) + `ground_truth` + `verifier` (+ test cases inside ground_truth for code).
"""
from __future__ import annotations

import json
from typing import Any, Union

import fsspec

from olmo3_core.config.schema import DPOConfig, RLVRConfig, SFTConfig
from olmo3_core.problems.evalsets import EvalSetUnavailable, load_gsm8k
from olmo3_core.problems.procedural import code, instructions, math

REQUIRED = {"sft": ("messages",), "dpo": ("prompt", "chosen", "rejected"), "rlvr": ("prompt", "ground_truth", "verifier")}
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


def build(kind: str, cfg: Union[SFTConfig, DPOConfig, RLVRConfig], style: str,
          storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All rows for one post-training step: procedural mixture + files (+ GSM8K train for RL)."""
    rows: list[dict[str, Any]] = []
    for source, n in cfg.mixture.items():
        rows += _check(kind, _procedural(kind, source, n, cfg.seed, style), f"procedural:{source}")
    for url in cfg.files:
        rows += _check(kind, read_records(url, storage_options), url)
    if isinstance(cfg, RLVRConfig) and cfg.gsm8k_train:
        rows += _gsm8k_rl_rows(cfg.gsm8k_train)
    if not rows:
        raise ValueError(f"{kind}: the mixture and files produced no rows")
    return rows


def _gsm8k_rl_rows(n: int) -> list[dict[str, Any]]:
    """GSM8K train prompts when a local copy exists; skipped when it does not."""
    try:
        data = load_gsm8k("train", limit=n)
    except EvalSetUnavailable:
        return []
    return [{"prompt": [{"role": "user", "content": r["prompt"]}], "ground_truth": r["answer"], "verifier": "math"} for r in data]
