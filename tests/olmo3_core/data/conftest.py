"""Fixtures for the data stage tests: a small planted corpus and a fast stage config around it.

The corpus plants one example of every case curation must handle (exact and near duplicates,
benchmark leaks, non-English, junk, PII, malformed records, a corrupt gzip) and returns what it
planted, so tests assert each is handled and counted under the right reason.
"""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from olmo3_core.config.typed import from_dict
from olmo3_core.data.config import DataConfig

from olmo3_core.data.synthetic import english_doc, perturb
from olmo3_core.problems.evalsets import eval_texts

CONF = Path(__file__).resolve().parents[3] / "conf" / "data" / "default.yaml"
FRENCH = ("Le petit village se trouve au bord de la rivière et les habitants travaillent dans les champs pendant "
          "toute la journée. Les enfants vont à l'école le matin et jouent dans le jardin après le déjeuner. ") * 4
GERMAN = ("Das kleine Dorf liegt am Ufer des Flusses und die Menschen arbeiten den ganzen Tag auf den Feldern. "
          "Die Kinder gehen am Morgen zur Schule und spielen nach dem Mittagessen im Garten. ") * 4
SPANISH = ("El pequeño pueblo está a la orilla del río y la gente trabaja en los campos durante todo el día. "
           "Los niños van a la escuela por la mañana y juegan en el jardín después del almuerzo. ") * 4
PII_TEXT = "Contact the harbor office at office@harbor-example.org or call 555-123-4567 from host 192.168.10.42 today."


def write_jsonl(path: Path, records: list[Any], opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def doc(doc_id: str, text: str) -> dict[str, Any]:
    return {"id": doc_id, "text": text, "source": "planted", "added": "2025-01-01T00:00:00Z", "created": None, "metadata": {}}


def _hashtagged(text: str) -> str:
    """Symbol junk: a `#` after every third word."""
    words = text.split()
    return " ".join(w + (" #" if i % 3 == 2 else "") for i, w in enumerate(words))


def planted_web(root: Path) -> dict[str, Any]:
    """Web-like Dolma files with every plant; returns the expectations."""
    rng = random.Random(7)
    clean = [doc(f"clean-{i}", english_doc(rng, rng.randint(10, 25))) for i in range(40)]
    math_leak = eval_texts("procedural_math", 50, 1234)[3]
    plants = {
        "exact": [doc("exact-0", clean[0]["text"]), doc("exact-1", clean[1]["text"]),
                  doc("exact-ws", clean[2]["text"].replace(". ", ".  "))],
        "near": [doc(f"near-{i}", perturb(clean[10 + i]["text"], rng, 3)) for i in range(3)],
        "leak": [doc("leak-math", english_doc(rng, 6) + "\n\n" + math_leak + "\n\n" + english_doc(rng, 6))],
        "lang": [doc("fr", FRENCH), doc("de", GERMAN), doc("es", SPANISH)],
        "junk": [doc("junk-rep", "We sell the best watches and the best rings at the best price for you. " * 40),
                 doc("junk-sym", _hashtagged(english_doc(rng, 12)))],
        "pii": [doc("pii", english_doc(rng, 8) + " " + PII_TEXT + " " + english_doc(rng, 8))],
    }
    root.mkdir(parents=True, exist_ok=True)
    good = clean + [d for group in plants.values() for d in group]
    write_jsonl(root / "part-0.jsonl.gz", good[:30], gzip.open)
    import zstandard

    with zstandard.open(root / "part-1.jsonl.zst", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in good[30:45])
    import pyarrow as pa
    import pyarrow.parquet as pq

    rest = good[45:]
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in d.items() if k != "metadata"} for d in rest]), root / "part-2.parquet")
    # malformed records between good ones, in plain JSONL
    extra = [doc("after-bad-0", english_doc(rng, 12)), doc("after-bad-1", english_doc(rng, 12))]
    with open(root / "part-3.jsonl", "wb") as fh:
        fh.write((json.dumps(extra[0]) + "\n").encode())
        fh.write(b'{"id": "broken", "text": "no closing brace"\n')
        fh.write(b'{"id": "latin1", "text": "caf\xe9 au lait"}\n')
        fh.write(b'{"id": "no-text", "body": "nothing here"}\n')
        fh.write((json.dumps(extra[1]) + "\n").encode())
    # a gzip cut off mid-stream: the records before the break survive
    before_break = [doc(f"pre-break-{i}", english_doc(rng, 12)) for i in range(3)]
    blob = gzip.compress("".join(json.dumps(d) + "\n" for d in before_break + [doc("lost", english_doc(rng, 200))]).encode())
    (root / "part-4.jsonl.gz").write_bytes(blob[: int(len(blob) * 0.8)])
    return {"clean": clean, "plants": plants, "extra": extra, "before_break": before_break, "files": 5}


def stage_config(sources: dict[str, Any], **overrides: Any) -> DataConfig:
    """default.yaml with the given sources, a small tokenizer and small mixes (fast), typed."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF))
    cfg |= {"sources": sources, "workers": 2, "shard_tokens": 4096,
            "tokenizer": {"vocab_size": 400, "min_frequency": 2, "train_chars": 200_000}}
    cfg["decontam"] |= {"sets": {"procedural_math": 50, "humaneval": 20}, "seed": 1234}  # what compose resolves
    names = list(sources)
    share = {s: 1.0 for s in names}
    cfg["mixes"] = {"pretrain": {"proportions": share, "tokens": 6000},
                    "midtrain": {"proportions": share, "tokens": 3000},
                    "longcontext": {"proportions": share, "tokens": 2000, "min_doc_tokens": 64, "longest_first": True}}
    return from_dict(DataConfig, OmegaConf.to_container(OmegaConf.merge(cfg, overrides)))


def run_stage(cfg: DataConfig, out: Path):
    """The data stage as the runner calls it: with the input files the plan resolves."""
    from olmo3_core.data.stage import run
    from olmo3_core.plan import data_files
    from olmo3_core.stages import StageContext

    return run(StageContext("data", "data", cfg, {}, out, files=data_files(cfg)))


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    expected = planted_web(root / "web")
    return root, expected


@pytest.fixture(scope="session")
def make_config():
    return stage_config


@pytest.fixture(scope="session")
def run_data_stage():
    return run_stage
