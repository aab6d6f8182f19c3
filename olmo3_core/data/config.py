"""Typed schema of the `data` config group (the flow schema leaves `data` to this stage).

Validation reuses OmegaConf's structured merge, so an unknown key or a wrong type fails before any
compute, naming the key; `check` adds the cross-field rules a type cannot express.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from olmo3_core.data import processors

SOURCE_KINDS = ("builtin_prose", "builtin_code", "builtin_math", "files", "pdf")
MIX_NAMES = ("pretrain", "midtrain", "longcontext")


class DataConfigError(ValueError):
    """A data config problem found before compute; the message names the key."""


@dataclass
class SourceConfig:
    kind: str = "files"
    paths: List[str] = field(default_factory=list)  # files or globs, local or s3:// (kinds files, pdf)
    max_docs: Optional[int] = None  # built-in sources: seeded sample of documents (builtin_math: docs generated)
    processors: Any = "prose"  # name of a chain in `pipelines`, or an inline list of processor specs
    storage_options: Dict[str, Any] = field(default_factory=dict)  # merged over the group's storage_options
    docs_per_shard: int = 500  # built-in sources: documents per materialized shard; pdf: PDFs per shard
    pdf_backend: str = "pypdf"  # pdf: pypdf (CPU) | olmocr (GPU, optional install)
    problems_per_doc: List[int] = field(default_factory=lambda: [2, 12])  # builtin_math: min, max per doc


@dataclass
class ExecutorConfig:
    kind: str = "process"  # process (ProcessPoolExecutor with `workers`) | dask
    address: Optional[str] = None  # dask scheduler tcp://host:port (workers must share the output filesystem); null: LocalCluster


@dataclass
class DedupConfig:
    exact: bool = True
    fuzzy: bool = True
    ngram: int = 5  # word shingle size
    num_perm: int = 128
    bands: int = 32  # LSH: 32 bands x 4 rows finds pairs from Jaccard ~0.45 up (a few words edited in a short doc)
    rows: int = 4
    threshold: float = 0.5  # estimated Jaccard a candidate pair must reach to count as near-dup
    seed: int = 42  # MinHash permutations


@dataclass
class DecontamConfig:
    ngram: int = 8  # words, as OLMo 3
    min_overlap: float = 0.5  # fraction of an eval item's n-grams found in a doc to flag it
    mode: str = "remove"  # remove | mask
    mask_with: str = "|||EVAL_OVERLAP|||"
    sets: Dict[str, int] = field(default_factory=lambda: {"procedural_math": 200, "humaneval": 164, "gsm8k_test": 1319})
    files: List[str] = field(default_factory=list)  # extra eval JSONL (text or prompt/answer fields)
    seed: int = 1234  # must match the eval stage's seed for procedural_math


@dataclass
class TokenizerConfig:
    vocab_size: int = 2048
    min_frequency: int = 2
    train_chars: int = 4_000_000  # curated characters sampled (round-robin over sources) for BPE training
    split_digits: bool = True  # one token per digit (as Llama does): arithmetic is learnable at small scale


@dataclass
class MixConfig:
    preset: Optional[str] = None  # a key of `presets`
    proportions: Dict[str, Any] = field(default_factory=dict)  # per-source target weights (numbers), over the preset
    tokens: int = 100_000  # target tokens; sources are up/down-sampled (seeded) to their share
    min_doc_tokens: int = 0  # only documents at least this long are eligible
    longest_first: bool = False  # take eligible documents longest first (Longmino) instead of shuffled


@dataclass
class DataConfig:
    seed: int = 0
    workers: int = 2
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    storage_options: Dict[str, Any] = field(default_factory=dict)
    sources: Dict[str, SourceConfig] = field(default_factory=dict)
    pipelines: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    presets: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # name -> per-source weights (numbers)
    mixes: Dict[str, MixConfig] = field(default_factory=dict)
    shard_tokens: int = 1 << 20  # tokens per packed mix shard
    quarantine_sample_chars: int = 200  # raw bytes kept per quarantined record, for diagnosis


def load(raw: dict[str, Any]) -> DataConfig:
    """Plain `data` dict -> validated `DataConfig`, raising `DataConfigError` naming the bad key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(DataConfig), raw)
        cfg: DataConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise DataConfigError(f"invalid data config key {key!r}: {str(exc).splitlines()[0]}") from exc
    check(cfg)
    return cfg


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise DataConfigError(message)


def check(cfg: DataConfig) -> None:
    _require(bool(cfg.sources), "data.sources is empty: name at least one source")
    _require(cfg.workers >= 1, f"data.workers must be >= 1, got {cfg.workers}")
    _require(cfg.executor.kind in ("process", "dask"), f"data.executor.kind must be process or dask, got {cfg.executor.kind!r}")
    for name, src in cfg.sources.items():
        _require(src.kind in SOURCE_KINDS, f"data.sources.{name}.kind must be one of {list(SOURCE_KINDS)}, got {src.kind!r}")
        _require(src.kind not in ("files", "pdf") or bool(src.paths), f"data.sources.{name}.paths is empty")
        _require(src.pdf_backend in ("pypdf", "olmocr"), f"data.sources.{name}.pdf_backend must be pypdf or olmocr")
        chain = src.processors
        _require(not isinstance(chain, str) or chain in cfg.pipelines,
                 f"data.sources.{name}.processors names unknown pipeline {chain!r}; known: {sorted(cfg.pipelines)}")
        try:
            processors.build(processor_chain(cfg, name))
        except ValueError as exc:
            raise DataConfigError(f"data.sources.{name}.processors: {exc}") from exc
    d = cfg.dedup
    _require(d.bands * d.rows <= d.num_perm, f"data.dedup.bands * rows ({d.bands * d.rows}) exceeds num_perm ({d.num_perm})")
    _require(cfg.decontam.mode in ("remove", "mask"), f"data.decontam.mode must be remove or mask, got {cfg.decontam.mode!r}")
    _require(sorted(cfg.mixes) == sorted(MIX_NAMES), f"data.mixes must define exactly {list(MIX_NAMES)}, got {sorted(cfg.mixes)}")
    weights = [(f"presets.{p}", w) for p, ws in cfg.presets.items() for w in ws.items()]
    weights += [(f"mixes.{m}.proportions", w) for m, mix in cfg.mixes.items() for w in mix.proportions.items()]
    for where, (source, w) in weights:
        _require(isinstance(w, (int, float)) and w >= 0, f"data.{where}.{source} must be a number >= 0, got {w!r}")
    for name, mix in cfg.mixes.items():
        _require(mix.preset is None or mix.preset in cfg.presets, f"data.mixes.{name}.preset {mix.preset!r} is not in data.presets")
        _require(mix.tokens > 0, f"data.mixes.{name}.tokens must be > 0")
    _require(cfg.tokenizer.vocab_size > 300, "data.tokenizer.vocab_size must exceed the 256 byte symbols plus special tokens")


def processor_chain(cfg: DataConfig, source: str) -> List[Dict[str, Any]]:
    chain: Union[str, List[Dict[str, Any]]] = cfg.sources[source].processors
    return list(cfg.pipelines[chain]) if isinstance(chain, str) else list(chain)
