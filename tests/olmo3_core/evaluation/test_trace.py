"""trace-output: a span planted in one training document is found, with its document, from a model output."""
from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from olmo3_core.data.synthetic import english_doc
from olmo3_core.evaluation.trace import MAX_SPAN, open_index, suffix_array

PLANT = ("Quartz lanterns hum beneath the violet harbor while seventeen copper herons recite "
         "forgotten tide tables to a patient lighthouse keeper named Orvelline Bask.")


def _data_artifact(root, docs_per_mix=40):
    """The packed layout the data stage writes: mixes/<mix>/shard_N.npy + index, documents.parquet, tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    rng = random.Random(0)
    texts = {mix: [english_doc(rng, sentences=8) for _ in range(docs_per_mix)] for mix in ("pretrain", "midtrain")}
    planted_id = "web-planted"
    texts["midtrain"][17] = texts["midtrain"][17] + " " + PLANT + " " + english_doc(rng, sentences=2)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = __import__("tokenizers").decoders.ByteLevel()
    tok.train_from_iterator([t for ts in texts.values() for t in ts],
                            trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    (root / "tokenizer").mkdir(parents=True)
    tok.save(str(root / "tokenizer" / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    for mix, docs in texts.items():
        mix_dir = root / "mixes" / mix
        mix_dir.mkdir(parents=True)
        for shard, part in enumerate((docs[: len(docs) // 2], docs[len(docs) // 2 :])):
            ids, spans = [], []
            for i, text in enumerate(part):
                row = shard * (len(docs) // 2) + i
                start = len(ids)
                ids += tok.encode(text).ids + [eos]
                spans.append((start, len(ids), row))
            np.save(mix_dir / f"shard_{shard:05d}.npy", np.asarray(ids, dtype=np.uint32))
            start, end, row = zip(*spans)
            pq.write_table(pa.table({"start": list(start), "end": list(end), "doc_row": list(row)}),
                           mix_dir / f"shard_{shard:05d}.index.parquet")
        ids_ = [planted_id if (mix, r) == ("midtrain", 17) else f"{mix}-{r}" for r in range(len(docs))]
        pq.write_table(pa.table({"doc_row": list(range(len(docs))), "id": ids_, "source": ["web"] * len(docs),
                                 "documents_file": [f"documents/web/{mix}.jsonl.gz"] * len(docs),
                                 "documents_row": list(range(len(docs))), "tokens": [0] * len(docs)}),
                       mix_dir / "documents.parquet")
    (root / "artifact.json").write_text(json.dumps({"fingerprint": "f" * 64, "kind": "data"}))
    return root, tok


def _naive_sa(seq):
    return sorted(range(len(seq)), key=lambda i: list(seq[i:]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suffix_array_matches_sorting_suffixes(seed):
    rng = np.random.default_rng(seed)
    seq = rng.integers(0, 3, size=200).astype(np.uint32)  # a small alphabet: long repeats
    assert suffix_array(seq).tolist() == _naive_sa(seq.tolist())
    assert suffix_array(np.zeros(0, dtype=np.uint32)).tolist() == []


def test_planted_span_is_traced_to_its_document(tmp_path):
    data, tok = _data_artifact(tmp_path / "data")
    index, built = open_index(data, cache_root=tmp_path / "cache")
    assert built > 0
    assert len(tok.encode(PLANT).ids) >= 30
    output = "The model said: " + PLANT + " And then it stopped."
    spans = index.spans(output, min_tokens=8)
    best = spans[0]
    assert best.length >= 30 and best.occurrences == 1
    assert best.text.strip() in PLANT
    (hit,) = best.documents
    assert (hit.document_id, hit.source, hit.documents_row) == ("web-planted", "web", 17)
    assert hit.documents_file == "documents/web/midtrain.jsonl.gz"
    shard = np.load(hit.shard)
    assert shard[hit.offset : hit.offset + best.length].tolist() == \
        tok.encode(output).ids[best.start : best.start + best.length]
    # no long span of unrelated text: nothing reported at a high threshold
    assert index.spans("Zebra xylophone quokka jambalaya.", min_tokens=8) == []
    # the second open reuses the cached index
    again, built_again = open_index(data, cache_root=tmp_path / "cache")
    assert built_again == 0.0 and again.spans(output, min_tokens=8)[0].length == best.length
    assert best.length <= MAX_SPAN


def _sft_artifact(root, rows_file):
    """An SFT stage's manifest as the runner writes it: its config names a procedural set and a file."""
    from olmo3_core.config.schema import PosttrainStageConfig, SFTConfig
    from olmo3_core.config.typed import to_dict

    root.mkdir(parents=True)
    rows_file.write_text(json.dumps({"messages": [{"role": "user", "content": "Tell me about herons."},
                                                  {"role": "assistant", "content": PLANT}]}) + "\n")
    config = PosttrainStageConfig(template="instruct", sft=SFTConfig(mixture={"ifeval": 6}, files=[str(rows_file)], seed=3))
    manifest = {"stage": "instruct/sft", "kind": "sft", "fingerprint": "e" * 64, "uri": str(root), "config": to_dict(config)}
    (root / "artifact.json").write_text(json.dumps(manifest))
    return manifest


def test_post_training_rows_are_traced_to_their_source_and_row(tmp_path):
    from olmo3_core.evaluation.trace import open_posttrain_index
    from olmo3_core.problems.procedural import instructions

    data, _ = _data_artifact(tmp_path / "data")
    manifest = _sft_artifact(tmp_path / "sft", tmp_path / "extra.jsonl")
    index, built = open_posttrain_index(manifest, data, cache_root=tmp_path / "cache")
    assert built > 0
    response = instructions.sft_records(6, 3, "train")[4]["messages"][1]["content"]
    best = index.spans("Well. " + response, min_tokens=8)[0]
    assert best.text.strip() in response and best.length >= len(index.tokenizer.encode(response).ids) - 2
    hit = best.documents[0]
    assert (hit.documents_file, hit.documents_row) == ("procedural:ifeval", 4)
    assert hit.document_id == "instruct/sft:procedural:ifeval#4/messages[1]" and hit.source == "instruct/sft (sft)"
    (from_file,) = index.spans(PLANT, min_tokens=8)
    assert from_file.documents[0].documents_file == str(tmp_path / "extra.jsonl")


def test_trace_output_command_from_an_export(tmp_path, monkeypatch, capsys):
    from olmo3_cli.main import main

    data, _ = _data_artifact(tmp_path / "data")
    _sft_artifact(tmp_path / "sft", tmp_path / "extra.jsonl")
    export = tmp_path / "export" / "model"
    export.mkdir(parents=True)
    (export / "lineage.json").write_text(json.dumps({"chain": [
        {"stage": "instruct/sft", "kind": "sft", "uri": str(tmp_path / "sft")},
        {"stage": "data", "kind": "data", "uri": f"file://{data}"}]}))
    monkeypatch.setenv("OLMO3_HOME", str(tmp_path / "home"))
    assert main(["trace-output", f"so: {PLANT}", "--model", str(export), "--json"]) == 0
    spans = json.loads(capsys.readouterr().out)
    # the planted text is in a pretraining document and in an SFT file row: both are reported
    assert {s["documents"][0]["document_id"] for s in spans[:2]} == {"web-planted", "instruct/sft:" + str(tmp_path / "extra.jsonl") + "#0/messages[1]"}
    assert all(s["length"] >= 30 for s in spans[:2])
    assert main(["trace-output", PLANT, "--data", str(data)]) == 0
    assert "web-planted  source=web  file=documents/web/midtrain.jsonl.gz  row=17" in capsys.readouterr().out
