"""Output -> training data: the longest spans of a text that occur verbatim in a data artifact's token shards.

As AI2's OLMoTrace, on a smaller scale: a suffix array over every packed token shard of the data
artifact (all mixes: pretrain, midtrain, long-context), built once per artifact and cached by its
fingerprint; and one per post-training stage in a model's lineage (SFT / DPO / RL rows, each message a
document, rebuilt from the stage's recorded config). A query tokenizes the text with the data
artifact's tokenizer, finds for every start position the longest run of tokens that occurs in the
corpus, keeps the maximal ones (not inside a longer span), and maps each occurrence back to its
document: through the shard index that `trace-tokens` uses (`olmo3_core.data.provenance.trace_token`)
for base-training data, through the index's own document table for post-training rows.

Index layout (`<cache>/trace_index/<artifact fingerprint>-v<N>/`): `corpus.npy` (the token runs,
separated by SEPARATOR, which is no token id), `sa.npy` (suffix array, int64), `segments.json` (for
each run: where it came from and its first corpus position).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SEPARATOR = np.uint32(2**32 - 1)  # between shards: no span can cross from one shard into the next
# Suffixes are sorted by their first MAX_SPAN tokens (prefix doubling stops there), so a span is
# reported at most this long; a verbatim run longer than this is found as its MAX_SPAN-token prefix.
MAX_SPAN = 1024
INDEX_VERSION = 2


@dataclass(frozen=True)
class Segment:
    """One run of tokens in the corpus: a packed shard, or one message of a post-training row."""

    start: int  # its first position in the corpus
    shard: str = ""  # base-training data: path of the shard .npy (documents found through its index)
    mix: str = ""
    document_id: str = ""  # post-training rows: the document itself
    source: str = ""
    documents_file: str = ""
    documents_row: int = -1


@dataclass(frozen=True)
class DocumentHit:
    document_id: str
    source: str
    documents_file: str
    documents_row: int
    shard: str
    offset: int  # token offset of the span's start within the shard


@dataclass(frozen=True)
class Span:
    start: int  # first token of the span in the query's tokens
    length: int  # in tokens
    text: str
    occurrences: int  # how many times it occurs in the corpus
    documents: list[DocumentHit] = field(default_factory=list)  # up to `max_documents` of them


def suffix_array(tokens: np.ndarray, max_len: int = MAX_SPAN) -> np.ndarray:
    """Suffixes of `tokens` sorted lexicographically by their first `max_len` tokens (prefix doubling).

    Each round sorts by (rank of the first k tokens, rank of the next k) with one lexsort, so the cost
    is O(N log N) per round and at most log2(max_len) + 1 rounds; a shorter suffix sorts first.
    """
    n = len(tokens)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.unique(tokens, return_inverse=True)[1].astype(np.int64)
    sa = np.argsort(rank, kind="stable")
    k = 1
    while k < max_len:
        second = np.full(n, -1, dtype=np.int64)
        second[: n - k] = rank[k:]
        sa = np.lexsort((second, rank))
        r1, r2 = rank[sa], second[sa]
        new = np.empty(n, dtype=np.int64)
        new[sa] = np.concatenate([[0], np.cumsum((r1[1:] != r1[:-1]) | (r2[1:] != r2[:-1]))])
        rank = new
        if rank[sa[-1]] == n - 1:  # every suffix distinct: fully sorted
            break
        k *= 2
    return sa.astype(np.int64)


class TraceIndex:
    def __init__(self, directory: Path, data_dir: Path):
        self.directory, self.data_dir = Path(directory), Path(data_dir)
        self.corpus = np.load(self.directory / "corpus.npy", mmap_mode="r")
        self.sa = np.load(self.directory / "sa.npy", mmap_mode="r")
        self.segments = [Segment(**s) for s in json.loads((self.directory / "segments.json").read_text())]
        self._starts = np.asarray([s.start for s in self.segments], dtype=np.int64)
        self._first = np.asarray(self.corpus[self.sa], dtype=np.int64)  # the first token of each sorted suffix
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.data_dir / "tokenizer" / "tokenizer.json"))

    # -- queries ---------------------------------------------------------------------------------
    def _token_at(self, positions: np.ndarray) -> np.ndarray:
        """The corpus token at each position, -1 past the end (a shorter suffix sorts first)."""
        inside = positions < len(self.corpus)
        out = np.full(len(positions), -1, dtype=np.int64)
        out[inside] = self.corpus[positions[inside]]
        return out

    def _interval(self, query: np.ndarray) -> tuple[int, int, int]:
        """(lo, hi, length): the suffix-array interval of the longest prefix of `query` in the corpus."""
        lo = int(np.searchsorted(self._first, query[0], side="left"))
        hi = int(np.searchsorted(self._first, query[0], side="right"))
        if lo == hi:
            return lo, hi, 0
        length = 1
        while length < min(len(query), MAX_SPAN):
            # within [lo, hi) all suffixes share `length` tokens, so they are sorted by the next one
            nxt = self._token_at(np.asarray(self.sa[lo:hi], dtype=np.int64) + length)
            a = int(np.searchsorted(nxt, query[length], side="left"))
            b = int(np.searchsorted(nxt, query[length], side="right"))
            if a == b:
                break
            lo, hi, length = lo + a, lo + b, length + 1
        return lo, hi, length

    def find(self, tokens: list[int]) -> tuple[int, np.ndarray]:
        """(length, corpus positions) of the longest prefix of `tokens` occurring in the corpus."""
        if not tokens:
            return 0, np.zeros(0, dtype=np.int64)
        lo, hi, length = self._interval(np.asarray(tokens, dtype=np.int64))
        return length, np.asarray(self.sa[lo:hi], dtype=np.int64)

    def locate(self, position: int) -> DocumentHit:
        from olmo3_core.data.provenance import trace_token

        seg = self.segments[int(np.searchsorted(self._starts, position, side="right")) - 1]
        offset = position - seg.start
        if not seg.shard:
            return DocumentHit(seg.document_id, seg.source, seg.documents_file, seg.documents_row, "", offset)
        doc = trace_token(seg.shard, offset)
        return DocumentHit(doc["document_id"], doc["source"], doc["documents_file"], int(doc["documents_row"]),
                           seg.shard, offset)

    def spans(self, text: str, min_tokens: int = 8, max_spans: int = 10, max_documents: int = 5) -> list[Span]:
        """Maximal spans of at least `min_tokens` tokens of `text` found verbatim, longest first."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        found = [self.find(ids[i:])[0] for i in range(len(ids))]
        maximal = [(i, n) for i, n in enumerate(found)
                   if n >= min_tokens and (i == 0 or i + n > i - 1 + found[i - 1])]  # not inside the span before
        maximal.sort(key=lambda s: (-s[1], s[0]))
        out = []
        for start, length in maximal[:max_spans]:
            _, positions = self.find(ids[start : start + length])
            docs = [self.locate(int(p)) for p in np.sort(positions)[:max_documents]]
            out.append(Span(start, length, self.tokenizer.decode(ids[start : start + length], skip_special_tokens=False),
                            len(positions), docs))
        return out


def shards_of(data_dir: Path) -> list[tuple[Segment, np.ndarray]]:
    """Every packed shard of every mix of a data artifact, in a fixed order, with its tokens."""
    mixes = sorted(p for p in (Path(data_dir) / "mixes").iterdir() if p.is_dir()) if (Path(data_dir) / "mixes").is_dir() else []
    found = [(Segment(0, shard=str(shard), mix=m.name), np.load(shard, mmap_mode="r"))
             for m in mixes for shard in sorted(m.glob("shard_*.npy"))]
    if not found:
        raise FileNotFoundError(f"no token shards under {data_dir}/mixes: is this a data artifact?")
    return found


def posttrain_runs(manifest: dict, tokenizer) -> list[tuple[Segment, np.ndarray]]:
    """Every message of the rows a post-training stage trained on, rebuilt from its recorded config
    (procedural sets are deterministic in their seed; files are read again), as token runs."""
    from olmo3_core.config.schema import PosttrainStageConfig
    from olmo3_core.config.typed import from_dict
    from olmo3_core.posttrain import datasets

    kind = manifest["kind"]
    config = from_dict(PosttrainStageConfig, manifest["config"], f"config of {manifest.get('uri', kind)}")
    step = getattr(config, kind)
    only = {"mixture": {}, "files": []} | ({"gsm8k_train": 0} if kind == "rlvr" else {})
    parts = [(f"procedural:{name}", dataclasses.replace(step, **{**only, "mixture": {name: n}})) for name, n in step.mixture.items()]
    parts += [(url, dataclasses.replace(step, **{**only, "files": [url]})) for url in step.files]
    if kind == "rlvr" and step.gsm8k_train:
        parts.append(("gsm8k:train", dataclasses.replace(step, **{**only, "gsm8k_train": step.gsm8k_train})))
    runs = []
    for source, cfg in parts:
        try:
            rows, _ = datasets.build(kind, cfg, config.template, decontam=config.decontam)  # the rows it kept
        except ValueError:
            if source == "gsm8k:train":  # no local GSM8K copy here (training skipped it too, when it had none)
                continue
            raise
        for row_number, row in enumerate(rows):
            for field_name, value in row.items():
                messages = value if isinstance(value, list) else []
                for m, message in enumerate(messages):
                    if isinstance(message, dict) and isinstance(message.get("content"), str) and message["content"]:
                        ids = np.asarray(tokenizer.encode(message["content"], add_special_tokens=False).ids, dtype=np.uint32)
                        runs.append((Segment(0, document_id=f"{manifest['stage']}:{source}#{row_number}/{field_name}[{m}]",
                                             source=f"{manifest['stage']} ({kind})", documents_file=source,
                                             documents_row=row_number), ids))
    return runs


def build_index(runs: list[tuple[Segment, np.ndarray]], directory: Path) -> Path:
    """Index the token runs into `directory` (written whole to a temp dir, then renamed)."""
    directory = Path(directory)
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    parts, segments, start = [], [], 0
    for seg, tokens in runs:
        segments.append(dataclasses.replace(seg, start=start))
        parts += [np.asarray(tokens, dtype=np.uint32), np.asarray([SEPARATOR])]
        start += len(tokens) + 1
    corpus = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)
    np.save(tmp / "corpus.npy", corpus)
    np.save(tmp / "sa.npy", suffix_array(corpus))
    (tmp / "segments.json").write_text(json.dumps([dataclasses.asdict(s) for s in segments], indent=1))
    (tmp / "version").write_text(str(INDEX_VERSION))
    try:
        tmp.rename(directory)
    except OSError:  # another process built it first: theirs is the same index
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _cached(manifest: dict, cache_root: Path | None) -> Path:
    """Where an artifact's index is cached: keyed by its fingerprint, so one build serves every model
    trained on it."""
    from olmo3_core.home import local_cache_dir

    return (cache_root or local_cache_dir()) / "trace_index" / f"{manifest['fingerprint']}-v{INDEX_VERSION}"


def _open(directory: Path, tokenizer_dir: Path, make_runs) -> tuple[TraceIndex, float]:
    built = 0.0
    if not (directory / "version").exists():
        t0 = time.perf_counter()
        build_index(make_runs(), directory)
        built = time.perf_counter() - t0
    return TraceIndex(directory, tokenizer_dir), built


def open_index(data_dir: Path, cache_root: Path | None = None) -> tuple[TraceIndex, float]:
    """The index of a data artifact, built on first use; also the seconds spent building (0 if cached)."""
    manifest = json.loads((Path(data_dir) / "artifact.json").read_text())
    return _open(_cached(manifest, cache_root), Path(data_dir), lambda: shards_of(data_dir))


def open_posttrain_index(manifest: dict, data_dir: Path, cache_root: Path | None = None) -> tuple[TraceIndex, float]:
    """The index of the rows one post-training stage (sft / dpo / rlvr manifest) trained on."""
    def runs():
        from tokenizers import Tokenizer

        return posttrain_runs(manifest, Tokenizer.from_file(str(Path(data_dir) / "tokenizer" / "tokenizer.json")))

    return _open(_cached(manifest, cache_root), Path(data_dir), runs)


def lineage_indexes(model_dir: Path, cache_root: Path | None = None) -> list[tuple[str, TraceIndex, float]]:
    """(stage, index, build seconds) for the data artifact and every post-training stage an export
    was trained through, read from the export's lineage.json (local artifacts only)."""
    chain = _lineage(model_dir)
    data_dir = data_dir_of_export(model_dir)
    out = [("data", *open_index(data_dir, cache_root))]
    for row in chain:
        if row["kind"] in ("sft", "dpo", "rlvr"):
            manifest = json.loads((_local(row["uri"]) / "artifact.json").read_text())
            out.append((row["stage"], *open_posttrain_index(manifest, data_dir, cache_root)))
    return out


def trace(indexes: list[TraceIndex], text: str, min_tokens: int = 8, max_spans: int = 10,
          max_documents: int = 5) -> list[Span]:
    """Spans of `text` over several indexes (a model's data and post-training sets), longest first;
    a span found in several of them is listed once per index, each with its own documents."""
    spans = [s for index in indexes for s in index.spans(text, min_tokens, max_spans, max_documents)]
    return sorted(spans, key=lambda s: (-s.length, s.start))[:max_spans]


def _local(uri: str) -> Path:
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if ("://" in uri and not uri.startswith("file://")) or not path.exists():
        raise FileNotFoundError(f"artifact {uri} is not on this machine: pass --data <local copy of the data artifact>")
    return path


def _lineage(model_dir: Path) -> list[dict]:
    lineage = Path(model_dir) / "lineage.json"
    if not lineage.exists():
        raise FileNotFoundError(f"{lineage} not found: --model takes an exported model directory")
    return json.loads(lineage.read_text())["chain"]


def data_dir_of_export(model_dir: Path) -> Path:
    """The local data artifact an exported model was trained on, from the export's lineage.json."""
    data = [row for row in _lineage(model_dir) if row["kind"] == "data"]
    if not data:
        raise ValueError(f"{Path(model_dir) / 'lineage.json'} names no data stage in the model's lineage")
    return _local(data[0]["uri"])


def format_spans(spans: list[Span]) -> str:
    if not spans:
        return "no span of the text occurs verbatim in the training data"
    lines = []
    for s in spans:
        lines.append(f"{s.length} tokens, {s.occurrences} occurrence(s): {s.text!r}")
        lines += [f"    {d.document_id}  source={d.source}  file={d.documents_file}  row={d.documents_row}  "
                  + (f"(shard {Path(d.shard).parent.name}/{Path(d.shard).name} @ {d.offset})" if d.shard
                     else f"(token {d.offset} of the message)") for d in s.documents]
    return "\n".join(lines)
