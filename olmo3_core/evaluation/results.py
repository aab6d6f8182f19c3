"""What an eval artifact's results.json holds, typed: model kind -> eval set -> `SetResult`.

Kept apart from the stage so readers (the export stage's model card) depend on the format only, not on
the eval sets and verifiers: a change to a verifier does not re-run an export.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from olmo3_core.evaluation.stats import Estimate


@dataclass(frozen=True)
class Sample:
    prompt: str
    completion: str
    answer: str
    score: float


@dataclass
class SetResult:
    """One model on one eval set: metric name -> published estimate, in report order (primary first)."""

    metrics: dict[str, Estimate]
    backend: str
    samples: list[Sample] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SetResult:
        return cls({k: Estimate(**v) for k, v in raw["metrics"].items()}, raw["backend"],
                   [Sample(**s) for s in raw.get("samples", [])])


def write_results(path: Path, results: dict[str, dict[str, SetResult]], skipped: list[str]) -> None:
    body = {kind: {name: asdict(r) for name, r in per.items()} for kind, per in results.items()}
    Path(path).write_text(json.dumps({"results": body, "skipped": skipped}, indent=2))


def read_results(path: Path) -> dict[str, dict[str, SetResult]]:
    raw = json.loads(Path(path).read_text())["results"]
    return {kind: {name: SetResult.from_json(r) for name, r in per.items()} for kind, per in raw.items()}
