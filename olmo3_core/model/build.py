"""Typed model config -> `transformers.Olmo3Config` / `Olmo3ForCausalLM`.

OLMo 3's layout: sliding-window attention on 3 of every 4 layers (every 4th is full attention),
QK-norm and "reordered" post-norm (both built into transformers' Olmo3 blocks), RoPE theta 5e5.
Long-context extension applies YaRN to the full-attention layers only; sliding layers keep plain RoPE.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from transformers import Olmo3Config, Olmo3ForCausalLM

from olmo3_core.config.schema import ModelConfig


# YaRN's ramp boundaries (rotations per original context) as in the paper and transformers' defaults.
YARN_BETA_FAST = 32.0
YARN_BETA_SLOW = 1.0


def yarn_attention_factor(factor: float) -> float:
    """YaRN's attention temperature, sqrt(1/t) = 0.1 ln(s) + 1 (paper eq. 22), as transformers defaults it."""
    return 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0


def layer_types(num_layers: int, full_attention_every: int) -> list[str]:
    return [
        "full_attention" if (i + 1) % full_attention_every == 0 else "sliding_attention" for i in range(num_layers)
    ]


def olmo3_config(model: ModelConfig, yarn_factor: float = 0.0, original_context: int | None = None,
                 special_ids: dict[str, int] | None = None) -> Olmo3Config:
    """`yarn_factor > 1` extends the full-attention layers' context from `original_context` by that factor."""
    theta = float(model.rope_theta)
    full_rope: dict[str, Any] = {"rope_type": "default", "rope_theta": theta}
    max_positions = model.max_position_embeddings
    if yarn_factor > 1:
        if not original_context:
            raise ValueError("YaRN needs the context length the model was trained at (original_context)")
        # beta/attention factor spelled out (transformers' defaults) so every reader of the export agrees
        full_rope = {"rope_type": "yarn", "rope_theta": theta, "factor": float(yarn_factor),
                     "original_max_position_embeddings": int(original_context),
                     "beta_fast": YARN_BETA_FAST, "beta_slow": YARN_BETA_SLOW,
                     "attention_factor": yarn_attention_factor(float(yarn_factor))}
        max_positions = int(original_context * yarn_factor)  # YaRN's extended context
    ids = special_ids or {}
    return Olmo3Config(
        vocab_size=model.vocab_size,
        hidden_size=model.hidden_size,
        intermediate_size=model.intermediate_size,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_heads,
        num_key_value_heads=model.num_kv_heads,
        max_position_embeddings=max_positions,
        sliding_window=model.sliding_window,
        layer_types=layer_types(model.num_layers, model.full_attention_every),
        rope_parameters={"full_attention": full_rope, "sliding_attention": {"rope_type": "default", "rope_theta": theta}},
        rms_norm_eps=model.rms_norm_eps,
        initializer_range=model.init_std,
        tie_word_embeddings=False,
        pad_token_id=ids.get("pad"),
        eos_token_id=ids.get("eos"),
        bos_token_id=None,
    )


def vocab_mismatch(model_vocab: int, tokenizer_vocab: int, tokenizer_source: str) -> str | None:
    """The refusal message when the model's vocabulary cannot hold every id the tokenizer emits, else None.
    A larger model vocabulary is fine (OLMo pads 100,278 to a multiple of 128; the extra rows go unused)."""
    if model_vocab >= tokenizer_vocab:
        return None
    return (f"model.vocab_size ({model_vocab:,}) is smaller than the tokenizer's vocabulary ({tokenizer_vocab:,}, "
            f"{tokenizer_source}): token ids {model_vocab:,}..{tokenizer_vocab - 1:,} would index past the embedding "
            f"table; set model.vocab_size to at least {tokenizer_vocab:,} or use a smaller tokenizer")



def build_model(config: Olmo3Config, seed: int = 0) -> Olmo3ForCausalLM:
    """Random init, reproducible in `seed`."""
    torch.manual_seed(seed)
    return Olmo3ForCausalLM(config)


def count_parameters(model: ModelConfig) -> int:
    """Exact parameter count, built on the meta device so a 32B config allocates nothing."""
    with torch.device("meta"):
        net = Olmo3ForCausalLM(olmo3_config(model))
    return sum(p.numel() for p in net.parameters())
