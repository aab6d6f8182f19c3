"""PDFs as documents: one PDF -> one Dolma document, text in reading order.

CPU default: `pypdf` text extraction page by page. GPU option: `olmocr` (OLMo's own PDF linearizer,
a vision-language model), run through its batch pipeline and imported only when chosen. A corrupt,
encrypted or textless PDF is quarantined with a reason; it never stops the shard.
"""
from __future__ import annotations

import glob
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import fsspec

from olmo3_core.data.documents import Item, Quarantined, make_doc


class OlmOcrUnavailable(RuntimeError):
    """`pdf_backend: olmocr` was chosen but olmocr is not installed (a config error, not bad data)."""


def _read(uri: str, storage_options: dict[str, Any]) -> bytes:
    with fsspec.open(uri, "rb", **storage_options) as fh:
        return fh.read()


def pypdf_text(data: bytes) -> tuple[str, int]:
    """(text, pages); raises ValueError naming why a PDF cannot be read."""
    from pypdf import PasswordType, PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise ValueError("encrypted: needs a password")
    pages = [page.extract_text() or "" for page in reader.pages]
    return "\n\n".join(p.strip() for p in pages if p.strip()), len(pages)


def _pypdf_item(uri: str, source: str, storage_options: dict[str, Any]) -> Item:
    try:
        text, pages = pypdf_text(_read(uri, storage_options))
    except Exception as exc:  # noqa: BLE001 - a third-party parser on untrusted bytes: any failure is a quarantine reason
        reason = str(exc) if str(exc).startswith("encrypted") else f"corrupt_pdf: {type(exc).__name__}: {exc}"
        return Quarantined(uri, 0, reason[:300])
    if not text.strip():
        return Quarantined(uri, 0, "no_text: no extractable text layer (a scanned PDF needs pdf_backend=olmocr)")
    return make_doc(uri, text, source, None, {"pdf": {"uri": uri, "pages": pages, "backend": "pypdf"}})


def _olmocr_items(uris: list[str], source: str) -> Iterator[Item]:
    """Runs `python -m olmocr.pipeline` on the batch and maps its Dolma results back to the PDFs."""
    try:
        import olmocr  # noqa: F401
    except ImportError as exc:
        raise OlmOcrUnavailable(
            "pdf_backend=olmocr needs the `olmocr` package and a GPU (pip install 'olmocr[gpu]'); "
            "use pdf_backend=pypdf on CPU") from exc
    with tempfile.TemporaryDirectory() as workspace:
        subprocess.run([sys.executable, "-m", "olmocr.pipeline", workspace, "--markdown", "--pdfs", *uris], check=True)
        results: dict[str, dict] = {}
        for path in sorted(glob.glob(f"{workspace}/results/*.jsonl")):
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                results[record["metadata"]["Source-File"]] = record
    for uri in uris:
        record = results.get(uri)
        if record is None or not record.get("text", "").strip():
            yield Quarantined(uri, 0, "no_text: olmocr produced no text")
            continue
        meta = {"pdf": {"uri": uri, "pages": record["metadata"].get("pdf-total-pages"), "backend": "olmocr"}}
        yield make_doc(uri, record["text"], source, None, meta)


def iter_pdfs(uris: list[str], source: str, backend: str, storage_options: dict[str, Any]) -> Iterator[Item]:
    if backend == "olmocr":
        yield from _olmocr_items(uris, source)
        return
    for uri in uris:
        yield _pypdf_item(uri, source, storage_options)
