"""trace-output: a span planted in one training document is found, with its document, from a model output."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from olmo3_core.data.synthetic import english_doc
from olmo3_core.evaluation.trace import MAX_SPAN, TraceIndex, build_index, shards_of, suffix_array

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


def _stored_data(store_root):
    """The same data artifact published in a store, with the manifest the runner would write."""
    from olmo3_core.artifacts import ArtifactStore
    from olmo3_core.config.typed import to_dict
    from olmo3_core.data.config import DataConfig

    store = ArtifactStore(str(store_root))
    fingerprint = "d" * 64
    staging = store.staging_dir("data", fingerprint)
    _, tok = _data_artifact(staging)
    manifest = store.publish("data", fingerprint, staging, {
        "stage": "data", "kind": "data", "line": "base", "fingerprint": fingerprint, "config": to_dict(DataConfig()),
        "upstream": []})
    return staging, tok, manifest


def test_planted_span_is_traced_to_its_document(tmp_path):
    data, tok = _data_artifact(tmp_path / "data")
    stats = build_index(shards_of(data), tmp_path / "index")
    assert stats == {"tokens": sum(len(np.load(p)) for p in data.glob("mixes/*/shard_*.npy")), "runs": 4}
    # shards are named relative to the data artifact: the index holds for a copy of both, elsewhere
    segments = json.loads((tmp_path / "index" / "segments.json").read_text())
    assert [s["shard"] for s in segments][:2] == ["mixes/midtrain/shard_00000.npy", "mixes/midtrain/shard_00001.npy"]
    shutil.copytree(data, tmp_path / "moved" / "data")
    shutil.copytree(tmp_path / "index", tmp_path / "moved" / "index")
    shutil.rmtree(data)
    index = TraceIndex(tmp_path / "moved" / "index", tmp_path / "moved" / "data")
    assert len(tok.encode(PLANT).ids) >= 30
    output = "The model said: " + PLANT + " And then it stopped."
    spans = index.spans(output, min_tokens=8)
    best = spans[0]
    assert best.length >= 30 and best.occurrences == 1
    assert best.text.strip() in PLANT
    (hit,) = best.documents
    assert (hit.document_id, hit.source, hit.documents_row) == ("web-planted", "web", 17)
    assert hit.documents_file == "documents/web/midtrain.jsonl.gz"
    assert hit.shard.startswith(str(tmp_path / "moved" / "data" / "mixes" / "midtrain"))
    shard = np.load(hit.shard)
    assert shard[hit.offset : hit.offset + best.length].tolist() == \
        tok.encode(output).ids[best.start : best.start + best.length]
    # no long span of unrelated text: nothing reported at a high threshold
    assert index.spans("Zebra xylophone quokka jambalaya.", min_tokens=8) == []
    assert best.length <= MAX_SPAN == index.max_span


def test_the_index_is_a_stage_artifact_built_once_and_rebuilt_when_damaged(tmp_path, capsys):
    from olmo3_cli.main import main
    from olmo3_core.config.compose import compose_config
    from olmo3_core.evaluation.trace_output import data_index

    data, _, data_manifest = _stored_data(tmp_path / "store")
    cfg = compose_config([f"storage.root={tmp_path / 'store'}"])
    first = data_index(cfg, data)
    assert first.built_s > 0 and first.mlflow_run_id
    index_dir = tmp_path / "store" / "trace_index" / Path(first.where).name
    manifest = json.loads((index_dir / "artifact.json").read_text())
    assert manifest["stage"] == manifest["kind"] == "trace_index"
    assert [(u["stage"], u["fingerprint"]) for u in manifest["upstream"]] == [("data", data_manifest["fingerprint"])]
    assert {"corpus.npy", "sa.npy", "segments.json", "index.json"} <= set(manifest["files"])
    assert manifest["metrics"]["tokens_indexed"] == first.index.corpus.size - 4 and manifest["metrics"]["index_bytes"] > 0
    assert first.index.spans(PLANT, min_tokens=8)[0].documents[0].document_id == "web-planted"

    again = data_index(cfg, data)  # the stored artifact is reused: no build, same manifest
    assert again.built_s == 0.0 and again.where == first.where
    assert json.loads((index_dir / "artifact.json").read_text())["mlflow"] == manifest["mlflow"]

    # lineage of the index artifact, through the generic mechanism: data is its parent
    assert main(["lineage", str(index_dir), "--json"]) == 0
    assert [r["stage"] for r in json.loads(capsys.readouterr().out)] == ["trace_index", "data"]

    # a damaged index is never reused: quarantined and built again as the same stage
    with open(index_dir / "sa.npy", "r+b") as fh:
        fh.truncate(100)
    rebuilt = data_index(cfg, data)
    assert rebuilt.built_s > 0 and rebuilt.mlflow_run_id != first.mlflow_run_id and rebuilt.where == first.where
    assert (index_dir / "sa.npy").stat().st_size == manifest["files"]["sa.npy"]["bytes"]
    assert list((tmp_path / "store" / ".quarantine" / "trace_index").iterdir())
    assert rebuilt.index.spans(PLANT, min_tokens=8)[0].length >= 30


def test_a_data_artifact_outside_the_store_is_refused_clearly(tmp_path):
    from olmo3_core.config.compose import compose_config
    from olmo3_core.evaluation.trace_output import TraceError, data_index

    data, _ = _data_artifact(tmp_path / "data")
    with pytest.raises(TraceError, match="is not in the store"):
        data_index(compose_config([f"storage.root={tmp_path / 'store'}"]), data)


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
    from olmo3_core.evaluation.trace_output import open_posttrain_index
    from olmo3_core.problems.procedural import instructions

    data, _ = _data_artifact(tmp_path / "data")
    manifest = _sft_artifact(tmp_path / "sft", tmp_path / "extra.jsonl")
    found = open_posttrain_index(manifest, data, cache_root=tmp_path / "cache")
    index = found.index
    assert found.built_s > 0
    assert open_posttrain_index(manifest, data, cache_root=tmp_path / "cache").built_s == 0.0  # cached
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

    monkeypatch.setenv("OLMO3_HOME", str(tmp_path / "home"))
    data, _, _ = _stored_data(tmp_path / "home" / "artifacts")  # the default store of that home
    _sft_artifact(tmp_path / "sft", tmp_path / "extra.jsonl")
    export = tmp_path / "export" / "model"
    export.mkdir(parents=True)
    (export / "lineage.json").write_text(json.dumps({"chain": [
        {"stage": "instruct/sft", "kind": "sft", "uri": str(tmp_path / "sft")},
        {"stage": "data", "kind": "data", "uri": f"file://{data}"}]}))
    assert main(["trace-output", f"so: {PLANT}", "--model", str(export), "--json"]) == 0
    out = capsys.readouterr()
    spans = json.loads(out.out)
    # the planted text is in a pretraining document and in an SFT file row: both are reported
    assert {s["documents"][0]["document_id"] for s in spans[:2]} == {"web-planted", "instruct/sft:" + str(tmp_path / "extra.jsonl") + "#0/messages[1]"}
    assert all(s["length"] >= 30 for s in spans[:2])
    assert "built the trace index of data in" in out.err and "/trace_index/" in out.err
    assert "built the trace index of instruct/sft in" in out.err
    assert main(["trace-output", PLANT, "--data", str(data)]) == 0
    out = capsys.readouterr()
    assert "web-planted  source=web  file=documents/web/midtrain.jsonl.gz  row=17" in out.out
    assert "built the trace index" not in out.err  # the stage artifact is reused
    assert main(["trace-output", PLANT, "--data", str(tmp_path / "sft")]) == 2
    assert "not in the store" in capsys.readouterr().err
