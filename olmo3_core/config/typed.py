"""The one validation idiom for every config dataclass, and the one way they cross process boundaries.

Fields declare their ranges as metadata (`gt0`, `ge0`, `one_of`); `check_ranges` enforces them at any
depth (nested dataclasses, dicts and lists of them) and names the offending key. `to_dict` /
`from_dict` turn a config or job dataclass into plain JSON types and back through the same class, with
OmegaConf's structured merge checking keys and types on the way in.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem found before compute; the message names the key."""


def gt0(default):
    return dataclasses.field(default=default, metadata={"gt": 0})


def ge0(default):
    return dataclasses.field(default=default, metadata={"ge": 0})


def one_of(default, *choices):
    return dataclasses.field(default=default, metadata={"choices": choices})


def check_ranges(obj: Any, path: str) -> None:
    """Enforce the `gt`/`ge`/`choices` field metadata of `obj` and everything nested in it."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            check_ranges(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            check_ranges(value, f"{path}[{i}]")
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            value, key = getattr(obj, f.name), f"{path}.{f.name}" if path else f.name
            meta = f.metadata
            if "gt" in meta and not value > meta["gt"]:
                raise ConfigError(f"{key} must be > {meta['gt']}, got {value}")
            if "ge" in meta and not value >= meta["ge"]:
                raise ConfigError(f"{key} must be >= {meta['ge']}, got {value}")
            if "choices" in meta and value not in meta["choices"]:
                raise ConfigError(f"{key} must be one of {list(meta['choices'])}, got {value!r}")
            check_ranges(value, key)


def to_dict(obj: Any) -> dict[str, Any]:
    """A config or job dataclass as plain JSON types."""
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: dict[str, Any], what: str = "") -> T:
    """`data` (as written by `to_dict`) back into `cls`; unknown keys and wrong types raise ConfigError."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        where = f"{what}: " if what else ""
        raise ConfigError(f"{where}invalid key {key!r}: {str(exc).splitlines()[0]}") from exc
