"""Compose `conf/` with Hydra once, then validate against the typed schema, naming any bad key."""
from __future__ import annotations

import dataclasses
import threading
import typing
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from olmo3_core.config.schema import FlowConfig
from olmo3_core.config.typed import ConfigError, check_ranges
from olmo3_core.data import processors
from olmo3_core.data.config import MIX_NAMES, DataConfig
from olmo3_core.evaluation.checks import check_eval_config
from olmo3_core.kinds import BASE_TRAINING, BRANCHES, POSTTRAIN_STEPS, STAGE_KINDS, init_from


_HYDRA = threading.Lock()  # Hydra's GlobalHydra is process-wide: flows composed in threads take turns


def conf_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "conf"


def _hydra_compose(overrides: Sequence[str]):
    """Compose `conf/flow.yaml` on top of the schema's defaults, so every schema key can be overridden
    without `+`. The defaults go in as plain data: Hydra applies overrides by assignment, which a
    typed node refuses for a new dict entry (`+data.sources.web={kind: files, ...}`); the typed merge
    in `_typed` then checks every key and type."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException

    ConfigStore.instance().store(name="flow_schema", node=OmegaConf.to_container(OmegaConf.structured(FlowConfig)))
    try:
        with _HYDRA, initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            return compose(config_name="flow", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad override: {exc}") from exc


def _check_known_keys(node: Any, schema: Any, path: str) -> None:
    """Every key must be a schema field, at any depth: `+key=...` appends would otherwise let typos
    through. Dict-typed fields check their values against the dict's value type."""
    origin = typing.get_origin(schema)
    if origin is dict or origin is typing.Dict:
        value_type = typing.get_args(schema)[1]
        for key, value in node.items():
            _check_known_keys(value, value_type, f"{path}.{key}")
        return
    if not (dataclasses.is_dataclass(schema) and isinstance(node, dict)):
        return
    hints = typing.get_type_hints(schema)
    for key, value in node.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in hints:
            raise ConfigError(f"unknown config key {full!r}; {path or 'the top level'} has {sorted(hints)}")
        _check_known_keys(value, hints[key], full)


def _typed(raw) -> FlowConfig:
    """Merge into the structured schema: wrong types fail here, naming the key (`full_key`)."""
    try:
        OmegaConf.resolve(raw)
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FlowConfig), raw))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"invalid config key {key!r}: {msg}" if key else f"invalid config: {msg}") from exc


def _check_consistency(cfg: FlowConfig) -> None:
    for kind in cfg.stages:
        if kind not in STAGE_KINDS:
            raise ConfigError(f"stages: unknown stage {kind!r}; known: {list(STAGE_KINDS)}")
    for branch in cfg.posttrain.branches:
        if branch not in BRANCHES:
            raise ConfigError(f"posttrain.branches: unknown branch {branch!r}; known: {list(BRANCHES)}")
        steps = getattr(cfg.posttrain, branch).steps
        if not steps or [s for s in POSTTRAIN_STEPS if s in steps] != list(steps):
            raise ConfigError(f"posttrain.{branch}.steps must be a non-empty ordered subset of {list(POSTTRAIN_STEPS)}, got {steps}")
        if getattr(cfg.posttrain, branch).sft.warmup_ratio >= 1:
            raise ConfigError(f"posttrain.{branch}.sft.warmup_ratio must be < 1 (a fraction of max_steps)")
    m = cfg.model
    if m.hidden_size % m.num_heads:
        raise ConfigError(f"model.hidden_size ({m.hidden_size}) must be divisible by model.num_heads ({m.num_heads})")
    if m.num_heads % m.num_kv_heads:
        raise ConfigError(f"model.num_heads ({m.num_heads}) must be divisible by model.num_kv_heads ({m.num_kv_heads})")
    for stage in BASE_TRAINING:
        getattr(cfg, stage).check(stage, has_upstream=init_from(stage) is not None)
        seq_len = getattr(cfg, stage).seq_len
        if seq_len > m.max_position_embeddings:
            raise ConfigError(f"{stage}.seq_len ({seq_len}) exceeds model.max_position_embeddings ({m.max_position_embeddings})")
    long, mid = cfg.longmino, cfg.midtrain
    if long.yarn_factor > 1 and long.seq_len > mid.seq_len * long.yarn_factor:
        raise ConfigError(f"longmino.seq_len ({long.seq_len}) exceeds what YaRN reaches from midtrain.seq_len "
                          f"({mid.seq_len}) x longmino.yarn_factor ({long.yarn_factor})")
    _check_vocab(cfg)
    _check_launch(cfg)
    _check_data(cfg.data)
    check_eval_config(cfg.eval, m.max_position_embeddings)


def _check_vocab(cfg: FlowConfig) -> None:
    """A token id at or above model.vocab_size indexes past the embedding table: on CPU an IndexError
    mid-training, on CUDA a device-side assert that kills the job. A tokenizer loaded from
    data.tokenizer.path is measured (with the chat tokens the data stage adds to it); a trained one has
    (at most) data.tokenizer.vocab_size tokens, special tokens included."""
    from olmo3_core.data import tokenizer
    from olmo3_core.model.build import vocab_mismatch

    tok = cfg.data.tokenizer
    if tok.path:
        try:
            size, source = tokenizer.local_size(tok.path), f"data.tokenizer.path={tok.path}"
        except (OSError, ValueError) as exc:
            raise ConfigError(f"data.tokenizer.path: cannot load a tokenizer from {tok.path}: {exc}") from exc
    else:
        size, source = tok.vocab_size, "data.tokenizer.vocab_size"
    problem = vocab_mismatch(cfg.model.vocab_size, size, source)
    if problem:
        raise ConfigError(problem)


def _check_launch(cfg: FlowConfig) -> None:
    from olmo3_core.launch import check_multi_node

    try:
        check_multi_node(cfg.launch)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_data(cfg: DataConfig) -> None:
    """The data group's rules a type cannot express."""
    _require(bool(cfg.sources), "data.sources is empty: name at least one source")
    for name, src in cfg.sources.items():
        _require(src.kind not in ("files", "pdf") or bool(src.paths), f"data.sources.{name}.paths is empty")
        chain = src.processors
        _require(not isinstance(chain, str) or chain in cfg.pipelines,
                 f"data.sources.{name}.processors names unknown pipeline {chain!r}; known: {sorted(cfg.pipelines)}")
        try:
            processors.build(cfg.processor_chain(name))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.sources.{name}.processors: {exc}") from exc
    d = cfg.dedup
    _require(d.bands * d.rows <= d.num_perm, f"data.dedup.bands * rows ({d.bands * d.rows}) exceeds num_perm ({d.num_perm})")
    _require(sorted(cfg.mixes) == sorted(MIX_NAMES), f"data.mixes must define exactly {list(MIX_NAMES)}, got {sorted(cfg.mixes)}")
    weights = [(f"presets.{p}", w) for p, ws in cfg.presets.items() for w in ws.items()]
    weights += [(f"mixes.{m}.proportions", w) for m, mix in cfg.mixes.items() for w in mix.proportions.items()]
    for where, (source, w) in weights:
        _require(isinstance(w, (int, float)) and w >= 0, f"data.{where}.{source} must be a number >= 0, got {w!r}")
    for name, mix in cfg.mixes.items():
        _require(mix.preset is None or mix.preset in cfg.presets, f"data.mixes.{name}.preset {mix.preset!r} is not in data.presets")


def _resolve_decontam(cfg: FlowConfig) -> None:
    """One source of truth: decontamination checks what the eval stage evaluates, with its seed."""
    d, evaluated = cfg.data.decontam, {name: n for name, n in cfg.eval.sets.items() if n > 0}
    if d.seed is None:
        d.seed = cfg.eval.seed
    elif "procedural_math" in evaluated and d.seed != cfg.eval.seed:
        raise ConfigError(f"data.decontam.seed ({d.seed}) differs from eval.seed ({cfg.eval.seed}): the procedural_math "
                          f"items evaluated would not be the ones checked; leave data.decontam.seed null")
    if d.sets is None:
        d.sets = {name: max(n, evaluated.get(name, 0)) for name, n in {**d.extra_sets, **evaluated}.items()}
    for name, n in evaluated.items():
        if d.sets.get(name, 0) < n and name not in d.unchecked_eval_sets:
            raise ConfigError(f"eval.sets.{name} evaluates {n} items but data.decontam.sets checks {d.sets.get(name, 0)}: "
                              f"raise it, leave data.decontam.sets null (derived from eval.sets), or allow it "
                              f"with data.decontam.unchecked_eval_sets=[{name}]")


def compose_config(overrides: Sequence[str] = ()) -> FlowConfig:
    """Hydra overrides -> validated, typed flow config. Raises `ConfigError` naming the key."""
    raw = _hydra_compose(overrides)
    _check_known_keys(OmegaConf.to_container(raw), FlowConfig, "")
    cfg = _typed(raw)
    check_ranges(cfg, "")
    _check_consistency(cfg)
    _resolve_decontam(cfg)
    return cfg
