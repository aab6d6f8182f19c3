"""Dolma-format documents: reading JSONL (plain, .gz, .zst) and Parquet from local or s3:// paths.

Readers stream records and never raise on bad data: a malformed line, an undecodable line, a record
without text or a truncated compressed stream becomes a `Quarantined` item with a reason, and every
good record before and after it still comes through.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

import fsspec


@dataclass(frozen=True)
class Quarantined:
    """A record (or the rest of a file) that could not be read, and why."""

    uri: str
    line: int  # 1-based line or row number; 0 for the whole file
    reason: str
    sample: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "line": self.line, "reason": self.reason, "sample": self.sample}


Item = Union[dict, Quarantined]


def make_doc(doc_id: str, text: str, source: str, created: str | None = None, metadata: dict | None = None,
             added: str | None = None) -> dict[str, Any]:
    """`added` stays None unless the record says when it was added: stamping the wall clock here would make
    the curated bytes differ between two runs of one config (when a run happened is in its manifest)."""
    return {"id": doc_id, "text": text, "source": source, "added": added, "created": created, "metadata": metadata or {}}


def file_digest(uri: str, storage_options: dict[str, Any]) -> tuple[str, int]:
    """(sha256, bytes) of a raw input, for lineage."""
    digest, size = hashlib.sha256(), 0
    with fsspec.open(uri, "rb", **storage_options) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _decompressed(raw: io.IOBase, uri: str) -> io.IOBase:
    if uri.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)
    if uri.endswith(".zst") or uri.endswith(".zstd"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True))
    return raw


def _corrupt_stream_errors() -> tuple[type[BaseException], ...]:
    import zstandard

    return (EOFError, OSError, zlib.error, zstandard.ZstdError)


def _record(uri: str, line_no: int, raw_line: bytes, sample_chars: int) -> Item:
    sample = raw_line[:sample_chars].decode("utf-8", "replace")
    try:
        text_line = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Quarantined(uri, line_no, f"bad_encoding: {exc.reason} at byte {exc.start}", sample)
    try:
        record = json.loads(text_line)
    except json.JSONDecodeError as exc:
        return Quarantined(uri, line_no, f"malformed_json: {exc.msg}", sample)
    return _validated(record, uri, line_no, sample)


def _validated(record: Any, uri: str, line_no: int, sample: str) -> Item:
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return Quarantined(uri, line_no, "missing_text: record has no string 'text' field", sample)
    return record


def iter_jsonl(uri: str, storage_options: dict[str, Any], sample_chars: int = 200) -> Iterator[Item]:
    """Records of one JSONL file; a corrupt compressed stream quarantines only what follows the break."""
    line_no = 0
    with fsspec.open(uri, "rb", **storage_options) as raw:
        stream = _decompressed(raw, uri)
        try:
            for line_no, raw_line in enumerate(stream, 1):
                if raw_line.strip():
                    yield _record(uri, line_no, raw_line.rstrip(b"\r\n"), sample_chars)
        except _corrupt_stream_errors() as exc:
            yield Quarantined(uri, line_no + 1, f"corrupt_compression: {type(exc).__name__}: {exc}")


def iter_parquet(uri: str, storage_options: dict[str, Any], sample_chars: int = 200) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    with fsspec.open(uri, "rb", **storage_options) as raw:
        try:
            for batch in pq.ParquetFile(raw).iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    row += 1
                    yield _validated(record, uri, row, json.dumps(record, default=str)[:sample_chars])
        except (pa.ArrowException, OSError) as exc:
            yield Quarantined(uri, row + 1, f"corrupt_parquet: {exc}")


def iter_documents(uri: str, storage_options: dict[str, Any], sample_chars: int = 200) -> Iterator[Item]:
    """Any Dolma document file by extension: .parquet, else JSONL (optionally .gz / .zst)."""
    reader = iter_parquet if uri.endswith(".parquet") else iter_jsonl
    return reader(uri, storage_options, sample_chars)


def normalize(record: dict[str, Any], source: str, uri: str, row: int) -> dict[str, Any]:
    """A record -> Dolma document owned by `source` (an id is derived from the location when absent)."""
    metadata = dict(record.get("metadata") or {})
    if record.get("source") not in (None, source):
        metadata["original_source"] = record["source"]
    doc_id = str(record.get("id") or f"{Path(uri).name}:{row}")
    return make_doc(doc_id, record["text"], source, record.get("created"), metadata, record.get("added"))


class JsonlWriter:
    """Gzipped JSONL, one record per line (the Dolma document and attribute layout). The gzip header's
    mtime is 0, so the same records give the same bytes whenever they are written."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.count = path, 0
        self._fh = io.TextIOWrapper(gzip.GzipFile(path, "wb", compresslevel=3, mtime=0), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL(.gz) file this stage wrote itself (trusted, so no quarantine)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)
