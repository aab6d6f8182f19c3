"""An exported long-context (YaRN) model read the way other HF-format readers read it: top-level
`rope_theta` / `rope_scaling` (vLLM, llama.cpp's converter, transformers 4.x). The RoPE those fields
describe, computed here from the YaRN paper independently of transformers, must be the RoPE transformers
applies to the exported model, layer type by layer type."""
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, Olmo3Config

from olmo3_core.config.schema import ExportStageConfig
from olmo3_core.export.hf import add_legacy_rope_fields
from olmo3_core.export.stage import run
from olmo3_core.stages import StageContext

from .test_export import _model_artifact


def _plain_inv_freq(theta: float, dim: int) -> torch.Tensor:
    return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def _yarn_reference(theta: float, dim: int, scaling: dict) -> tuple[torch.Tensor, float]:
    """YaRN (Peng et al. 2023, sec. 3.2-3.4) as vLLM's YaRNScalingRotaryEmbedding writes it: NTK-by-parts
    blend of interpolated and extrapolated frequencies between the beta_fast/beta_slow rotation counts."""
    factor, original = scaling["factor"], scaling["original_max_position_embeddings"]
    beta_fast, beta_slow = scaling.get("beta_fast", 32), scaling.get("beta_slow", 1)

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrapolate = _plain_inv_freq(theta, dim)
    interpolate = extrapolate / factor
    keep = 1 - ramp  # 1 where wavelengths are short: keep the original frequency
    inv_freq = interpolate * (1 - keep) + extrapolate * keep
    mscale = scaling.get("attention_factor") or 0.1 * math.log(factor) + 1.0
    return inv_freq, float(mscale)


@pytest.fixture(scope="module")
def yarn_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("rope")
    upstream = _model_artifact(root / "longmino", yarn_factor=4.0, original_context=32)
    out = root / "export"
    out.mkdir()
    run(StageContext("base/export", "export", ExportStageConfig(), {"longmino": upstream}, out,
                     uri="file:///export", fingerprint="c" * 64))
    return out / "model"


def test_legacy_top_level_rope_fields_describe_the_rope_transformers_applies(yarn_export):
    config = json.loads((yarn_export / "config.json").read_text())
    theta, scaling = config["rope_theta"], config["rope_scaling"]
    assert theta == 500000.0
    assert scaling["rope_type"] == "yarn" and scaling["factor"] == 4.0 and scaling["original_max_position_embeddings"] == 32
    dim = config["hidden_size"] // config["num_attention_heads"]
    want_full, want_scale = _yarn_reference(theta, dim, scaling)

    rotary = AutoModelForCausalLM.from_pretrained(yarn_export).model.rotary_emb
    torch.testing.assert_close(rotary.full_attention_inv_freq.double(), want_full, rtol=1e-6, atol=0)
    assert rotary.full_attention_attention_scaling == pytest.approx(want_scale, rel=1e-9)
    assert want_scale == pytest.approx(1 + 0.1 * math.log(4.0))  # not 1.0: YaRN's temperature is applied
    # the legacy form's rule for OLMo 3: sliding-window layers keep plain RoPE at the same theta
    torch.testing.assert_close(rotary.sliding_attention_inv_freq.double(), _plain_inv_freq(theta, dim), rtol=1e-6, atol=0)
    assert rotary.sliding_attention_attention_scaling == 1.0
    # YaRN really changed the low frequencies (otherwise the comparison above proves nothing)
    assert not torch.allclose(want_full, _plain_inv_freq(theta, dim))


def test_a_reader_of_only_the_legacy_fields_builds_the_same_rope(yarn_export):
    """transformers' own legacy path (what a 4.x-era config without rope_parameters goes through)."""
    config = json.loads((yarn_export / "config.json").read_text())
    nested = config.pop("rope_parameters")
    legacy = Olmo3Config(**config)
    assert legacy.rope_parameters == nested
    exported = AutoModelForCausalLM.from_pretrained(yarn_export).config
    assert exported.rope_parameters == nested  # both forms in one file: still the same


def test_legacy_fields_refuse_what_they_cannot_express(tmp_path):
    config = {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 5e5},
                                  "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="sliding-window layers use RoPE"):
        add_legacy_rope_fields(tmp_path / "config.json")
    config["rope_parameters"]["sliding_attention"]["rope_theta"] = 5e5
    (tmp_path / "config.json").write_text(json.dumps(config))
    add_legacy_rope_fields(tmp_path / "config.json")
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["rope_theta"] == 5e5 and written["rope_scaling"] is None
