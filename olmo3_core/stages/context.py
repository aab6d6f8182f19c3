"""The contract between the orchestration layer and the science.

A stage function is `run(ctx: StageContext) -> StageResult`. It reads upstream artifacts from
`ctx.inputs` (already materialized on local disk and hash-verified), writes everything it produces
under `ctx.output_dir`, and logs through `ctx.tracker`. It never decides where artifacts live,
whether it is cached, or how it is tracked: that is the orchestration layer's job.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo3_core.tracking import NullTracker, Tracker


@dataclass(frozen=True)
class InputArtifact:
    """One upstream artifact, as a stage sees it."""

    stage: str  # full stage name, e.g. "instruct/sft"
    kind: str  # stage kind, e.g. "sft"
    fingerprint: str
    uri: str  # where it lives (local path or s3://...)
    path: Path  # local, verified copy
    manifest: dict[str, Any]


@dataclass
class StageContext:
    name: str
    kind: str
    config: dict[str, Any]  # the resolved stage config, plain types only
    inputs: dict[str, InputArtifact]  # by upstream stage kind ("data", "pretrain", ...)
    output_dir: Path
    tracker: Tracker = field(default_factory=NullTracker)
    global_config: dict[str, Any] = field(default_factory=dict)  # read-only view of the whole flow config
    fingerprint: str = ""
    uri: str = ""  # where the finished artifact will live

    def input(self, kind: str) -> InputArtifact:
        if kind not in self.inputs:
            raise KeyError(f"stage {self.name!r} needs an upstream {kind!r} artifact; got {sorted(self.inputs)}")
        return self.inputs[kind]


@dataclass
class StageResult:
    metrics: dict[str, float] = field(default_factory=dict)
    # Raw inputs read from outside the artifact store (data files), with content digests, for lineage.
    raw_inputs: list[dict[str, Any]] = field(default_factory=list)
    # Markdown summary shown as a Prefect artifact and logged to MLflow.
    report_markdown: str = ""
