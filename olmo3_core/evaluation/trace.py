"""Output -> training data: the longest spans of a text that occur verbatim in a data artifact's token shards.

As AI2's OLMoTrace, on a smaller scale: a suffix array over every packed token shard of the data
artifact (all mixes: pretrain, midtrain, long-context), built once per data artifact by the
`trace_index` stage (`run`, its entry point: a stage artifact like any other, cached by fingerprint,
with a manifest naming the data artifact upstream). Post-training rows (SFT / DPO / RL, each message a
document) are indexed the same way by `olmo3_core.evaluation.trace_output`. A query tokenizes the text
with the data artifact's tokenizer, finds for every start position the longest run of tokens that
occurs in the corpus, keeps the maximal ones (not inside a longer span), and maps each occurrence back
to its document: through the shard index that `trace-tokens` uses (`olmo3_core.data.provenance.trace_token`)
for base-training data, through the index's own document table for post-training rows.

Index layout: `corpus.npy` (the token runs, separated by SEPARATOR, which is no token id), `sa.npy`
(suffix array, int64), `segments.json` (for each run: where it came from, a shard path relative to the
data artifact, and its first corpus position), `index.json` (max span, tokens, runs).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from olmo3_core.config.schema import TraceIndexStageConfig
from olmo3_core.stages import StageContext, StageResult

SEPARATOR = np.uint32(2**32 - 1)  # between shards: no span can cross from one shard into the next
# Suffixes are sorted by their first max_span tokens (prefix doubling stops there), so a span is
# reported at most this long; a verbatim run longer than this is found as its max_span-token prefix.
MAX_SPAN = TraceIndexStageConfig().max_span
INDEX_META = "index.json"


@dataclass(frozen=True)
class Segment:
    """One run of tokens in the corpus: a packed shard, or one message of a post-training row."""

    start: int  # its first position in the corpus
    shard: str = ""  # base-training data: the shard .npy, relative to the data artifact (documents found through its index)
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
    shard: str  # the shard's path under the data artifact directory the index was opened with ("": a post-training row)
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
    """An index directory opened for queries; `data_dir` (a local copy of the data artifact) gives the
    tokenizer and the shards' document tables."""

    def __init__(self, directory: Path, data_dir: Path):
        self.directory, self.data_dir = Path(directory), Path(data_dir)
        self.max_span = int(json.loads((self.directory / INDEX_META).read_text())["max_span"])
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
        while length < min(len(query), self.max_span):
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
        shard = str(self.data_dir / seg.shard)
        doc = trace_token(shard, offset)
        return DocumentHit(doc["document_id"], doc["source"], doc["documents_file"], int(doc["documents_row"]),
                           shard, offset)

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
    """Every packed shard of every mix of a data artifact, in a fixed order, with its tokens; each
    segment names its shard relative to the artifact, so the index holds wherever the data lives."""
    data_dir = Path(data_dir)
    mixes = sorted(p for p in (data_dir / "mixes").iterdir() if p.is_dir()) if (data_dir / "mixes").is_dir() else []
    found = [(Segment(0, shard=shard.relative_to(data_dir).as_posix(), mix=m.name), np.load(shard, mmap_mode="r"))
             for m in mixes for shard in sorted(m.glob("shard_*.npy"))]
    if not found:
        raise FileNotFoundError(f"no token shards under {data_dir}/mixes: is this a data artifact?")
    return found


def build_index(runs: list[tuple[Segment, np.ndarray]], directory: Path, max_span: int = MAX_SPAN) -> dict[str, int]:
    """Index the token runs into `directory`; returns what was indexed (tokens, runs)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    parts, segments, start = [], [], 0
    for seg, tokens in runs:
        segments.append(dataclasses.replace(seg, start=start))
        parts += [np.asarray(tokens, dtype=np.uint32), np.asarray([SEPARATOR])]
        start += len(tokens) + 1
    corpus = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)
    np.save(directory / "corpus.npy", corpus)
    np.save(directory / "sa.npy", suffix_array(corpus, max_span))
    (directory / "segments.json").write_text(json.dumps([dataclasses.asdict(s) for s in segments], indent=1))
    stats = {"tokens": int(len(corpus) - len(segments)), "runs": len(segments)}
    (directory / INDEX_META).write_text(json.dumps({"max_span": max_span, **stats}, indent=1))
    return stats


def run(ctx: StageContext) -> StageResult:
    """The trace_index stage: index every token shard of the parent data artifact into the artifact."""
    data = ctx.input("data")
    t0 = time.perf_counter()
    stats = build_index(shards_of(data.path), ctx.output_dir, ctx.config.max_span)
    seconds = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in ctx.output_dir.iterdir() if f.is_file())
    metrics = {"tokens_indexed": float(stats["tokens"]), "shards": float(stats["runs"]), "build_s": seconds,
               "index_bytes": float(size)}
    report = (f"### trace index of data `{data.fingerprint[:12]}`\n\n"
              f"{stats['tokens']:,} tokens of {stats['runs']} shard(s) indexed in {seconds:.1f}s; "
              f"{size / 2**20:.1f} MiB (corpus + suffix array sorted to {ctx.config.max_span} tokens).\n\n"
              f"Query: `olmo3-flow trace-output \"<text>\" --data {data.uri}`")
    return StageResult(metrics=metrics, report_markdown=report)


def trace(indexes: list[TraceIndex], text: str, min_tokens: int = 8, max_spans: int = 10,
          max_documents: int = 5) -> list[Span]:
    """Spans of `text` over several indexes (a model's data and post-training sets), longest first;
    a span found in several of them is listed once per index, each with its own documents."""
    spans = [s for index in indexes for s in index.spans(text, min_tokens, max_spans, max_documents)]
    return sorted(spans, key=lambda s: (-s.length, s.start))[:max_spans]


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
