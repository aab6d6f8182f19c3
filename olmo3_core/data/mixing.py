"""Mixing: per-source target token shares, met by seeded up/down-sampling of whole documents.

A mix's shares are its preset (Dolma 3 Mix, Dolmino, Longmino, ...) overridden by per-source
`proportions`, normalized over the configured sources. Each source is sampled in seeded shuffled
epochs (or longest first, for long-context mixes) until it reaches its token target, so a small
source is upsampled (repeated) and a large one downsampled; achieved shares are reported. A source
left without documents (an optional one; the stage fails on a required one) keeps its configured
target share in the report, with achieved 0, and the others fill the mix's tokens in proportion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from olmo3_core.data.config import DataConfig, MixConfig


class EmptyMixError(RuntimeError):
    """A mix would be empty: never write silently empty training data."""


@dataclass
class SourceDocs:
    """One source's curated, tokenized documents as parallel arrays (one entry per document)."""

    name: str
    token_files: list[str]  # per shard, relative to the output dir
    doc_files: list[str]  # per shard, relative to the output dir
    shard: np.ndarray
    row: np.ndarray  # row in the shard's documents file
    offset: np.ndarray  # start in the shard's token file
    length: np.ndarray  # tokens, including the trailing EOS
    ids: list[str]

    @classmethod
    def from_shards(cls, name: str, shards: list[tuple[str, str, np.ndarray, np.ndarray, list[str]]]) -> "SourceDocs":
        """(token file, documents file, rows, token lengths, ids) per shard -> the source's arrays."""
        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

        return cls(name, [s[0] for s in shards], [s[1] for s in shards],
                   cat([np.full(len(s[2]), i) for i, s in enumerate(shards)]), cat([s[2] for s in shards]),
                   cat([np.cumsum(s[3]) - s[3] for s in shards]), cat([s[3] for s in shards]),
                   [doc_id for s in shards for doc_id in s[4]])


@dataclass
class MixPlan:
    name: str
    picks: list[tuple[str, np.ndarray]]  # (source, document indices), in packing order after `interleave`
    shares: dict[str, dict[str, float]]  # source -> target/achieved share, tokens, epochs
    notes: list[str]


def target_shares(cfg: DataConfig, mix: MixConfig, configured: list[str]) -> dict[str, float]:
    """Configured share of each source; never renormalized over the sources that turned out to have
    documents, so a missing source shows in the datasheet as a shortfall instead of vanishing."""
    raw = {**(cfg.presets.get(mix.preset, {}) if mix.preset else {}), **mix.proportions}
    shares = {s: float(w) for s, w in raw.items() if s in configured and w > 0}
    total = sum(shares.values())
    return {s: w / total for s, w in shares.items()} if total else {}


def _sample(docs: SourceDocs, target: int, mix: MixConfig, rng: np.random.Generator) -> np.ndarray:
    """Document indices totalling about `target` tokens (whole documents, stopping at the boundary
    closest to the target), cycling through the eligible documents as often as needed."""
    eligible = np.flatnonzero(docs.length >= mix.min_doc_tokens)
    if target <= 0 or eligible.size == 0:
        return np.empty(0, dtype=np.int64)
    longest = eligible[np.argsort(-docs.length[eligible], kind="stable")] if mix.longest_first else None
    picks, need = [], target
    while True:
        order = longest if longest is not None else rng.permutation(eligible)
        cum = np.concatenate([[0], np.cumsum(docs.length[order])])
        if cum[-1] < need:  # a whole epoch fits: take it and cycle again
            picks.append(order)
            need -= int(cum[-1])
            continue
        k = int(np.searchsorted(cum, need))  # cum[k-1] < need <= cum[k]: stop at whichever is closer
        take = k if cum[k] - need <= need - cum[k - 1] else k - 1
        picks.append(order[: max(take, 0 if picks else 1)])  # a source with a share gets at least one doc
        return np.concatenate(picks)


def plan_mix(cfg: DataConfig, name: str, sources: dict[str, SourceDocs]) -> MixPlan:
    """`sources`: every configured source, those without documents included (they keep their target)."""
    mix = cfg.mixes[name]
    shares = target_shares(cfg, mix, list(sources))
    present = {s: w for s, w in shares.items() if sources[s].length.size}
    missing = [s for s in shares if s not in present]
    rng = np.random.default_rng([cfg.seed, sum(map(ord, name))])
    picks, notes = [], []
    if missing:
        notes.append(f"{name}: source(s) {missing} have no documents; their target share "
                     f"{round(sum(shares[s] for s in missing), 4)} is filled by the other sources in proportion")
    for source, share in present.items():
        idx = _sample(sources[source], round(share / sum(present.values()) * mix.tokens), mix, rng)
        if idx.size == 0:
            notes.append(f"{name}: source {source!r} has no document of >= {mix.min_doc_tokens} tokens")
        picks.append((source, idx))
    chosen = {s: np.empty(0, np.int64) for s in missing} | dict(picks)
    tokens = {s: int(sources[s].length[idx].sum()) for s, idx in chosen.items()}
    total = sum(tokens.values())
    if total == 0:
        raise EmptyMixError(f"mix {name!r} is empty: target shares {shares or 'none (no source with tokens has a share)'}; "
                            + "; ".join(notes))
    report = {s: {"target": round(shares[s], 4), "achieved": round(tokens[s] / total, 4), "tokens": tokens[s],
                  "docs": int(chosen[s].size), "unique_docs": int(np.unique(chosen[s]).size),
                  "epochs": round(tokens[s] / max(int(sources[s].length.sum()), 1), 3)} for s in shares}
    return MixPlan(name, picks, report, notes)


def interleave(plan: MixPlan, seed: int) -> list[tuple[str, int]]:
    """All picks as (source, document index) in one seeded shuffled order, so sources interleave."""
    flat = [(s, int(i)) for s, idx in plan.picks for i in idx]
    order = np.random.default_rng([seed, sum(map(ord, plan.name)), 1]).permutation(len(flat))
    return [flat[i] for i in order]
