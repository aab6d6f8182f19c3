"""Readers: Dolma JSONL (plain/gz/zst) and Parquet, globs, quarantine, and PDFs (valid, encrypted, corrupt)."""
from __future__ import annotations

import gzip
import io
import json

import pytest

from olmo3_core.data.documents import Quarantined, iter_documents
from olmo3_core.inputs import expand_paths
from olmo3_core.data.pdf import OlmOcrUnavailable, iter_pdfs


def minimal_pdf(pages: list[list[str]]) -> bytes:
    """A valid PDF written by hand: one Helvetica text line per entry, pages in order."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{3 + 2 * i} 0 R' for i in range(len(pages)))}] /Count {len(pages)} >>"]
    font = 3 + 2 * len(pages)
    for i, lines in enumerate(pages):
        ops = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {ops} ET"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.4\n")
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{n} 0 obj\n{body}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{o:010d} 00000 n \n" for o in offsets).encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def test_jsonl_quarantines_bad_lines_and_keeps_the_rest(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "1", "text": "one"}\n{"id": 2, "text": \n{"text": "caf\xe9"}\n[1, 2]\n\n{"id": "5", "text": "five"}\n')
    items = list(iter_documents(str(path), {}))
    assert [i["id"] for i in items if isinstance(i, dict)] == ["1", "5"]
    bad = [i for i in items if isinstance(i, Quarantined)]
    assert [(q.line, q.reason.split(":")[0]) for q in bad] == [(2, "malformed_json"), (3, "bad_encoding"), (4, "missing_text")]


def test_corrupt_gzip_keeps_records_before_the_break(tmp_path):
    records = "".join(json.dumps({"id": str(i), "text": "x" * 50 + str(i)}) + "\n" for i in range(2000))
    blob = gzip.compress(records.encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    items = list(iter_documents(str(path), {}))
    assert isinstance(items[-1], Quarantined) and items[-1].reason.startswith("corrupt_compression")
    assert 0 < len(items) - 1 < 2000 and all(isinstance(i, dict) for i in items[:-1])


def test_zstd_parquet_and_globs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    with zstandard.open(tmp_path / "a.jsonl.zst", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "z", "text": "zstd text"}) + "\n")
    pq.write_table(pa.Table.from_pylist([{"id": "p", "text": "parquet text"}, {"id": "q", "text": None}]), tmp_path / "b.parquet")
    uris = expand_paths([str(tmp_path / "*")], {})
    assert [u.rsplit("/", 1)[-1] for u in uris] == ["a.jsonl.zst", "b.parquet"]
    items = [i for u in uris for i in iter_documents(u, {})]
    assert [i["id"] for i in items if isinstance(i, dict)] == ["z", "p"]
    assert isinstance(items[-1], Quarantined) and items[-1].reason.startswith("missing_text")
    with pytest.raises(FileNotFoundError, match="no files match"):
        expand_paths([str(tmp_path / "missing*.jsonl")], {})


def test_pdfs_read_in_order_and_bad_ones_are_quarantined(tmp_path):
    from pypdf import PdfReader, PdfWriter

    good = tmp_path / "good.pdf"
    good.write_bytes(minimal_pdf([["First page opens the report."], ["Second page closes it."]]))
    writer = PdfWriter(clone_from=PdfReader(good))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    writer.write(tmp_path / "locked.pdf")
    (tmp_path / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog garbage")
    (tmp_path / "blank.pdf").write_bytes(minimal_pdf([[]]))
    items = {(i.uri if isinstance(i, Quarantined) else i["id"]).rsplit("/", 1)[-1]: i
             for i in iter_pdfs(sorted(str(p) for p in tmp_path.glob("*.pdf")), "pdfs", "pypdf", {})}
    text = items["good.pdf"]["text"]
    assert text.index("First page") < text.index("Second page") and items["good.pdf"]["metadata"]["pdf"]["pages"] == 2
    assert items["locked.pdf"].reason.startswith("encrypted")
    assert items["corrupt.pdf"].reason.startswith("corrupt_pdf")
    assert items["blank.pdf"].reason.startswith("no_text")


def test_olmocr_backend_fails_clearly_when_not_installed(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "olmocr", None)
    with pytest.raises(OlmOcrUnavailable, match="pip install"):
        list(iter_pdfs([str(tmp_path / "x.pdf")], "pdfs", "olmocr", {}))


def test_pdf_source_through_the_stage(tmp_path, make_config, run_data_stage):
    """PDFs become documents of their source, a corrupt one is quarantined, and both are in lineage."""
    import random

    from olmo3_core.data.synthetic import english_doc

    rng = random.Random(3)
    for i in range(3):
        pages = [english_doc(rng, 12).replace("\n\n", " ").split(". ") for _ in range(2)]
        (tmp_path / f"paper-{i}.pdf").write_bytes(minimal_pdf([[f"{line}." for line in page] for page in pages]))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    cfg = make_config({"pdf": {"kind": "pdf", "paths": [str(tmp_path / "*.pdf")], "processors": "prose", "docs_per_shard": 2}})
    result = run_data_stage(cfg, tmp_path / "out")
    sheet = json.loads((tmp_path / "out" / "datasheet.json").read_text())["sources"]["pdf"]
    assert (sheet["docs_in"], sheet["docs_out"], sheet["quarantined"], sheet["shards"]) == (3, 3, {"corrupt_pdf": 1}, 2)
    assert len(result.raw_inputs) == 4
