"""trace-output: suffix-array build time and query latency on a data artifact.

    python benchmarks/bench_trace.py [--data <data artifact dir>] [--tokens 1000000] [--queries 200]

With --data, indexes that artifact (e.g. the tiny or micro preset's data stage output); without it,
writes a synthetic artifact of about --tokens tokens of English-like prose in the packed layout the
data stage produces. Times what the trace_index stage does (`build_index` over every shard), outside
the runner and the store. Reports the index build time, its size, the latency of `find` (longest match of
one token sequence) for windows cut from the corpus and for random token sequences, and of a whole
`spans` query (tokenize, every start position, map hits to documents) on a 100-token output.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from olmo3_core.data.synthetic import english_doc
from olmo3_core.evaluation.trace import TraceIndex, build_index, shards_of


def synthetic_artifact(root: Path, tokens: int, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(seed)
    docs, chars = [], 0
    while chars < tokens * 4:  # about four characters per token
        docs.append(english_doc(rng, sentences=rng.randint(8, 24)))
        chars += len(docs[-1])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(docs[:2000], trainers.BpeTrainer(vocab_size=2048, special_tokens=["<|endoftext|>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    (root / "tokenizer").mkdir(parents=True)
    tok.save(str(root / "tokenizer" / "tokenizer.json"))
    eos, mix_dir = tok.token_to_id("<|endoftext|>"), root / "mixes" / "pretrain"
    mix_dir.mkdir(parents=True)
    ids, spans = [], []
    for row, enc in enumerate(tok.encode_batch(docs)):
        start = len(ids)
        ids += enc.ids + [eos]
        spans.append((start, len(ids), row))
    np.save(mix_dir / "shard_00000.npy", np.asarray(ids, dtype=np.uint32))
    start, end, row = zip(*spans)
    pq.write_table(pa.table({"start": list(start), "end": list(end), "doc_row": list(row)}),
                   mix_dir / "shard_00000.index.parquet")
    pq.write_table(pa.table({"doc_row": list(range(len(docs))), "id": [f"doc-{i}" for i in range(len(docs))],
                             "source": ["synthetic"] * len(docs), "documents_file": ["synthetic.jsonl.gz"] * len(docs),
                             "documents_row": list(range(len(docs))), "tokens": [0] * len(docs)}),
                   mix_dir / "documents.parquet")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a data artifact directory (default: a synthetic one)")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else synthetic_artifact(Path(tmp) / "data", args.tokens)
        t0 = time.perf_counter()
        build_index(shards_of(data), Path(tmp) / "index")
        built = time.perf_counter() - t0
        index = TraceIndex(Path(tmp) / "index", data)
        n = len(index.corpus)
        size = sum(f.stat().st_size for f in index.directory.iterdir())
        print(f"corpus: {n:,} tokens in {len(index.segments)} shard(s)")
        print(f"index build: {built:.2f}s ({n / max(built, 1e-9) / 1e6:.2f}M tokens/s), {size / 2**20:.1f} MiB on disk")
        rng = np.random.default_rng(0)
        for label, make in [
            ("64-token window of the corpus", lambda: np.asarray(index.corpus[(s := int(rng.integers(0, n - 64))) : s + 64])),
            ("64 random tokens", lambda: rng.integers(0, int(index.corpus[index.corpus < 2**31].max()) + 1, 64)),
        ]:
            queries = [make().tolist() for _ in range(args.queries)]
            t0 = time.perf_counter()
            lengths = [index.find(q)[0] for q in queries]
            ms = (time.perf_counter() - t0) * 1000 / len(queries)
            print(f"find, {label}: {ms:.2f} ms/query (mean longest match {np.mean(lengths):.1f} tokens)")
        text = index.tokenizer.decode(np.asarray(index.corpus[1000:1100]).tolist())
        t0 = time.perf_counter()
        spans = index.spans("An output quoting its data: " + text, min_tokens=8)
        print(f"spans of a 100-token output: {(time.perf_counter() - t0) * 1000:.0f} ms "
              f"(longest {spans[0].length if spans else 0} tokens, {len(spans)} span(s))")


if __name__ == "__main__":
    main()
