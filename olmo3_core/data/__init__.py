"""The data stage: Dolma 3 style curation of named sources into a tokenizer and three packed mixes.

Sources (built-in samples, Dolma JSONL/Parquet files, PDFs) are read shard by shard in parallel,
cleaned, tagged and filtered by per-source processor chains, decontaminated against the flow's eval
sets, deduplicated (exact and MinHash), then tokenized, mixed to target proportions and packed into
`mixes/{pretrain,midtrain,longcontext}/shard_*.npy` with a provenance index per shard.
"""
