"""Health gates: a training job with a non-finite loss, or a loss above `train.loss_ceiling` after
warmup, fails naming the step and leaves nothing to publish."""
from types import SimpleNamespace

import pytest

from olmo3_core.config.compose import compose_config
from olmo3_core.config.schema import LaunchConfig
from olmo3_core.plan import build_plan
from olmo3_core.posttrain.trainers import ProgressCallback
from olmo3_core.runner import make_store, run_plan
from olmo3_core.stages.jobs import JobOutputs
from olmo3_core.train import loop
from olmo3_core.train.health import LossGateFailed, check_loss, run_gated_job

from .conftest import pretrain_job

ONE = LaunchConfig(nprocs=1)


def test_check_loss_gates_non_finite_losses_and_the_ceiling_only_after_warmup():
    check_loss("pretrain", 3, 2.5, ceiling=3.0, warmup_steps=2)
    check_loss("pretrain", 2, 9.0, ceiling=3.0, warmup_steps=2)  # still warming up
    with pytest.raises(LossGateFailed, match=r"^pretrain: loss 9 at step 3 is above train.loss_ceiling=3.0 "):
        check_loss("pretrain", 3, 9.0, ceiling=3.0, warmup_steps=2)
    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(LossGateFailed, match=rf"^midtrain: loss is {bad} at step 1; not publishing$"):
            check_loss("midtrain", 1, float(bad))


def test_posttrain_callback_stops_on_a_non_finite_loss_before_recording_it():
    callback = ProgressCallback(None, "sft")
    state = SimpleNamespace(global_step=1, max_steps=4)
    callback.on_log(None, state, None, logs={"loss": 3.2})
    state.global_step = 2
    with pytest.raises(LossGateFailed, match=r"^sft: loss is nan at step 2; not publishing$"):
        callback.on_log(None, state, None, logs={"loss": float("nan")})
    assert [p.step for p in callback.history] == [1]


def _assert_nothing_to_publish(out):
    assert not (out / "model").exists() and not (out / JobOutputs.FILE).exists()


@pytest.mark.slow
def test_pretrain_with_infinite_lr_fails_naming_the_step_and_saves_nothing(corpus, tmp_path):
    out = tmp_path / "inf"
    job = pretrain_job(corpus, out, lr=float("inf"), max_steps=6, warmup_steps=1, checkpoint_every=1)
    # step 1 runs on the initial weights (finite loss); its update with lr=inf makes every later loss NaN
    with pytest.raises(LossGateFailed, match=r"^pretrain: loss is nan at step 2; not publishing$"):
        run_gated_job(loop, job, out / "work", ONE, print)
    _assert_nothing_to_publish(out)
    assert (out / "work" / "ckpt" / "latest").read_text().strip() == "step1", "checkpoints stop before the failing step"


@pytest.mark.slow
def test_pretrain_loss_above_the_ceiling_after_warmup_fails_naming_the_step(corpus, tmp_path):
    out = tmp_path / "ceiling"
    job = pretrain_job(corpus, out, max_steps=6, warmup_steps=2, loss_ceiling=1.0)  # initial loss ~ ln(512) = 6.2
    with pytest.raises(LossGateFailed, match=r"^pretrain: loss \S+ at step 3 is above train.loss_ceiling=1.0 "
                                             r"\(warmup ended at step 2\); not publishing$"):
        run_gated_job(loop, job, out / "work", ONE, print)
    _assert_nothing_to_publish(out)


@pytest.mark.slow
def test_a_diverged_pretrain_stage_is_not_published(tmp_path):
    """Through the runner: the stage fails with the gate's message and its artifact has no manifest,
    so neither a downstream stage nor a rerun can take it for a finished model."""
    cfg = compose_config(["preset=micro", "stages=[pretrain]", "pretrain.lr=inf", "pretrain.max_steps=5",
                          "pretrain.anneal_stop_step=null", f"storage.root={tmp_path / 'artifacts'}"])
    with pytest.raises(LossGateFailed, match=r"^pretrain: loss is nan at step \d+; not publishing$"):
        run_plan(cfg)
    assert {p.parent.parent.name for p in (tmp_path / "artifacts").glob("*/*/artifact.json")} == {"data"}
    spec = build_plan(cfg).stages["pretrain"]
    assert make_store(cfg.storage).load_manifest(spec.kind, spec.fingerprint) is None
    assert not (tmp_path / "artifacts" / "pretrain" / spec.fingerprint / "model").exists()
