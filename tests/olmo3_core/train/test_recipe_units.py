"""The OLMo 3 recipe's pure parts: device / precision selection, LR schedules and their config rules,
weight-decay groups, the loss terms and document position ids."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from olmo3_core.config.compose import compose_config
from olmo3_core.config.schema import TrainConfig
from olmo3_core.config.typed import ConfigError
from olmo3_core.train.data import document_positions
from olmo3_core.train.loop import lm_losses, param_groups
from olmo3_core.train.runtime import cpu_flags, resolve_precision, select_device
from olmo3_core.train.schedule import handoff_lr, lr_factor


def test_device_and_backend_follow_cuda_and_local_rank():
    assert select_device({"LOCAL_RANK": "3"}, cuda_available=True) == ("cuda:3", "nccl")
    assert select_device({}, cuda_available=True) == ("cuda:0", "nccl")
    assert select_device({"LOCAL_RANK": "3"}, cuda_available=False) == ("cpu", "gloo")


def test_auto_precision_is_bf16_only_where_bf16_is_native():
    assert resolve_precision("auto", "cuda", frozenset()) == "bf16"
    assert resolve_precision("auto", "cpu", frozenset({"avx2", "amx_bf16", "amx_tile"})) == "bf16"
    assert resolve_precision("auto", "cpu", frozenset({"avx512f", "avx512_bf16"})) == "bf16"
    assert resolve_precision("auto", "cpu", frozenset({"avx512f", "avx2"})) == "fp32"
    assert resolve_precision("auto", "cpu", frozenset({"amx_bf16"}), mkldnn_bf16=False) == "fp32"
    assert resolve_precision("fp32", "cuda", frozenset()) == "fp32", "an explicit choice is kept"
    assert resolve_precision("bf16", "cpu", frozenset()) == "bf16"
    with pytest.raises(ValueError, match="train.precision"):
        resolve_precision("fp16", "cpu", frozenset())


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "sse", "avx512_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


def _cfg(**kw) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), **kw)


def test_cosine_warms_up_then_decays_to_its_floor_and_can_stop_before_annealing():
    cfg = _cfg(schedule="cosine", max_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(cfg, 0) == pytest.approx(0.1) and lr_factor(cfg, 9) == pytest.approx(1.0)
    assert lr_factor(cfg, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 60) == pytest.approx(0.55), "half way: the mean of peak and floor"
    assert lr_factor(cfg, 110) == pytest.approx(0.1)
    stopped = dataclasses.replace(cfg, anneal_stop_step=85)
    assert stopped.steps == 85 and cfg.steps == 110
    assert lr_factor(stopped, 85) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.75)))


def test_linear_wsd_and_constant_shapes():
    linear = _cfg(schedule="linear", max_steps=20, warmup_steps=0, min_lr_ratio=0.1)
    assert [lr_factor(linear, s) for s in (0, 10, 20)] == pytest.approx([1.0, 0.5, 0.0]), "linear ends at 0"
    wsd = _cfg(schedule="wsd", max_steps=110, warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.0)
    assert [lr_factor(wsd, s) for s in (10, 50, 90, 100, 110)] == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0])
    constant = _cfg(schedule="constant", max_steps=10, warmup_steps=2)
    assert [lr_factor(constant, s) for s in (0, 1, 2, 9, 10)] == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])


def test_handoff_lr_is_where_a_stage_stopped_or_its_peak_after_decaying_to_zero():
    assert handoff_lr(peak=3e-3, final=4e-4) == 4e-4
    assert handoff_lr(peak=4e-4, final=0.0) == 4e-4


@pytest.mark.parametrize("override, message", [
    (["pretrain.continue_from_upstream=true"], r"pretrain.continue_from_upstream: pretrain has no upstream"),
    (["midtrain.anneal_stop_step=5"], r"midtrain.anneal_stop_step only applies to schedule=cosine"),
    (["pretrain.anneal_stop_step=400"], r"pretrain.anneal_stop_step \(400\) must be after pretrain.warmup_steps"),
    (["midtrain.warmup_steps=500"], r"midtrain.warmup_steps \(500\) must be < midtrain.max_steps"),
    (["pretrain.schedule=cyclic"], r"pretrain.schedule must be one of"),
    (["longmino.precision=fp16"], r"longmino.precision must be one of \['auto', 'fp32', 'bf16'\]"),
])
def test_schedule_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        compose_config(["preset=micro", *override])


def test_presets_follow_olmo3_midtrain_and_longmino_continue_and_decay_to_zero():
    for preset in ("micro", "tiny"):
        cfg = compose_config([f"preset={preset}"])
        assert cfg.pretrain.schedule == "cosine" and cfg.pretrain.anneal_stop_step < cfg.pretrain.max_steps
        assert cfg.pretrain.z_loss == cfg.midtrain.z_loss == cfg.longmino.z_loss == 1e-5
        for stage in (cfg.midtrain, cfg.longmino):
            assert stage.schedule == "linear" and stage.continue_from_upstream
        assert cfg.midtrain.warmup_steps == 0, "midtraining does not re-warm (LinearWithWarmup(warmup=0))"
        assert cfg.longmino.document_masking


def test_weight_decay_spares_only_the_embeddings():
    from olmo3_core.model import build_model, olmo3_config

    cfg = compose_config(["preset=micro"])
    model = build_model(olmo3_config(cfg.model, 0.0, None, {"pad": 0, "eos": 1}), seed=0)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in no_decay["params"]] == ["model.embed_tokens.weight"] and no_decay["weight_decay"] == 0
    assert any("norm" in names[id(p)] for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert len(decay["params"]) + 1 == len(list(model.parameters()))


def test_losses_match_cross_entropy_and_z_loss_is_the_squared_normalizer():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 6, 11) * 3, torch.randint(0, 11, (2, 6))
    reference = F.cross_entropy(logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
    ce, z = lm_losses(logits, ids, 0.0)
    assert z is None and torch.allclose(ce, reference)
    ce, z = lm_losses(logits, ids, 1e-4)
    assert torch.allclose(ce, reference, atol=1e-6)
    assert torch.allclose(z, 1e-4 * torch.logsumexp(logits[:, :-1], -1).pow(2).mean())


def test_document_positions_restart_after_each_eos():
    eos = 9
    batch = torch.tensor([[5, 6, 9, 7, 8, 8, 9, 4], [1, 2, 3, 4, 5, 6, 7, 8]])
    assert document_positions(batch, eos).tolist() == [[0, 1, 2, 0, 1, 2, 3, 0], list(range(8))]


def test_with_document_masking_a_documents_logits_ignore_the_other_document_in_its_window():
    from olmo3_core.model import build_model, olmo3_config

    cfg = compose_config(["preset=micro"])
    eos = 1
    model = build_model(olmo3_config(cfg.model, 0.0, None, {"pad": 0, "eos": eos}), seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    doc_a = torch.randint(2, cfg.model.vocab_size, (20,), generator=gen)
    windows = []
    for _ in range(2):  # the same document A after two different documents B of one length
        doc_b = torch.randint(2, cfg.model.vocab_size, (11,), generator=gen)
        windows.append(torch.cat([doc_b, torch.tensor([eos]), doc_a]))
    batch = torch.stack(windows)
    a = slice(12, 32)

    with torch.no_grad():
        masked = model(input_ids=batch, position_ids=document_positions(batch, eos), use_cache=False).logits
        crossing = model(input_ids=batch, use_cache=False).logits
        alone = model(input_ids=doc_a[None], use_cache=False).logits
    torch.testing.assert_close(masked[0, a], masked[1, a], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked[0, a], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(crossing[0, a], crossing[1, a], atol=1e-3), "without masking, document B leaks into A"


def test_deepspeed_is_told_about_bf16_autocast_and_keeps_fp32_gradient_reduction():
    """On CUDA, DeepSpeed's forward disables an autocast it was not configured for (the H200 check ran
    fp32 at 53k tokens/s until this was set; 196k after)."""
    from olmo3_core.config.schema import TrainConfig
    from olmo3_core.train.loop import deepspeed_config

    bf16 = deepspeed_config(TrainConfig(), 1, "bf16")
    assert bf16["torch_autocast"] == {"enabled": True, "dtype": "bfloat16", "lower_precision_safe_modules": []}
    assert "bf16" not in bf16, "DeepSpeed's bf16 mode would keep bf16 weights"
    assert deepspeed_config(TrainConfig(), 1, "fp32")["torch_autocast"]["enabled"] is False
