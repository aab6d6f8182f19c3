"""pretrain -> midtrain -> longmino as OLMo 3 chains them: the LR continues across stages, the AdamW moments
carry over, midtrain and longmino decay to 0; kept checkpoints load; bf16 autocast tracks fp32."""
import dataclasses
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from olmo3_core.config.schema import LaunchConfig
from olmo3_core.launch import run_job
from olmo3_core.stages.jobs import JobOutputs, TrainJob
from olmo3_core.train import loop
from olmo3_core.train.handoff import MOMENTS, OptimizerHandoff, export_state
from olmo3_core.train.runtime import detect

from .conftest import pretrain_job

pytestmark = pytest.mark.slow
ONE = LaunchConfig(nprocs=1)


def _continuing(corpus, upstream: Path, out: Path, kind: str, **train) -> TrainJob:
    """A midtrain / longmino job continuing from the `upstream` artifact, on the test corpus."""
    base = pretrain_job(corpus, out)
    cfg = dataclasses.replace(base.train, schedule="linear", continue_from_upstream=True, anneal_stop_step=None,
                              keep_every=0, **train)
    return dataclasses.replace(base, kind=kind, train=cfg, init_model_dir=str(upstream / "model"),
                               init_optimizer_dir=str(upstream), original_context=base.train.seq_len)


@pytest.fixture(scope="module")
def chain(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    pre, mid, long = root / "pretrain", root / "midtrain", root / "longmino"
    run_job(loop, pretrain_job(corpus, pre, schedule="cosine", max_steps=16, anneal_stop_step=12, warmup_steps=2,
                               keep_every=4, z_loss=1e-4), pre / "work", ONE, print)
    run_job(loop, _continuing(corpus, pre, mid, "midtrain", max_steps=6, warmup_steps=0), mid / "work", ONE, print)
    run_job(loop, _continuing(corpus, mid, long, "longmino", max_steps=4, warmup_steps=1, seq_len=128,
                              micro_batch_size=4, yarn_factor=2.0, document_masking=True), long / "work", ONE, print)
    return {name: (path, JobOutputs.read(path)) for name, path in (("pretrain", pre), ("midtrain", mid), ("longmino", long))}


def test_midtrain_starts_at_pretrains_last_lr_and_both_continuations_end_at_zero(chain):
    pre, mid, long = (chain[k][1] for k in ("pretrain", "midtrain", "longmino"))
    assert len(pre.loss_history) == 12, "pretraining stops at anneal_stop_step"
    assert 0.1 * pre.summary["peak_lr"] < pre.summary["final_lr"] < pre.summary["peak_lr"], "stopped before annealing"
    assert mid.loss_history[0].lr == pytest.approx(pre.summary["final_lr"], rel=0.01)
    assert mid.loss_history[0].lr < pre.loss_history[-1].lr, "no re-warming above where pretraining ended"
    assert mid.summary["final_lr"] == 0.0 and long.summary["final_lr"] == 0.0
    assert long.summary["peak_lr"] == pytest.approx(mid.summary["peak_lr"]), "longmino warms back to the midtrain peak"
    assert [p.lr for p in long.loss_history] == pytest.approx([long.summary["peak_lr"] * f for f in (1, 1, 2 / 3, 1 / 3)])


def test_optimizer_state_carries_over_moments_and_step_count(chain, corpus, tmp_path, monkeypatch):
    pre_dir, _ = chain["pretrain"]
    upstream = OptimizerHandoff.load(pre_dir)
    assert upstream.step == 12
    assert OptimizerHandoff.load(chain["midtrain"][0]).step == 18, "AdamW's bias correction continues"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(os, "environ", {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    session = loop.setup(_continuing(corpus, pre_dir, tmp_path / "mid", "midtrain", max_steps=6, warmup_steps=0))
    try:
        at_step0 = export_state(session.engine, 0.0, 0.0, 0.0)
    finally:
        torch.distributed.destroy_process_group()
    assert at_step0.step == upstream.step and set(at_step0.exp_avg) == set(upstream.exp_avg)
    for key in MOMENTS:
        for name, value in getattr(upstream, key).items():
            assert torch.equal(getattr(at_step0, key)[name], value), f"{key}[{name}]"
    assert any(v.abs().sum() > 0 for v in upstream.exp_avg_sq.values())


def test_kept_checkpoints_are_listed_and_load(chain):
    from transformers import AutoModelForCausalLM

    pre_dir, pre = chain["pretrain"]
    tokens_per_step = 8 * 64
    assert [(k.step, k.tokens_seen, k.path) for k in pre.kept] == [
        (4, 4 * tokens_per_step, "checkpoints/step4"), (8, 8 * tokens_per_step, "checkpoints/step8")]
    step4 = AutoModelForCausalLM.from_pretrained(pre_dir / "checkpoints" / "step4")
    final = AutoModelForCausalLM.from_pretrained(pre_dir / "model")
    assert not torch.equal(step4.model.embed_tokens.weight, final.model.embed_tokens.weight)
    assert not (pre_dir / "work" / "kept").exists() or not any((pre_dir / "work" / "kept").iterdir())
    assert chain["midtrain"][1].kept == []


def test_resolved_precision_is_recorded(chain):
    expected = detect("auto", {}).precision
    assert {outputs.precision for _, outputs in chain.values()} == {expected}


def test_bf16_autocast_tracks_the_fp32_loss_curve(corpus, tmp_path):
    """Tolerance: 0.05 nats per step over 16 micro steps (loss falls from ~6.3 to ~5); bf16 rounding of
    activations (8 mantissa bits) moves single steps by a few hundredths, and the curves must not drift."""
    curves = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        run_job(loop, pretrain_job(corpus, out, max_steps=16, warmup_steps=2, precision=precision), out / "work", ONE, print)
        outputs = JobOutputs.read(out)
        assert outputs.precision == precision
        curves[precision] = np.array([p.loss for p in outputs.loss_history])
    assert curves["fp32"][-1] < curves["fp32"][0] - 0.5, "the model learns"
    np.testing.assert_allclose(curves["bf16"], curves["fp32"], atol=0.05)
    assert not np.array_equal(curves["bf16"], curves["fp32"]), "bf16 really ran"
