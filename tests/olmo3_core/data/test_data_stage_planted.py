"""End to end: the data stage on a planted corpus handles and counts every plant under its reason."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from olmo3_core.chat import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS
from olmo3_core.data.mixing import EmptyMixError
from olmo3_core.data.provenance import trace_token


def _jsonl(path):
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def stage(planted, tmp_path_factory, make_config, run_data_stage):
    root, expected = planted
    cfg = make_config({"web": {"kind": "files", "paths": [str(root / "web" / "part-*")], "processors": "prose"}})
    out = tmp_path_factory.mktemp("out")
    result = run_data_stage(cfg, out)
    return out, result, expected, json.loads((out / "datasheet.json").read_text())["sources"]["web"]


def test_every_plant_is_counted_under_its_reason(stage):
    _, _, expected, sheet = stage
    removed = sheet["removed"]
    assert removed["dedup:exact"] == len(expected["plants"]["exact"])
    assert removed["dedup:fuzzy"] == len(expected["plants"]["near"])
    assert removed["decontam:procedural_math"] == 1
    assert removed["langid:other_language"] == 3
    assert removed["gopher_repetition:top_2gram"] == 1
    assert removed["gopher_quality:symbol_ratio"] == 1
    assert sheet["quarantined"] == {"malformed_json": 1, "bad_encoding": 1, "missing_text": 1, "corrupt_compression": 1}
    assert sheet["decontam"]["items_by_set"] == {"procedural_math": 1}
    assert sheet["decontam"]["distinct_items_by_set"] == {"procedural_math": 1}
    assert [(h["id"], h["matched"]) for h in sheet["decontam"]["matched"]] == [("leak-math", {"procedural_math": [3]})]
    assert sheet["languages"]["en"] == sheet["docs_out"] + sheet["dedup"]["exact"] + sheet["dedup"]["fuzzy"]


def test_good_records_around_bad_ones_survive(stage):
    out, _, expected, _ = stage
    kept = {d["id"] for p in (out / "documents" / "web").glob("*.jsonl.gz") for d in _jsonl(p)}
    assert {d["id"] for d in expected["extra"] + expected["before_break"] + expected["clean"]} <= kept
    quarantine = [q for p in (out / "quarantine" / "web").glob("*.jsonl.gz") for q in _jsonl(p)]
    assert sorted(q["reason"].split(":")[0] for q in quarantine) == sorted(
        ["malformed_json", "bad_encoding", "missing_text", "corrupt_compression"])
    assert all(q["uri"] for q in quarantine)


def test_dedup_records_kept_in_favour_of(stage):
    out, _, expected, _ = stage
    decisions = {d["id"]: d for p in (out / "attributes" / "web").glob("*.dedup.jsonl.gz") for d in _jsonl(p)}
    assert decisions["exact-0"]["kept_in_favour_of"]["id"] == "clean-0"
    assert decisions["exact-ws"]["decision"] == "dedup:exact"
    for i, near in enumerate(expected["plants"]["near"]):
        assert decisions[near["id"]]["decision"] == "dedup:fuzzy"
        assert decisions[near["id"]]["kept_in_favour_of"]["id"] == f"clean-{10 + i}"
    attrs = {d["id"]: d for p in (out / "attributes" / "web").glob("shard_?????.jsonl.gz") for d in _jsonl(p)}
    assert attrs["fr"]["attributes"]["langid"]["lang"] == "fr"
    assert attrs["junk-rep"]["attributes"]["gopher_repetition"]["top_2gram_frac"] > 0.2


def test_pii_is_masked(stage):
    out, *_ = stage
    docs = {d["id"]: d for p in (out / "documents" / "web").glob("*.jsonl.gz") for d in _jsonl(p)}
    text = docs["pii"]["text"]
    assert "|||EMAIL_ADDRESS|||" in text and "|||PHONE_NUMBER|||" in text and "|||IP_ADDRESS|||" in text
    assert "office@harbor-example.org" not in text and "192.168.10.42" not in text


def test_outputs_follow_the_trainer_contract(stage):
    out, result, expected, _ = stage
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    assert len(tok) == 400 and tok.eos_token == EOS_TOKEN and tok.pad_token == PAD_TOKEN and tok.bos_token is None
    assert set(SPECIAL_TOKENS) <= set(tok.all_special_tokens)
    for mix in ("pretrain", "midtrain", "longcontext"):
        shard = np.load(out / "mixes" / mix / "shard_00000.npy")
        assert shard.dtype == np.uint32 and shard.ndim == 1 and shard[-1] == tok.eos_token_id
        assert shard.max() < 400
    assert len(result.raw_inputs) == expected["files"]
    assert all(len(r["sha256"]) == 64 and r["source"] == "web" and r["bytes"] > 0 for r in result.raw_inputs)
    assert "Removals by reason" in result.report_markdown and (out / "token_share.png").exists()
    assert not (out / "tokens").exists()


def test_token_traces_to_its_source_document(stage):
    out, *_ = stage
    from tokenizers import Tokenizer

    shard = out / "mixes" / "pretrain" / "shard_00000.npy"
    index = pq.read_table(shard.with_name("shard_00000.index.parquet")).to_pydict()
    start, end = index["start"][2], index["end"][2]
    info = trace_token(str(shard), start + 5)
    assert info["span"] == [start, end] and info["source"] == "web"
    docs = _jsonl(out / info["documents_file"])
    text = docs[info["documents_row"]]["text"]
    assert docs[info["documents_row"]]["id"] == info["document_id"]
    tokens = np.load(shard)[start : end - 1]
    assert Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json")).decode(tokens.tolist()) == text
    assert info["snippet"] and info["snippet"][:20] in text


def test_empty_mix_is_an_error_naming_source_and_removals(planted, tmp_path, make_config, run_data_stage):
    root, _ = planted
    cfg = make_config({"web": {"kind": "files", "paths": [str(root / "web" / "part-3.jsonl")], "processors": "prose"}},
                       mixes={"longcontext": {"min_doc_tokens": 100000}})
    with pytest.raises(EmptyMixError, match=r"longcontext.*'web'.*removed"):
        run_data_stage(cfg, tmp_path)
