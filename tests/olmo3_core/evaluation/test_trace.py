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


def test_trace_output_command_from_an_export(tmp_path, monkeypatch, capsys):
    from olmo3_cli.main import main

    data, _ = _data_artifact(tmp_path / "data")
    export = tmp_path / "export" / "model"
    export.mkdir(parents=True)
    (export / "lineage.json").write_text(json.dumps({"chain": [
        {"stage": "base/export", "kind": "export", "uri": str(tmp_path / "export")},
        {"stage": "data", "kind": "data", "uri": f"file://{data}"}]}))
    monkeypatch.setenv("OLMO3_HOME", str(tmp_path / "home"))
    assert main(["trace-output", f"so: {PLANT}", "--model", str(export), "--json"]) == 0
    spans = json.loads(capsys.readouterr().out)
    assert spans[0]["documents"][0]["document_id"] == "web-planted" and spans[0]["length"] >= 30
    assert main(["trace-output", PLANT, "--data", str(data)]) == 0
    assert "web-planted  source=web  file=documents/web/midtrain.jsonl.gz  row=17" in capsys.readouterr().out
