"""Per-shard work, run in executor workers: curate (read, tag, filter, sign) and tokenize.

A shard is processed as a stream, so a worker's memory is bounded by the shard, not the corpus.
Curation writes, Dolma style, beside each other:
  documents/<source>/<shard>.jsonl.gz   documents that passed the processor chain
  attributes/<source>/<shard>.jsonl.gz  every input document's attributes and decision
  quarantine/<source>/<shard>.jsonl.gz  unreadable records with their reason
and returns counts plus the hashes and MinHash signatures the driver deduplicates with.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from olmo3_core.data import processors
from olmo3_core.data.config import DedupConfig
from olmo3_core.data.dedup import Signer, content_hash
from olmo3_core.data.documents import Item, JsonlWriter, Quarantined, iter_documents, normalize, read_jsonl

MAX_HITS = 100


@dataclass
class ShardTask:
    source: str
    shard: str  # shard_00000
    uris: list[str]
    reader: str  # documents | pdf
    processors: list[dict[str, Any]]
    dedup: DedupConfig
    out_dir: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    pdf_backend: str = "pypdf"
    sample_chars: int = 200
    decontaminator: Any = None  # a Decontaminator, appended to the chain


@dataclass
class ShardReport:
    source: str
    shard: str
    uris: list[str]
    docs_in: int = 0
    quarantined: Counter = field(default_factory=Counter)
    removed: Counter = field(default_factory=Counter)
    chars_in: int = 0
    chars_out: int = 0
    languages: Counter = field(default_factory=Counter)
    decontam_ngrams: int = 0
    decontam_masked: int = 0  # documents kept with eval overlaps masked (decontam mode: mask)
    decontam_hits: list = field(default_factory=list)  # first MAX_HITS matched documents, for the datasheet
    decontam_sets: Counter = field(default_factory=Counter)  # (document, eval item) matches per eval set
    decontam_items: dict = field(default_factory=dict)  # eval set -> indices of its items found in documents
    ids: list[str] = field(default_factory=list)  # kept documents, in documents-file order
    hashes: list[str] = field(default_factory=list)
    signatures: np.ndarray | None = None

    @property
    def docs_out(self) -> int:
        return len(self.ids)


def _items(task: ShardTask) -> Iterator[Item]:
    if task.reader == "pdf":
        from olmo3_core.data.pdf import iter_pdfs

        yield from iter_pdfs(task.uris, task.source, task.pdf_backend, task.storage_options)
        return
    for uri in task.uris:
        for row, item in enumerate(iter_documents(uri, task.storage_options, task.sample_chars), 1):
            yield item if isinstance(item, Quarantined) else normalize(item, task.source, uri, row)


def _record_decision(report: ShardReport, doc: dict, attributes: dict, reason: str | None) -> None:
    decon = attributes.get("decontam", {})
    if decon.get("items"):
        report.decontam_ngrams += decon["ngrams"]
        report.decontam_sets.update(decon["sets"])
        for name, indices in decon["matched"].items():
            report.decontam_items.setdefault(name, set()).update(indices)
        report.decontam_masked += reason is None
        if len(report.decontam_hits) < MAX_HITS:
            report.decontam_hits.append({"id": doc["id"], "removed": bool(reason), **decon})
    if reason:
        report.removed[reason] += 1
        return
    report.chars_out += len(doc["text"])
    report.languages[doc["metadata"].get("language", "unknown")] += 1


def curate_shard(task: ShardTask) -> ShardReport:
    chain = processors.build(task.processors) + ([task.decontaminator] if task.decontaminator else [])
    signer = Signer(task.dedup) if task.dedup.fuzzy else None
    report, signatures = ShardReport(task.source, task.shard, task.uris), []
    out = Path(task.out_dir)
    name = f"{task.source}/{task.shard}.jsonl.gz"
    quarantine = None
    with JsonlWriter(out / "documents" / name) as docs, JsonlWriter(out / "attributes" / name) as attrs:
        for item in _items(task):
            if isinstance(item, Quarantined):
                quarantine = quarantine or JsonlWriter(out / "quarantine" / name)
                quarantine.write(item.to_json())
                report.quarantined[item.reason.split(":")[0]] += 1
                continue
            report.docs_in += 1
            report.chars_in += len(item["text"])
            attributes, reason = processors.apply(chain, item)
            _record_decision(report, item, attributes, reason)
            attrs.write({"id": item["id"], "source": task.source, "decision": reason or "kept",
                         "doc_row": None if reason else docs.count, "attributes": attributes})
            if reason is None:
                docs.write(item)
                report.ids.append(item["id"])
                report.hashes.append(content_hash(item["text"]))
                if signer:
                    signatures.append(signer(item["text"]))
    if quarantine:
        quarantine.close()
    report.signatures = np.stack(signatures) if signatures else None
    return report


@dataclass
class TokenizeTask:
    documents: str  # documents/<source>/<shard>.jsonl.gz
    drop_rows: frozenset[int]  # rows removed by dedup
    tokenizer_file: str
    eos_id: int
    out_path: str  # tokens/<source>/<shard>.npy


def tokenize_shard(task: TokenizeTask) -> tuple[np.ndarray, np.ndarray]:
    """Writes the shard's kept documents as one uint32 array (each followed by EOS).

    Returns (document rows kept, token count per kept document including its EOS).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(task.tokenizer_file)
    rows, texts = [], []
    for row, doc in enumerate(read_jsonl(Path(task.documents))):
        if row not in task.drop_rows:
            rows.append(row)
            texts.append(doc["text"])
    encoded = [np.append(np.asarray(e.ids, dtype=np.uint32), np.uint32(task.eos_id))
               for e in tok.encode_batch(texts, add_special_tokens=False)]
    Path(task.out_path).parent.mkdir(parents=True, exist_ok=True)
    np.save(task.out_path, np.concatenate(encoded) if encoded else np.empty(0, dtype=np.uint32))
    return np.asarray(rows, dtype=np.int64), np.asarray([len(e) for e in encoded], dtype=np.int64)
