"""Output -> training data: the longest spans of a text that occur verbatim in a data artifact's token shards.

As AI2's OLMoTrace, on a smaller scale: a suffix array over every packed token shard of the data
artifact (all mixes: pretrain, midtrain, long-context), built once per artifact and cached by its
fingerprint. A query tokenizes the text with the artifact's tokenizer, finds for every start position
the longest run of tokens that occurs in the corpus, keeps the maximal ones (not inside a longer
span), and maps each occurrence back to its document through the shard index that `trace-tokens`
uses (`olmo3_core.data.provenance.trace_token`).

Index layout (`<cache>/trace_index/<data fingerprint>/`): `corpus.npy` (every shard's tokens, shards
separated by SEPARATOR, which is no token id), `sa.npy` (suffix array, int64), `segments.json`
(mix, shard file, first corpus position of each shard).
"""
from __future__ import annotations

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
INDEX_VERSION = 1


@dataclass(frozen=True)
class Segment:
    mix: str
    shard: str  # path of the shard .npy
    start: int  # its first position in the corpus


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


def shards_of(data_dir: Path) -> list[Segment]:
    """Every packed shard of every mix, in a fixed order (starts filled in by `build_index`)."""
    mixes = sorted(p for p in (Path(data_dir) / "mixes").iterdir() if p.is_dir())
    found = [Segment(m.name, str(shard), 0) for m in mixes for shard in sorted(m.glob("shard_*.npy"))]
    if not found:
        raise FileNotFoundError(f"no token shards under {data_dir}/mixes: is this a data artifact?")
    return found


def build_index(data_dir: Path, directory: Path) -> Path:
    """Build the index of a data artifact into `directory` (written whole to a temp dir, then renamed)."""
    directory = Path(directory)
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    parts, segments, start = [], [], 0
    for seg in shards_of(data_dir):
        tokens = np.load(seg.shard, mmap_mode="r")
        segments.append(Segment(seg.mix, seg.shard, start))
        parts += [np.asarray(tokens, dtype=np.uint32), np.asarray([SEPARATOR])]
        start += len(tokens) + 1
    corpus = np.concatenate(parts)
    np.save(tmp / "corpus.npy", corpus)
    np.save(tmp / "sa.npy", suffix_array(corpus))
    (tmp / "segments.json").write_text(json.dumps([s.__dict__ for s in segments], indent=1))
    (tmp / "version").write_text(str(INDEX_VERSION))
    try:
        tmp.rename(directory)
    except OSError:  # another process built it first: theirs is the same index
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def index_dir(data_dir: Path, cache_root: Path | None = None) -> Path:
    """Where the index of a data artifact is cached: keyed by the artifact's fingerprint (its directory
    name, as the store lays artifacts out), so one built index serves every model trained on it."""
    from olmo3_core.home import local_cache_dir

    manifest = json.loads((Path(data_dir) / "artifact.json").read_text())
    return (cache_root or local_cache_dir()) / "trace_index" / f"{manifest['fingerprint']}-v{INDEX_VERSION}"


def open_index(data_dir: Path, cache_root: Path | None = None) -> tuple[TraceIndex, float]:
    """The index of a data artifact, built on first use; also the seconds spent building (0 if cached)."""
    directory = index_dir(data_dir, cache_root)
    built = 0.0
    if not (directory / "version").exists():
        t0 = time.perf_counter()
        build_index(data_dir, directory)
        built = time.perf_counter() - t0
    return TraceIndex(directory, data_dir), built


def data_dir_of_export(model_dir: Path) -> Path:
    """The local data artifact an exported model was trained on, from the export's lineage.json."""
    lineage = Path(model_dir) / "lineage.json"
    if not lineage.exists():
        raise FileNotFoundError(f"{lineage} not found: --model takes an exported model directory")
    data = [row for row in json.loads(lineage.read_text())["chain"] if row["kind"] == "data"]
    if not data:
        raise ValueError(f"{lineage} names no data stage in the model's lineage")
    uri = data[0]["uri"]
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if "://" in uri and not uri.startswith("file://") or not path.exists():
        raise FileNotFoundError(f"the model's data artifact {uri} is not on this machine: pass --data <local copy>")
    return path


def format_spans(spans: list[Span]) -> str:
    if not spans:
        return "no span of the text occurs verbatim in the training data"
    lines = []
    for s in spans:
        lines.append(f"{s.length} tokens, {s.occurrences} occurrence(s): {s.text!r}")
        lines += [f"    {d.document_id}  source={d.source}  file={d.documents_file}  row={d.documents_row}  "
                  f"(shard {Path(d.shard).parent.name}/{Path(d.shard).name} @ {d.offset})" for d in s.documents]
    return "\n".join(lines)
