"""Compose `conf/` with Hydra once, then validate against the schema, naming any bad key."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from olmo3_core.config.schema import BRANCHES, STAGE_KINDS, FlowConfig

POSTTRAIN_STEPS = ("sft", "dpo", "rlvr")


class ConfigError(ValueError):
    """A config problem found before compute; the message names the key."""


def conf_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "conf"


def _hydra_compose(overrides: Sequence[str]):
    """Compose `conf/flow.yaml` on top of the registered schema, so every schema key (defaults
    included) can be overridden without `+`, and types are checked as overrides are applied."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException

    ConfigStore.instance().store(name="flow_schema", node=FlowConfig)
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            return compose(config_name="flow", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad override: {exc}") from exc


def _typed(raw) -> Any:
    """Merge into the structured schema: unknown keys and wrong types fail here, with `full_key`."""
    try:
        OmegaConf.resolve(raw)
        return OmegaConf.merge(OmegaConf.structured(FlowConfig), raw)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"invalid config key {key!r}: {msg}" if key else f"invalid config: {msg}") from exc


def _check_known_keys(node: dict[str, Any], schema: type, path: str) -> None:
    """Every key must be a schema field (`+key=...` appends would otherwise let typos through);
    free-form `Dict` fields (data, storage_options, mixtures) are checked by their own consumers."""
    hints = typing.get_type_hints(schema)
    for key, value in node.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in hints:
            raise ConfigError(f"unknown config key {full!r}; {path or 'the top level'} has {sorted(hints)}")
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            _check_known_keys(value, hints[key], full)


def _check_ranges(obj: Any, path: str) -> None:
    """Walk the schema dataclasses and enforce the `gt`/`ge`/`choices` field metadata."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value):
            _check_ranges(value, key)
            continue
        meta = f.metadata
        if "gt" in meta and not value > meta["gt"]:
            raise ConfigError(f"{key} must be > {meta['gt']}, got {value}")
        if "ge" in meta and not value >= meta["ge"]:
            raise ConfigError(f"{key} must be >= {meta['ge']}, got {value}")
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{key} must be one of {list(meta['choices'])}, got {value!r}")


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
    m = cfg.model
    if m.hidden_size % m.num_heads:
        raise ConfigError(f"model.hidden_size ({m.hidden_size}) must be divisible by model.num_heads ({m.num_heads})")
    if m.num_heads % m.num_kv_heads:
        raise ConfigError(f"model.num_heads ({m.num_heads}) must be divisible by model.num_kv_heads ({m.num_kv_heads})")
    for stage in ("pretrain", "midtrain", "longmino"):
        seq_len = getattr(cfg, stage).seq_len
        if seq_len > m.max_position_embeddings:
            raise ConfigError(f"{stage}.seq_len ({seq_len}) exceeds model.max_position_embeddings ({m.max_position_embeddings})")
    long, mid = cfg.longmino, cfg.midtrain
    if long.yarn_factor > 1 and long.seq_len > mid.seq_len * long.yarn_factor:
        raise ConfigError(f"longmino.seq_len ({long.seq_len}) exceeds what YaRN reaches from midtrain.seq_len "
                          f"({mid.seq_len}) x longmino.yarn_factor ({long.yarn_factor})")


def compose_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Hydra overrides -> validated, fully resolved plain dict. Raises `ConfigError` naming the key."""
    raw = _hydra_compose(overrides)
    _check_known_keys(OmegaConf.to_container(raw), FlowConfig, "")
    typed = _typed(raw)
    obj: FlowConfig = OmegaConf.to_object(typed)
    _check_ranges(obj, "")
    _check_consistency(obj)
    return OmegaConf.to_container(typed, resolve=True)
