"""Curation throughput vs datatrove, and MinHash dedup precision/recall on planted near-duplicates.

Generates a synthetic English corpus (>= 50k docs by default) in which a share of documents are
near-duplicates (a few words changed) of others, writes it as Dolma JSONL shards, then runs on the
same files, with the same number of worker processes:
  ours:      Gopher repetition + Gopher quality + C4 filters, then MinHash+LSH dedup
             (olmo3_core.data: curate_shard on the executor, then the global Deduplicator)
  datatrove: the same three filters, then its four-stage MinHash dedup (signatures, buckets,
             clusters, filter), with its LocalPipelineExecutor
and prints docs/s for both, the ratio, and each side's dedup precision/recall on the plants.

    python benchmarks/bench_curation.py [--docs 50000] [--workers 2] [--near-dup-rate 0.05]

Needs `datatrove` (the `bench` extra) and `spacy` (datatrove's English word tokenizer; no model
download is needed).
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import tempfile
import time
from pathlib import Path

from olmo3_core.data.config import DataConfig, DedupConfig
from olmo3_core.data.executor import make_executor, map_ordered
from olmo3_core.data.pipeline import ShardTask, curate_shard
from olmo3_core.data.stage import deduplicate
from olmo3_core.data.synthetic import english_doc, perturb

FILTERS = [{"name": "gopher_repetition"}, {"name": "gopher_quality"}, {"name": "c4"}]


def make_corpus(root: Path, docs: int, near_dup_rate: float, shards: int, seed: int) -> dict[str, str]:
    """Writes `shards` JSONL.gz files; returns near-duplicate id -> the original it was made from."""
    rng = random.Random(seed)
    originals = int(docs * (1 - near_dup_rate))
    records = [{"id": f"doc-{i}", "text": english_doc(rng, rng.randint(8, 20))} for i in range(originals)]
    truth = {}
    for j in range(docs - originals):
        source = rng.randrange(originals)
        truth[f"near-{j}"] = f"doc-{source}"
        records.append({"id": f"near-{j}", "text": perturb(records[source]["text"], rng, rng.randint(2, 5))})
    rng.shuffle(records)
    root.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with gzip.open(root / f"part-{s:03d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as fh:
            fh.writelines(json.dumps({**r, "source": "bench"}) + "\n" for r in records[s::shards])
    return truth


def score(removed: dict[str, str], survivors: set[str], truth: dict[str, str]) -> tuple[float, float]:
    """Precision/recall of near-dup removals against the planted clusters (original + its copies).

    Only documents that survived the quality filters count: a copy whose whole cluster is otherwise
    filtered out is rightly kept.
    """
    cluster = lambda doc_id: truth.get(doc_id, doc_id)  # noqa: E731
    candidates = {d for d in survivors | set(removed) if d in truth or d in truth.values()}
    by_cluster: dict[str, int] = {}
    for d in candidates:
        by_cluster[cluster(d)] = by_cluster.get(cluster(d), 0) + 1
    should_remove = sum(n - 1 for n in by_cluster.values())
    true_pos = sum(1 for d, kept in removed.items() if kept is None or cluster(d) == cluster(kept))
    precision = true_pos / len(removed) if removed else 1.0
    return precision, min(true_pos / should_remove, 1.0) if should_remove else 1.0


def run_ours(corpus: Path, work: Path, workers: int) -> tuple[float, dict[str, str], set[str]]:
    cfg = DataConfig(workers=workers, dedup=DedupConfig())
    tasks = [ShardTask("bench", f"shard_{i:05d}", [str(p)], "documents", FILTERS, cfg.dedup, str(work))
             for i, p in enumerate(sorted(corpus.glob("*.jsonl.gz")))]
    start = time.perf_counter()
    with make_executor(cfg) as executor:
        reports = map_ordered(executor, curate_shard, tasks, lambda *a: None, "curate")
    drops = deduplicate(cfg, reports, work, lambda *a: None)
    elapsed = time.perf_counter() - start
    removed = {reports[n].ids[row]: reports[d.kept[0]].ids[d.kept[1]] for n, rows in drops.items() for row, d in rows.items()}
    survivors = {i for r in reports for i in r.ids} - set(removed)
    return elapsed, removed, survivors


def run_datatrove(corpus: Path, work: Path, workers: int, shards: int) -> tuple[float, dict[str, str | None], set[str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from datatrove.utils.hashing import HashConfig

    # sha1 like ours (datasketch); datatrove's default xxhash path breaks with xxhash>=4 (str input)
    mh = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, hash_config=HashConfig(precision=64, hash_fc="sha1"))
    logs = str(work / "logs")

    def executor(pipeline, tasks, name):
        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=f"{logs}/{name}")

    stages = [
        executor([JsonlReader(str(corpus)), GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(),
                  JsonlWriter(str(work / "filtered"))], shards, "filter"),
        executor([JsonlReader(str(work / "filtered")), MinhashDedupSignature(str(work / "sigs"), config=mh)], shards, "sigs"),
        executor([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=mh)], mh.num_buckets, "buckets"),
        executor([MinhashDedupCluster(str(work / "buckets"), str(work / "remove_ids"), config=mh)], 1, "clusters"),
        executor([JsonlReader(str(work / "filtered")),
                  MinhashDedupFilter(str(work / "remove_ids"), exclusion_writer=JsonlWriter(str(work / "removed"))),
                  JsonlWriter(str(work / "deduped"))], shards, "filter_dups"),
    ]
    start = time.perf_counter()
    for stage in stages:
        stage.run()
    elapsed = time.perf_counter() - start
    ids = lambda folder: {json.loads(line)["id"] for p in (work / folder).glob("*.jsonl.gz") for line in gzip.open(p, "rt")}  # noqa: E731
    return elapsed, dict.fromkeys(ids("removed")), ids("deduped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--near-dup-rate", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-curation-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        truth = make_corpus(root / "corpus", args.docs, args.near_dup_rate, args.shards, args.seed)
        print(f"corpus: {args.docs} docs ({len(truth)} planted near-dups) in {time.perf_counter() - t:.1f}s")
        ours_s, ours_removed, ours_kept = run_ours(root / "corpus", root / "ours", args.workers)
        dt_s, dt_removed, dt_kept = run_datatrove(root / "corpus", root / "datatrove", args.workers, args.shards)
    ours_p, ours_r = score(ours_removed, ours_kept, truth)
    dt_p, dt_r = score(dt_removed, dt_kept, truth)
    print(f"ours:      {args.docs / ours_s:8.0f} docs/s ({ours_s:.1f}s), kept {len(ours_kept)}, "
          f"dedup precision {ours_p:.3f} recall {ours_r:.3f}")
    print(f"datatrove: {args.docs / dt_s:8.0f} docs/s ({dt_s:.1f}s), kept {len(dt_kept)}, "
          f"dedup precision {dt_p:.3f} recall {dt_r:.3f}")
    print(f"throughput ratio (ours / datatrove): {dt_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
