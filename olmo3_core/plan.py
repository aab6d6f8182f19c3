"""The flow as data: stage kinds, the stage graph a config implies, and each stage's fingerprint.

Like Marin's executor, a stage is declared (kind, typed config, parents) and its output path is
versioned by a hash of its config, its parents' fingerprints, the code that implements it and the key
library versions, so the plan (and what is cached) is known before anything runs. The code part is
the source of every `olmo3_core` module the kind's entry point can import (the static import graph,
`import_closure`), so no hand-kept list can miss a file.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from olmo3_core.config.schema import (EvalStageConfig, ExportStageConfig, FlowConfig, LaunchConfig, PairsStageConfig,
                                      PosttrainStageConfig, SoupStageConfig, TraceIndexStageConfig, TrainStageConfig)
from olmo3_core.config.typed import ConfigError, from_dict, to_dict
from olmo3_core.data import stage as data_stage
from olmo3_core.data.config import DataConfig
from olmo3_core.evaluation import stage as eval_stage
from olmo3_core.evaluation import trace as trace_stage
from olmo3_core.export import stage as export_stage
from olmo3_core.inputs import FileIdentity, identify_all
from olmo3_core.kinds import BASE_TRAINING, PAIRS, POSTTRAIN_STEPS, SOUP, STAGE_KINDS, TRACE_INDEX
from olmo3_core.launch import validate_hostfile
from olmo3_core.posttrain import pairs as pairs_stage
from olmo3_core.posttrain import stage as posttrain_stage
from olmo3_core.problems.evalsets import get_eval_set, local_files
from olmo3_core.soup import stage as soup_stage
from olmo3_core.train import stage as train_stage

PACKAGE = "olmo3_core"
PACKAGE_ROOT = Path(__file__).resolve().parent
KEY_LIBRARIES = ("torch", "transformers", "trl", "deepspeed", "tokenizers")
# Keys that say where or how work runs, not what it produces: kept out of fingerprints, so moving
# storage endpoints, rotating credentials or changing worker counts never invalidates the cache.
EXECUTION_KEYS = frozenset({"storage_options", "workers", "executor"})


@dataclass(frozen=True)
class StageKind:
    name: str
    entrypoint: Callable  # run(ctx: StageContext) -> StageResult
    config_type: type  # the typed config this kind's stages are given


KINDS: dict[str, StageKind] = {k.name: k for k in (
    StageKind("data", data_stage.run, DataConfig),
    StageKind(TRACE_INDEX, trace_stage.run, TraceIndexStageConfig),
    *(StageKind(kind, train_stage.run, TrainStageConfig) for kind in BASE_TRAINING[:2]),
    StageKind(SOUP, soup_stage.run, SoupStageConfig),
    *(StageKind(kind, train_stage.run, TrainStageConfig) for kind in BASE_TRAINING[2:]),
    *(StageKind(kind, posttrain_stage.run, PosttrainStageConfig) for kind in POSTTRAIN_STEPS[:1]),
    StageKind(PAIRS, pairs_stage.run, PairsStageConfig),
    *(StageKind(kind, posttrain_stage.run, PosttrainStageConfig) for kind in POSTTRAIN_STEPS[1:]),
    StageKind("eval", eval_stage.run, EvalStageConfig),
    StageKind("export", export_stage.run, ExportStageConfig),
)}
if tuple(KINDS) != STAGE_KINDS:
    raise ImportError(f"plan.KINDS {tuple(KINDS)} does not follow olmo3_core.kinds.STAGE_KINDS {STAGE_KINDS}")


@dataclass(frozen=True)
class StageSpec:
    name: str  # unique in the plan: "pretrain", "instruct/sft", "base/eval", ...
    kind: str
    line: str  # "base" or a post-training branch
    config: Any  # an instance of KINDS[kind].config_type
    parents: tuple[str, ...]
    fingerprint: str = ""
    files: tuple[FileIdentity, ...] = ()  # files it reads from outside the store, by content


@dataclass
class Plan:
    stages: dict[str, StageSpec] = field(default_factory=dict)  # topological order

    pinned: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage name -> manifest it is forked from

    def add(self, name: str, kind: str, line: str, config: Any, parents: tuple[str, ...],
            files: tuple[FileIdentity, ...] = ()) -> str:
        if name in self.pinned:  # forked: reuse the existing artifact, drop what was upstream of it
            return self.pin(self.pinned[name])
        upstream = {p: self.stages[p].fingerprint for p in parents}
        self.stages[name] = StageSpec(name, kind, line, config, parents, fingerprint(kind, config, upstream, files), files)
        return name

    def pin(self, manifest: dict[str, Any]) -> str:
        """An existing artifact as a stage of this plan: its fingerprint is taken, not computed."""
        name, kind = manifest["stage"], manifest["kind"]
        config = from_dict(KINDS[kind].config_type, manifest["config"], f"config of artifact {manifest.get('uri', name)}")
        self.stages[name] = StageSpec(name, kind, manifest.get("line", "base"), config, (), manifest["fingerprint"])
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


def _module_path(module: str) -> Path | None:
    """The source file of an `olmo3_core` module or package, None if there is none."""
    rel = Path(*module.split(".")[1:])
    for candidate in (PACKAGE_ROOT / rel / "__init__.py", (PACKAGE_ROOT / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(module: str, path: Path) -> set[str]:
    """The `olmo3_core` modules that `module`'s source imports anywhere (function-level imports too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import submodule`
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


@lru_cache(maxsize=None)
def import_closure(module: str) -> tuple[Path, ...]:
    """Every `olmo3_core` source file that importing `module` can execute: the transitive closure of
    its imports, with the `__init__.py` of every package on the way."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            path = _module_path(prefix)
            if path is None:  # `from pkg import name` where name is not a module
                continue
            seen[prefix] = path
            todo.extend(_imported(prefix, path))
    return tuple(sorted(seen.values()))


@lru_cache(maxsize=None)
def code_digest(kind: str) -> str:
    """Hash of every source file the kind's entry point can import: a code change reruns what it touches."""
    digest = hashlib.sha256()
    for path in import_closure(KINDS[kind].entrypoint.__module__):
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


def fingerprint(kind: str, config: Any, upstream: dict[str, str], files: tuple[FileIdentity, ...] = ()) -> str:
    payload = {"kind": kind, "config": result_config(to_dict(config)), "upstream": upstream, "code": code_digest(kind),
               "libs": library_versions(), "files": [(f.uri, f.bytes, f.digest) for f in files]}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def _identify(key: str, patterns: list[str], storage_options: dict[str, Any], source: str) -> list[FileIdentity]:
    """The files `patterns` (the value of config key `key`) match, by content; an error names the key."""
    try:
        return identify_all(patterns, storage_options, source)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def _eval_files(names: list[str], source: str) -> list[FileIdentity]:
    return [f for name in names for f in identify_all(local_files(name), {}, f"{source}:{name}")]


def data_files(data: DataConfig) -> tuple[FileIdentity, ...]:
    """Every file the data stage reads: source files and globs, decontamination files and eval copies."""
    files = [f for name, src in data.sources.items() if src.kind in ("files", "pdf")
             for f in _identify(f"data.sources.{name}.paths", src.paths, {**data.storage_options, **src.storage_options}, name)]
    if data.tokenizer.path:  # a loaded tokenizer decides every token id: its files are part of the data's identity
        files += _identify("data.tokenizer.path", [f"{data.tokenizer.path.rstrip('/')}/*"], {}, "tokenizer")
    return tuple(files + decontam_files(data))


def decontam_files(data: DataConfig) -> list[FileIdentity]:
    """What decontamination reads (user eval files, local eval-set copies): the data stage's and the
    post-training steps', which decontaminate their rows the same way."""
    return (_identify("data.decontam.files", data.decontam.files, data.storage_options, "decontam")
            + _eval_files([s for s, n in data.decontam.sets.items() if n > 0], "decontam"))


def world_size(launch: LaunchConfig) -> int:
    """Processes of a training job, over all nodes: the hostfile's slots, else `nprocs` on each of `nnodes`."""
    return validate_hostfile(launch.hostfile) if launch.hostfile else launch.nprocs * launch.nnodes


def build_plan(cfg: FlowConfig, fork_from: dict[str, Any] | None = None) -> Plan:
    """The full stage graph for a validated flow config, restricted to `cfg.stages`.

    `fork_from` (a manifest) pins that stage to an existing artifact: the plan continues from it
    ("fork at any stage") and what was upstream of it is not rebuilt.
    """
    if not fork_from:
        return _graph(cfg, Plan()).select(cfg.stages)
    full = _graph(cfg, Plan())
    if fork_from["stage"] not in full.stages:
        raise ConfigError(f"fork_from: cannot fork from {fork_from['stage']!r}: this flow's graph has {list(full.stages)}")
    forked = _graph(cfg, Plan(pinned={fork_from["stage"]: fork_from}))
    return forked.select(cfg.stages, superseded=full.ancestors(fork_from["stage"]))


def _graph(cfg: FlowConfig, plan: Plan) -> Plan:
    plan.add("data", "data", "base", cfg.data, (), data_files(cfg.data))
    if not plan.pinned or "data" in plan.pinned:  # a fork from a later stage does not rebuild data, nor index it
        _trace_index(plan, "data")
    # base-training kind -> the stages it adds and the one holding its model (midtrain's: its soup, when souped)
    built: dict[str, tuple[tuple[str, ...], str]] = {}
    upstream: str | None = None
    for kind in BASE_TRAINING:
        parents = ("data", upstream) if upstream else ("data",)
        if kind == "midtrain":
            built[kind] = _midtrain(cfg, plan, parents)
        else:
            config = TrainStageConfig(train=getattr(cfg, kind), model=cfg.model, world_size=world_size(cfg.launch))
            name = plan.add(kind, kind, "base", config, parents)
            built[kind] = ((name,), name)
        upstream = built[kind][1]
    models = {kind: model for kind, (_, model) in built.items()}
    base_model = models[BASE_TRAINING[-1]]
    eval_files = tuple(_eval_files([s for s, n in cfg.eval.sets.items() if n > 0], "eval"))
    # earlier stages compared in the base eval, unless a fork from a later stage means they are not built
    evaluated = (*(models[k] for i, k in enumerate(BASE_TRAINING[:-1]) if k in cfg.eval.compare_base_stages
                   and not any(name in plan.pinned for later in BASE_TRAINING[i + 1:] for name in built[later][0])),
                 base_model)
    base_eval = plan.add("base/eval", "eval", "base", EvalStageConfig(eval=cfg.eval, template=None), evaluated,
                         eval_files)
    plan.add("base/export", "export", "base", _export_config(cfg, "base", None), (base_model, base_eval))
    for branch in cfg.posttrain.branches:
        spec = getattr(cfg.posttrain, branch)
        model, steps = base_model, []
        for step in spec.steps:
            step_cfg = getattr(spec, step)
            config = PosttrainStageConfig(template=spec.template, world_size=world_size(cfg.launch),
                                          decontam=cfg.data.decontam, **{step: step_cfg})
            _check_posttrain_batch(f"posttrain.{branch}.{step}", config)
            files = _identify(f"posttrain.{branch}.{step}.files", step_cfg.files, cfg.storage.storage_options, "files")
            files += decontam_files(cfg.data)
            if step == "rlvr" and step_cfg.gsm8k_train:
                files += _eval_files(["gsm8k_train"], step)
            parents = (model,)
            if step == "dpo" and step_cfg.pairs == "delta":
                parents += (_delta_pairs(cfg, plan, branch, spec.template, model, models),)
            model = plan.add(f"{branch}/{step}", step, branch, config, parents, tuple(files))
            steps.append(model)
        evaluation = plan.add(f"{branch}/eval", "eval", branch, EvalStageConfig(eval=cfg.eval, template=spec.template),
                              (*steps, base_eval), eval_files)
        plan.add(f"{branch}/export", "export", branch, _export_config(cfg, branch, spec.template), (model, evaluation))
    return plan


def _midtrain(cfg: FlowConfig, plan: Plan, parents: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """midtrain's stages and the one holding its model: a run per data-order seed of `midtrain.ingredients`
    (independent stages, so `orchestration.max_parallel_stages` runs them side by side) and, with more
    than one, the soup of them that longmino continues from."""
    mid = cfg.midtrain

    def run(name: str, seed: int) -> str:
        config = TrainStageConfig(train=mid.ingredient(seed), model=cfg.model, world_size=world_size(cfg.launch))
        return plan.add(name, "midtrain", "base", config, parents)

    if len(mid.ingredients) == 1:
        name = run("midtrain", mid.ingredients[0])
        return (name,), name
    runs = tuple(run(f"midtrain/seed{seed}", seed) for seed in mid.ingredients)
    try:
        get_eval_set(mid.soup.heldout_set)
    except ValueError as exc:
        raise ConfigError(f"midtrain.soup.heldout_set: {exc}") from exc
    files = tuple(_eval_files([mid.soup.heldout_set], SOUP))
    config = SoupStageConfig(ingredients=list(mid.ingredients), soup=mid.soup, seq_len=mid.seq_len)
    return (*runs, SOUP), plan.add(SOUP, SOUP, "base", config, runs, files)


def _delta_pairs(cfg: FlowConfig, plan: Plan, branch: str, template: str, stronger: str, models: dict[str, str]) -> str:
    """The dpo_pairs stage of a line's DPO step: chosen from the model DPO continues from, rejected from
    the configured base-training stage's model (`models`: kind -> stage; both are its parents, in that
    order, so DPO's lineage names both)."""
    delta = getattr(cfg.posttrain, branch).dpo.delta
    key = f"posttrain.{branch}.dpo.delta.rejected_from"
    rejected = models.get(delta.rejected_from)
    if rejected not in plan.stages:
        raise ConfigError(f"{key}: {delta.rejected_from!r} is not a stage of this flow")
    if plan.stages[rejected].kind == plan.stages[stronger].kind:
        raise ConfigError(f"{key}: the rejected model ({delta.rejected_from}) is the model DPO continues from; "
                          f"delta learning needs a weaker one (run SFT first, or pick an earlier stage)")
    return plan.add(f"{branch}/{PAIRS}", PAIRS, branch, PairsStageConfig(template=template, pairs=delta),
                    (stronger, rejected))


def _check_posttrain_batch(key: str, config: PosttrainStageConfig) -> None:
    """A post-training step's global batch must split evenly over the job's processes (and, for RL with
    zero-variance filtering, into whole groups per process)."""
    step, world = config.step, config.world_size
    if step.batch_size % world:
        raise ConfigError(f"{key}.batch_size ({step.batch_size}) must be a multiple of the processes "
                          f"({world}, launch.nprocs / launch.hostfile)")
    if hasattr(step, "num_generations"):
        per_process = step.batch_size // world
        if step.batch_size % step.num_generations or (step.filter_zero_variance and per_process % step.num_generations):
            raise ConfigError(f"{key}.batch_size ({step.batch_size}) must hold whole groups of {key}.num_generations "
                              f"({step.num_generations}) on each of the {world} processes")


def _trace_index(plan: Plan, data: str) -> str:
    """The trace_index stage of a data stage: every flow indexes the same way (the config's defaults)."""
    return plan.add(TRACE_INDEX, TRACE_INDEX, "base", TraceIndexStageConfig(), (data,))


def trace_index_plan(data: dict[str, Any]) -> Plan:
    """Index one existing data artifact (its manifest): the trace_index stage `_graph` adds, over the
    artifact pinned, so the fingerprint is the one a flow run gives it."""
    plan = Plan()
    _trace_index(plan, plan.pin(data))
    return plan


def checkpoint_eval_plan(cfg: FlowConfig, manifest: dict[str, Any]) -> Plan:
    """Evaluate one existing model artifact of any stage with the flow's eval config."""
    plan = Plan()
    name = plan.pin(manifest)
    template = getattr(plan.stages[name].config, "template", None)
    plan.add(f"{name}/eval", "eval", manifest.get("line", "base"), EvalStageConfig(eval=cfg.eval, template=template), (name,),
             tuple(_eval_files([s for s, n in cfg.eval.sets.items() if n > 0], "eval")))
    return plan


def _export_config(cfg: FlowConfig, line: str, template: str | None) -> ExportStageConfig:
    return ExportStageConfig(line=line, template=template, registered_model=f"{cfg.tracking.registered_model_prefix}-{line}")
