"""Packing mixes into token shards, with an index that traces every token back to its document.

Layout of `mixes/<mix>/`:
  shard_00000.npy             1-D uint32 token ids, documents concatenated, each followed by EOS
  shard_00000.index.parquet   one row per packed document: start, end (token offsets), doc_row
  documents.parquet           doc_row -> id, source, documents file and row, tokens
The index files end in .parquet, so trainers globbing `shard_*.npy` see only token shards.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from olmo3_core.data.mixing import SourceDocs

SHARD = "shard_{:05d}.npy"
SNIPPET_TOKENS = 48


def _write_shard(mix_dir: Path, number: int, chunks: list[np.ndarray], spans: list[tuple[int, int, int]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    np.save(mix_dir / SHARD.format(number), np.concatenate(chunks).astype(np.uint32, copy=False))
    start, end, row = (np.asarray(col, dtype=np.int64) for col in zip(*spans))
    pq.write_table(pa.table({"start": start, "end": end, "doc_row": row}), mix_dir / f"shard_{number:05d}.index.parquet")


def _write_doc_table(mix_dir: Path, rows: dict[tuple[str, int], int], sources: dict[str, SourceDocs]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted(rows, key=rows.get)
    table = {
        "doc_row": [rows[k] for k in keys],
        "id": [sources[s].ids[i] for s, i in keys],
        "source": [s for s, _ in keys],
        "documents_file": [sources[s].doc_files[sources[s].shard[i]] for s, i in keys],
        "documents_row": [int(sources[s].row[i]) for s, i in keys],
        "tokens": [int(sources[s].length[i]) for s, i in keys],
    }
    pq.write_table(pa.table(table), mix_dir / "documents.parquet")


def pack(out_dir: Path, mix: str, order: list[tuple[str, int]], sources: dict[str, SourceDocs], shard_tokens: int) -> dict[str, int]:
    """Streams the ordered documents into shards of at most `shard_tokens` (a document never splits)."""
    mix_dir = out_dir / "mixes" / mix
    mix_dir.mkdir(parents=True, exist_ok=True)
    token_files: dict[tuple[str, int], np.ndarray] = {}
    rows: dict[tuple[str, int], int] = {}
    chunks, spans, filled, shards = [], [], 0, 0
    for source, i in order:
        docs = sources[source]
        key = (source, int(docs.shard[i]))
        if key not in token_files:
            token_files[key] = np.load(out_dir / docs.token_files[key[1]], mmap_mode="r")
        length = int(docs.length[i])
        if filled and filled + length > shard_tokens:
            _write_shard(mix_dir, shards, chunks, spans)
            chunks, spans, filled, shards = [], [], 0, shards + 1
        start = int(docs.offset[i])
        chunks.append(token_files[key][start : start + length])
        spans.append((filled, filled + length, rows.setdefault((source, i), len(rows))))
        filled += length
    _write_shard(mix_dir, shards, chunks, spans)
    _write_doc_table(mix_dir, rows, sources)
    return {"shards": shards + 1, "unique_docs": len(rows)}


def trace_token(shard_path: str, offset: int) -> dict[str, Any]:
    """Which document a token of a packed shard came from: id, source, span, and a decoded snippet.

    The shard's artifact layout (`<data>/mixes/<mix>/shard_N.npy`, `<data>/tokenizer/`) locates the
    index, the document table and the tokenizer, so only the shard path is needed.
    """
    import pyarrow.parquet as pq

    shard = Path(shard_path)
    tokens = np.load(shard, mmap_mode="r")
    if not 0 <= offset < len(tokens):
        raise IndexError(f"offset {offset} is outside {shard} ({len(tokens)} tokens)")
    index = pq.read_table(shard.with_name(shard.stem + ".index.parquet")).to_pydict()
    k = int(np.searchsorted(np.asarray(index["start"]), offset, side="right")) - 1
    start, end, doc_row = index["start"][k], index["end"][k], index["doc_row"][k]
    doc = pq.read_table(shard.parent / "documents.parquet").slice(doc_row, 1).to_pylist()[0]
    lo, hi = max(start, offset - SNIPPET_TOKENS // 2), min(end, offset + SNIPPET_TOKENS // 2)
    return {
        "shard": str(shard), "offset": offset, "token_id": int(tokens[offset]),
        "document_id": doc["id"], "source": doc["source"], "span": [int(start), int(end)],
        "documents_file": doc["documents_file"], "documents_row": doc["documents_row"],
        "snippet": _decode(shard.parents[2] / "tokenizer", tokens[lo:hi]),
    }


def _decode(tokenizer_dir: Path, ids: np.ndarray) -> str:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).decode([int(i) for i in ids], skip_special_tokens=False)
