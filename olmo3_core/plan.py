"""The flow as data: stage kinds, the stage graph a config implies, and each stage's fingerprint.

Like Marin's executor, a stage is declared (kind, config, parents) and its output path is versioned
by a hash of its config, its parents' fingerprints, the code that implements it and the key library
versions, so the plan (and what is cached) is known before anything runs.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable


PACKAGE_ROOT = Path(__file__).resolve().parent
KEY_LIBRARIES = ("torch", "transformers", "trl", "deepspeed", "tokenizers")
# Keys that say where or how work runs, not what it produces: kept out of fingerprints, so moving
# storage endpoints, rotating credentials or changing worker counts never invalidates the cache.
EXECUTION_KEYS = frozenset({"storage_options", "workers", "executor"})


@dataclass(frozen=True)
class StageKind:
    name: str
    entrypoint: str  # "module:function" taking a StageContext
    code: tuple[str, ...]  # paths under olmo3_core/ whose source is hashed into fingerprints

    def load(self) -> Callable:
        module, func = self.entrypoint.split(":")
        return getattr(importlib.import_module(f"olmo3_core.{module}"), func)


_TRAIN_CODE = ("train", "model", "launch.py")
_POST_CODE = ("posttrain", "problems", "model", "chat.py", "launch.py")
KINDS: dict[str, StageKind] = {
    "data": StageKind("data", "data.stage:run", ("data", "chat.py", "problems")),
    "pretrain": StageKind("pretrain", "train.stage:run", _TRAIN_CODE),
    "midtrain": StageKind("midtrain", "train.stage:run", _TRAIN_CODE),
    "longmino": StageKind("longmino", "train.stage:run", _TRAIN_CODE),
    "sft": StageKind("sft", "posttrain.stage:run", _POST_CODE),
    "dpo": StageKind("dpo", "posttrain.stage:run", _POST_CODE),
    "rlvr": StageKind("rlvr", "posttrain.stage:run", _POST_CODE),
    "eval": StageKind("eval", "evaluation.stage:run", ("evaluation", "problems", "chat.py")),
    "export": StageKind("export", "export.stage:run", ("export", "chat.py", "lineage.py")),
}


@dataclass(frozen=True)
class StageSpec:
    name: str  # unique in the plan: "pretrain", "instruct/sft", "base/eval", ...
    kind: str
    line: str  # "base" or a post-training branch
    config: dict[str, Any]
    parents: tuple[str, ...]
    fingerprint: str = ""


@dataclass
class Plan:
    stages: dict[str, StageSpec] = field(default_factory=dict)  # topological order

    pinned: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage name -> manifest it is forked from

    def add(self, name: str, kind: str, line: str, config: dict[str, Any], parents: tuple[str, ...]) -> str:
        if name in self.pinned:  # forked: reuse the existing artifact, drop what was upstream of it
            return self.pin(self.pinned[name])
        upstream = {p: self.stages[p].fingerprint for p in parents}
        fp = fingerprint(kind, config, upstream)
        self.stages[name] = StageSpec(name, kind, line, config, parents, fp)
        return name

    def pin(self, manifest: dict[str, Any]) -> str:
        """An existing artifact as a stage of this plan: its fingerprint is taken, not computed."""
        name = manifest["stage"]
        self.stages[name] = StageSpec(name, manifest["kind"], manifest.get("line", "base"), manifest["config"], (),
                                      manifest["fingerprint"])
        return name

    def ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        for parent in self.stages[name].parents:
            out |= {parent} | self.ancestors(parent)
        return out

    def select(self, kinds: list[str], superseded: set[str] = frozenset()) -> "Plan":
        """The stages of the chosen kinds plus everything upstream they need, in order.

        `superseded` stages (upstream of a fork) are not chosen for their own sake."""
        keep: set[str] = set()
        for name, spec in self.stages.items():
            if spec.kind in kinds and name not in superseded:
                keep |= {name} | self.ancestors(name)
        return Plan({n: s for n, s in self.stages.items() if n in keep}, self.pinned)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@lru_cache(maxsize=None)
def code_digest(kind: str) -> str:
    """Hash of the source files implementing a stage kind: a code change reruns what it touches."""
    digest = hashlib.sha256()
    for rel in KINDS[kind].code:
        target = PACKAGE_ROOT / rel
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for path in files:
            digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=None)
def library_versions() -> dict[str, str]:
    return {lib: importlib.metadata.version(lib) for lib in KEY_LIBRARIES}


def result_config(obj: Any) -> Any:
    """`obj` without its EXECUTION_KEYS, at any depth."""
    if isinstance(obj, dict):
        return {k: result_config(v) for k, v in obj.items() if k not in EXECUTION_KEYS}
    if isinstance(obj, list):
        return [result_config(v) for v in obj]
    return obj


def fingerprint(kind: str, config: dict[str, Any], upstream: dict[str, str]) -> str:
    payload = {"kind": kind, "config": result_config(config), "upstream": upstream, "code": code_digest(kind), "libs": library_versions()}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def build_plan(cfg: dict[str, Any], fork_from: dict[str, Any] | None = None) -> Plan:
    """The full stage graph for a validated flow config, restricted to `cfg["stages"]`.

    `fork_from` (a manifest) pins that stage to an existing artifact: the plan continues from it
    ("fork at any stage") and what was upstream of it is not rebuilt.
    """
    if not fork_from:
        return _graph(cfg, Plan()).select(cfg["stages"])
    full = _graph(cfg, Plan())
    if fork_from["stage"] not in full.stages:
        raise ValueError(f"cannot fork from {fork_from['stage']!r}: this flow's graph has {list(full.stages)}")
    forked = _graph(cfg, Plan(pinned={fork_from["stage"]: fork_from}))
    return forked.select(cfg["stages"], superseded=full.ancestors(fork_from["stage"]))


def _graph(cfg: dict[str, Any], plan: Plan) -> Plan:
    world = {"nprocs": cfg["launch"]["nprocs"]}
    plan.add("data", "data", "base", cfg["data"], ())
    previous = "data"
    for kind in ("pretrain", "midtrain", "longmino"):
        config = {"train": cfg[kind], "model": cfg["model"], "launch": world}
        previous = plan.add(kind, kind, "base", config, ("data",) if kind == "pretrain" else ("data", previous))
    base_eval = plan.add("base/eval", "eval", "base", {"eval": cfg["eval"], "template": None}, ("longmino",))
    plan.add("base/export", "export", "base", _export_config(cfg, "base", None), ("longmino", base_eval))
    for branch in cfg["posttrain"]["branches"]:
        spec = cfg["posttrain"][branch]
        model = "longmino"
        steps = []
        for step in spec["steps"]:
            config = {step: spec[step], "template": spec["template"], "model": cfg["model"]}
            model = plan.add(f"{branch}/{step}", step, branch, config, (model,))
            steps.append(model)
        evaluation = plan.add(f"{branch}/eval", "eval", branch, {"eval": cfg["eval"], "template": spec["template"]}, (*steps, base_eval))
        plan.add(f"{branch}/export", "export", branch, _export_config(cfg, branch, spec["template"]), (model, evaluation))
    return plan


def checkpoint_eval_plan(cfg: dict[str, Any], manifest: dict[str, Any]) -> Plan:
    """Evaluate one existing model artifact of any stage with the flow's eval config."""
    plan = Plan()
    name = plan.pin(manifest)
    template = manifest["config"].get("template")
    plan.add(f"{name}/eval", "eval", manifest.get("line", "base"), {"eval": cfg["eval"], "template": template}, (name,))
    return plan


def _export_config(cfg: dict[str, Any], line: str, template: str | None) -> dict[str, Any]:
    return {"line": line, "template": template, "registered_model": f"{cfg['tracking']['registered_model_prefix']}-{line}"}
