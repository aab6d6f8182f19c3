"""The contract between the orchestration layer and the science.

A stage function is `run(ctx: StageContext) -> StageResult`. It reads its typed config from
`ctx.config`, upstream artifacts from `ctx.inputs` (already materialized on local disk and
hash-verified), writes everything it produces under `ctx.output_dir`, logs through `ctx.tracker` and
reports progress through `ctx.progress`. How it runs (launcher, storage credentials) arrives in
`ctx.execution`, which is not part of its fingerprint. It never decides where artifacts live, whether
it is cached, or how it is tracked: that is the orchestration layer's job.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict

from olmo3_core.config.schema import LaunchConfig
from olmo3_core.inputs import FileIdentity
from olmo3_core.tracking import NullTracker, Tracker

ProgressHook = Callable[[int, int, str], None]


def no_progress(done: int, total: int, desc: str = "") -> None:
    """The progress hook of a stage run outside an orchestrator."""


@dataclass(frozen=True)
class InputArtifact:
    """One upstream artifact, as a stage sees it."""

    stage: str  # full stage name, e.g. "instruct/sft"
    kind: str  # stage kind, e.g. "sft"
    fingerprint: str
    uri: str  # where it lives (local path or s3://...)
    path: Path  # local, verified copy
    config: Any  # the typed config it was built with (its kind's config class)
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Execution:
    """Where and how a stage runs: never part of its identity (fingerprint)."""

    launch: LaunchConfig = field(default_factory=LaunchConfig)
    storage_options: Dict[str, Any] = field(default_factory=dict)  # for reading and writing artifacts and raw files


@dataclass
class StageContext:
    name: str
    kind: str
    config: Any  # the stage's typed config (`olmo3_core.plan.KINDS[kind].config_type`)
    # by upstream stage name ("data", "pretrain", "midtrain/seed1", ...), in the order of the stage's parents:
    # a stage may have several inputs of one kind (a soup's ingredients)
    inputs: dict[str, InputArtifact]
    output_dir: Path
    tracker: Tracker = field(default_factory=NullTracker)
    progress: ProgressHook = no_progress
    execution: Execution = field(default_factory=Execution)
    files: tuple[FileIdentity, ...] = ()  # files from outside the store it may read, as fingerprinted
    fingerprint: str = ""
    uri: str = ""  # where the finished artifact will live

    def inputs_of(self, kind: str) -> list[InputArtifact]:
        """The upstream artifacts of one kind, in parent order."""
        return [a for a in self.inputs.values() if a.kind == kind]

    def input(self, kind: str) -> InputArtifact:
        """The one upstream artifact of `kind`."""
        found = self.inputs_of(kind)
        if len(found) != 1:
            have = ", ".join(f"{name} ({a.kind})" for name, a in self.inputs.items()) or "none"
            raise KeyError(f"stage {self.name!r} needs exactly one upstream {kind!r} artifact, got {len(found)}; "
                           f"its inputs: {have}")
        return found[0]


@dataclass
class StageResult:
    metrics: dict[str, float] = field(default_factory=dict)
    # Raw inputs read from outside the artifact store (data files), with content digests, for lineage.
    raw_inputs: list[dict[str, Any]] = field(default_factory=list)
    # Markdown summary shown as a Prefect artifact and logged to MLflow.
    report_markdown: str = ""
    # Published files whose bytes differ between two runs of the same config, and why (recorded in the
    # manifest; every other file is expected to be byte-identical on the same machine).
    varies: dict[str, str] = field(default_factory=dict)
