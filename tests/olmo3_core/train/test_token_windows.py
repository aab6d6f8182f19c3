import numpy as np

from olmo3_core.train.data import TokenWindows


def _mix(tmp_path, n=1000):
    np.save(tmp_path / "shard_00000.npy", np.arange(n // 2, dtype=np.uint32))
    np.save(tmp_path / "shard_00001.npy", np.arange(n // 2, n, dtype=np.uint32))
    return tmp_path


def test_windows_are_deterministic_and_cover_each_epoch(tmp_path):
    w = TokenWindows(_mix(tmp_path), seq_len=10, seed=3)
    first = w.batch(0, 100)
    assert first.shape == (100, 10)
    assert sorted(first[:, 0].tolist()) == list(range(0, 1000, 10)), "one epoch visits every window once"
    assert (TokenWindows(tmp_path, 10, 3).batch(0, 100) == first).all()
    assert not (TokenWindows(tmp_path, 10, 4).batch(0, 100) == first).all(), "the seed changes the order"


def test_interleaved_ranks_see_the_single_process_batch(tmp_path):
    w = TokenWindows(_mix(tmp_path), seq_len=10, seed=0)
    whole = w.batch(40, 8)
    rank0, rank1 = w.batch(40, 4, stride=2), w.batch(41, 4, stride=2)
    assert sorted(map(tuple, whole.tolist())) == sorted(map(tuple, rank0.tolist() + rank1.tolist()))
