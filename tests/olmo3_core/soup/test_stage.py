import json

import pytest
import torch

from olmo3_core.config.schema import ModelConfig, SoupConfig, SoupStageConfig, TrainStageConfig
from olmo3_core.model import build_model, olmo3_config
from olmo3_core.soup import stage as soup
from olmo3_core.stages import InputArtifact, StageContext
from olmo3_core.stages.jobs import LossPoint
from olmo3_core.train.curves import ChainCurves
from olmo3_core.train.handoff import OptimizerHandoff


def test_the_average_of_two_state_dicts_is_their_elementwise_mean_in_the_original_dtype():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(8, 4, generator=g), "b": torch.randn(4, generator=g).to(torch.bfloat16)}
    b = {"w": torch.randn(8, 4, generator=g), "b": torch.randn(4, generator=g).to(torch.bfloat16)}
    out = soup.average({k: [a[k], b[k]] for k in a}, soup.normalized([], 2))
    torch.testing.assert_close(out["w"], (a["w"] + b["w"]) / 2, atol=1e-6, rtol=0)
    assert out["b"].dtype == torch.bfloat16  # summed in fp32, stored as it came
    torch.testing.assert_close(out["b"], ((a["b"].float() + b["b"].float()) / 2).to(torch.bfloat16), atol=0, rtol=0)


def test_weights_are_normalized_and_shape_mismatches_refused():
    assert soup.normalized([1.0, 3.0], 2) == [0.25, 0.75]
    with pytest.raises(ValueError, match="shapes"):
        soup.average({"w": [torch.zeros(2), torch.zeros(3)]}, [0.5, 0.5])


def _ingredient(root, seed, tokenizer_dir, steps):
    """A midtrain-like artifact: a tiny model/, optimizer/state.pt and a chain curve."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                      vocab_size=320, max_position_embeddings=256, sliding_window=16, full_attention_every=2)
    ids = {"pad": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id}
    model = build_model(olmo3_config(cfg, special_ids=ids), seed=seed)
    path = root / f"seed{seed}"
    model.save_pretrained(path / "model")
    tokenizer.save_pretrained(path / "model")
    names = [n for n, _ in model.named_parameters()]
    OptimizerHandoff(1e-3, 1e-4, 1e-4, steps, {n: torch.full((2,), float(seed)) for n in names},
                     {n: torch.full((2,), float(seed) ** 2) for n in names}).save(path)
    pretrain = ChainCurves().then("pretrain", "p" * 64, [LossPoint(5, 3.0, 1e-3)])
    pretrain.then("midtrain", f"{seed}" * 64, [LossPoint(s, 2.0, 1e-4) for s in (1, 2)]).write(path)
    return InputArtifact(f"midtrain/seed{seed}", "midtrain", f"{seed}" * 64, str(path), path,
                         TrainStageConfig(model=cfg), {}), model.state_dict()


def test_the_soup_stage_averages_every_tensor_and_moment_and_reports_each_model(tiny_model_dir, tmp_path):
    (a, sd_a), (b, sd_b) = (_ingredient(tmp_path, s, tiny_model_dir, 7) for s in (1, 2))
    config = SoupStageConfig(ingredients=[1, 2], soup=SoupConfig(heldout_items=4), seq_len=64)
    ctx = StageContext("soup", "soup", config, {a.stage: a, b.stage: b}, tmp_path / "out", fingerprint="c" * 64)
    result = soup.run(ctx)

    from safetensors.torch import load_file
    souped = load_file(tmp_path / "out" / "model" / "model.safetensors")
    for name, tensor in souped.items():  # every tensor, to 1e-6
        torch.testing.assert_close(tensor, (sd_a[name] + sd_b[name]) / 2, atol=1e-6, rtol=0)
    assert json.loads((tmp_path / "out" / "model" / "config.json").read_text())["hidden_size"] == 32
    assert (tmp_path / "out" / "model" / "tokenizer.json").exists()  # what the next stage loads with the model
    state = OptimizerHandoff.load(tmp_path / "out")
    assert state.step == 7 and all(float(v[0]) == 1.5 for v in state.exp_avg.values())
    assert all(float(v[0]) == 2.5 for v in state.exp_avg_sq.values())
    chain = ChainCurves.read(tmp_path / "out")  # pretrain once, then both ingredients side by side
    assert [(c.stage, c.offset) for c in chain.curves] == [("pretrain", 0), ("midtrain", 5), ("midtrain", 5)]
    assert chain.end == 7

    assert {"heldout_loss/seed1", "heldout_loss/seed2", "heldout_loss/soup", "heldout_bpb/soup"} <= set(result.metrics)
    table = result.report_markdown
    assert "| midtrain/seed1 | 1 | 0.5 | `111111111111` |" in table and "| soup | - | - | `cccccccccccc` |" in table


def test_ingredients_with_different_schedules_are_not_souped(tiny_model_dir, tmp_path):
    (a, _), (b, _) = _ingredient(tmp_path, 1, tiny_model_dir, 7), _ingredient(tmp_path, 2, tiny_model_dir, 8)
    with pytest.raises(ValueError, match="share their schedule"):
        soup.soup_optimizer([a.path, b.path], [0.5, 0.5])
