"""Fixed-length training windows from packed uint32 token shards.

The sample for global index `i` is a pure function of (seed, i), so the data position is just the
step counter: resuming from a checkpoint replays exactly the batches an uninterrupted run would see,
and N ranks reading interleaved indices see the same samples as one rank with an N-times batch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TokenWindows:
    def __init__(self, mix_dir: Path, seq_len: int, seed: int):
        shards = sorted(Path(mix_dir).glob("shard_*.npy"))
        if not shards:
            raise FileNotFoundError(f"no token shards (shard_*.npy) in {mix_dir}")
        self.tokens = np.concatenate([np.load(s, mmap_mode="r") for s in shards])
        self.seq_len, self.seed = seq_len, seed
        self.num_windows = len(self.tokens) // seq_len
        if self.num_windows == 0:
            raise ValueError(f"{mix_dir} holds {len(self.tokens)} tokens, fewer than one window of {seq_len}")
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def _window(self, index: int) -> np.ndarray:
        epoch, pos = divmod(index, self.num_windows)
        if epoch != self._epoch:  # a fresh shuffle per epoch, deterministic in (seed, epoch)
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
            self._epoch = epoch
        start = int(self._order[pos]) * self.seq_len
        return self.tokens[start : start + self.seq_len]

    def batch(self, first_index: int, size: int, stride: int = 1) -> torch.Tensor:
        """Windows first_index, first_index + stride, ... as a (size, seq_len) int64 tensor."""
        rows = [self._window(first_index + k * stride) for k in range(size)]
        return torch.from_numpy(np.stack(rows).astype(np.int64))


def document_positions(batch: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Position ids that restart at 0 on the token after each EOS (documents are packed EOS-terminated).

    Given to the model with no attention mask, transformers reads the restarts as packed sequences and
    masks attention block-diagonally (`masking_utils.find_packed_sequence_indices`), for sdpa, eager and
    flash attention alike: a token attends only within its own document, with RoPE positions counted from
    the document's start (a window that starts mid-document counts from the window's start)."""
    length = batch.shape[1]
    index = torch.arange(length, device=batch.device).expand_as(batch)
    starts = torch.zeros_like(batch, dtype=torch.bool)
    starts[:, 0] = True
    starts[:, 1:] = batch[:, :-1] == eos_id
    last_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - last_start
