"""Typed config of the data stage: the `data` group of the flow schema.

Validated at compose time like every other group: types by OmegaConf's structured merge, ranges by
the field metadata (`olmo3_core.config.typed`), cross-field rules in `olmo3_core.config.compose`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from olmo3_core.config.typed import ge0, gt0, one_of

SOURCE_KINDS = ("builtin_prose", "builtin_code", "builtin_math", "files", "pdf")
MIX_NAMES = ("pretrain", "midtrain", "longcontext")


@dataclass
class SourceConfig:
    kind: str = one_of("files", *SOURCE_KINDS)
    paths: List[str] = field(default_factory=list)  # files or globs, local or s3:// (kinds files, pdf)
    max_docs: Optional[int] = None  # built-in sources: seeded sample of documents (builtin_math: docs generated)
    processors: Any = "prose"  # name of a chain in `pipelines`, or an inline list of processor specs
    storage_options: Dict[str, Any] = field(default_factory=dict)  # merged over the group's storage_options
    docs_per_shard: int = gt0(500)  # built-in sources: documents per materialized shard; pdf: PDFs per shard
    pdf_backend: str = one_of("pypdf", "pypdf", "olmocr")  # pypdf (CPU) | olmocr (GPU, optional install)
    problems_per_doc: List[int] = field(default_factory=lambda: [2, 12])  # builtin_math: min, max per doc
    optional: bool = False  # True: a source that yields no documents is left out of the mixes instead of failing


@dataclass
class ExecutorConfig:
    kind: str = one_of("process", "process", "dask")  # ProcessPoolExecutor with `workers` | dask
    address: Optional[str] = None  # dask scheduler tcp://host:port (workers must share the output filesystem); null: LocalCluster


@dataclass
class DedupConfig:
    exact: bool = True
    fuzzy: bool = True
    ngram: int = gt0(5)  # word shingle size
    num_perm: int = gt0(128)
    bands: int = gt0(32)  # LSH: 32 bands x 4 rows finds pairs from Jaccard ~0.45 up (a few words edited in a short doc)
    rows: int = gt0(4)
    threshold: float = ge0(0.5)  # estimated Jaccard a candidate pair must reach to count as near-dup
    seed: int = 42  # MinHash permutations


@dataclass
class DecontamConfig:
    ngram: int = gt0(8)  # words, as OLMo 3
    min_overlap: float = gt0(0.5)  # fraction of an eval item's n-grams found in a doc to flag it
    mode: str = one_of("remove", "remove", "mask")
    mask_with: str = "|||EVAL_OVERLAP|||"
    # Eval set -> items checked. None (default): what the eval stage evaluates (`eval.sets`) plus
    # `extra_sets`, resolved at compose time. Given explicitly, it must cover every eval set's items
    # (a config error otherwise) unless that set is named in `unchecked_eval_sets`.
    sets: Optional[Dict[str, int]] = None
    extra_sets: Dict[str, int] = field(default_factory=lambda: {"humaneval": 164, "gsm8k_test": 1319})  # whole public test sets
    unchecked_eval_sets: List[str] = field(default_factory=list)
    files: List[str] = field(default_factory=list)  # extra eval JSONL (text or prompt/answer fields)
    seed: Optional[int] = None  # None: eval.seed (which procedural_math items the eval draws)
    min_question_ngrams: int = gt0(3)  # a question with fewer distinctive n-grams is too generic to match on
    template_items: int = gt0(3)  # an n-gram in this many eval questions is template wording, not evidence
    min_run: int = gt0(4)  # consecutive question n-grams a document must quote to count


@dataclass
class TokenizerConfig:
    # A local directory holding a saved Hugging Face tokenizer (e.g. a copy of allenai/dolma2-tokenizer, the
    # OLMo 3 tokenizer: 100,278 ids): used as is, with the project's chat tokens added where it lacks them,
    # and the fields below are ignored. None: train a byte-level BPE on the curated corpus. Nothing is
    # downloaded: a hub name is not accepted, copy the tokenizer files to a directory first.
    path: Optional[str] = None
    vocab_size: int = field(default=2048, metadata={"gt": 300})  # above the 256 byte symbols plus special tokens
    min_frequency: int = gt0(2)
    train_chars: int = gt0(4_000_000)  # curated characters sampled (round-robin over sources) for BPE training
    split_digits: bool = True  # one token per digit (as Llama does): arithmetic is learnable at small scale


@dataclass
class MixConfig:
    preset: Optional[str] = None  # a key of `presets`
    proportions: Dict[str, float] = field(default_factory=dict)  # per-source target weights, over the preset
    tokens: int = gt0(100_000)  # target tokens; sources are up/down-sampled (seeded) to their share
    min_doc_tokens: int = ge0(0)  # only documents at least this long are eligible
    longest_first: bool = False  # take eligible documents longest first (Longmino) instead of shuffled


@dataclass
class DataConfig:
    seed: int = 0
    workers: int = gt0(2)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    storage_options: Dict[str, Any] = field(default_factory=dict)
    sources: Dict[str, SourceConfig] = field(default_factory=dict)
    pipelines: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    # name -> per-source weights; the inner values are checked at compose time (OmegaConf refuses an
    # int for a float inside a nested dict, so `{prose: 1}` would not load if typed float here)
    presets: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    mixes: Dict[str, MixConfig] = field(default_factory=dict)
    shard_tokens: int = gt0(1 << 20)  # tokens per packed mix shard
    quarantine_sample_chars: int = ge0(200)  # raw bytes kept per quarantined record, for diagnosis

    def processor_chain(self, source: str) -> List[Dict[str, Any]]:
        chain: Union[str, List[Dict[str, Any]]] = self.sources[source].processors
        return list(self.pipelines[chain]) if isinstance(chain, str) else list(chain)
