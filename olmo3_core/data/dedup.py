"""Exact and fuzzy (MinHash + LSH) deduplication across all sources.

Workers compute a content hash and a MinHash signature per document in parallel; the driver then
walks documents in a fixed order (sources in config order, shards, rows), so the first occurrence
of each cluster is its representative and every removal names the document it was removed in
favour of. Candidates from LSH are confirmed by their estimated Jaccard, which keeps precision high.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

import numpy as np

from olmo3_core.data.config import DedupConfig

WORD = re.compile(r"\w+")


def content_hash(text: str) -> str:
    """Hash of the whitespace-normalized text: exact duplicates up to spacing."""
    return hashlib.blake2b(" ".join(text.split()).encode(), digest_size=16).hexdigest()


def shingles(text: str, n: int) -> set[bytes]:
    """Lower-cased word n-grams (one shingle for documents shorter than n words)."""
    words = WORD.findall(text.lower())
    if len(words) <= n:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


class Signer:
    """MinHash signatures with permutations built once per process (they are the costly part).

    Shingles are hashed with CRC32 (C speed; sha1 would triple the cost): datasketch's affine32
    scheme mixes each hash before its random affine permutations, which supply the randomness.
    """

    def __init__(self, cfg: DedupConfig):
        from datasketch import MinHash

        self.cfg = cfg
        self._minhash = MinHash
        self._perm = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme="affine32").permutations

    def __call__(self, text: str) -> np.ndarray:
        m = self._minhash(num_perm=self.cfg.num_perm, seed=self.cfg.seed, scheme="affine32", permutations=self._perm,
                          hashfunc=zlib.crc32)
        m.update_batch(shingles(text, self.cfg.ngram))
        return m.hashvalues


@dataclass(frozen=True)
class Duplicate:
    reason: str  # dedup:exact | dedup:fuzzy
    kept: str  # key of the representative kept in its favour
    similarity: float


class Deduplicator:
    """Feed documents in order; `add` says whether each is a duplicate of an earlier one."""

    def __init__(self, cfg: DedupConfig):
        from datasketch import LeanMinHash, MinHashLSH

        self.cfg = cfg
        self._lean = LeanMinHash
        self._exact: dict[str, str] = {}
        self._signatures: dict[str, np.ndarray] = {}
        self._lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows)) if cfg.fuzzy else None

    def add(self, key: str, digest: str, signature: np.ndarray | None) -> Duplicate | None:
        if self.cfg.exact:
            if digest in self._exact:
                return Duplicate("dedup:exact", self._exact[digest], 1.0)
            self._exact[digest] = key
        if self._lsh is None or signature is None:
            return None
        minhash = self._lean(seed=self.cfg.seed, hashvalues=signature, scheme="affine32")
        best, best_sim = None, 0.0
        for candidate in self._lsh.query(minhash):
            sim = float(np.mean(self._signatures[candidate] == signature))
            if sim > best_sim:
                best, best_sim = candidate, sim
        if best is not None and best_sim >= self.cfg.threshold:
            return Duplicate("dedup:fuzzy", best, best_sim)
        self._lsh.insert(key, minhash)
        self._signatures[key] = signature
        return None
