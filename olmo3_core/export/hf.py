"""The export's Hugging Face directory, made readable by every consumer: legacy RoPE fields next to the
nested ones, the line's chat template and a generation config that stops at end of turn, and a load-back
check. Light imports only (no MLflow, no Prefect): `benchmarks/gpu_check.py` uses it on a bare GPU box.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from olmo3_core.chat import EOS_TOKEN, IM_END, chat_template
from olmo3_core.model.build import YARN_BETA_FAST, YARN_BETA_SLOW, yarn_attention_factor


def add_legacy_rope_fields(config_file: Path) -> None:
    """Write the top-level `rope_theta` / `rope_scaling` next to transformers 5's nested `rope_parameters`.

    transformers >= 5 writes RoPE per layer type only; vLLM, llama.cpp's converter and transformers 4.x read
    the top-level fields and silently fall back to defaults (theta 1e4, no YaRN) when they are absent. In the
    legacy form OLMo 3's `rope_scaling` applies to the full-attention layers and the sliding-window layers keep
    plain RoPE at the same theta (transformers 4.57's `Olmo3Model.rotary_embs`), which is exactly what
    `olmo3_core.model.olmo3_config` builds; anything the legacy form cannot say is refused, not approximated.
    transformers 5 reading the file back merges `rope_scaling` into the full-attention entry: same values."""
    config = json.loads(config_file.read_text())
    per_layer = config.get("rope_parameters") or {}
    full, sliding = per_layer.get("full_attention"), per_layer.get("sliding_attention")
    if not full:
        raise ValueError(f"{config_file}: rope_parameters has no full_attention entry: {per_layer}")
    theta = float(full["rope_theta"])
    if sliding and (sliding.get("rope_type") != "default" or float(sliding["rope_theta"]) != theta):
        raise ValueError(f"{config_file}: sliding-window layers use RoPE {sliding}, which the legacy top-level "
                         f"rope_theta/rope_scaling cannot express next to full-attention RoPE {full}")
    scaling = None
    if full.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in full.items() if k != "rope_theta"}
        if scaling["rope_type"] == "yarn":
            # Explicit, so readers whose YaRN defaults differ from transformers' still agree with it.
            scaling.setdefault("beta_fast", YARN_BETA_FAST)
            scaling.setdefault("beta_slow", YARN_BETA_SLOW)
            scaling.setdefault("attention_factor", yarn_attention_factor(float(scaling["factor"])))
            full.update(scaling)  # the nested entry states the same explicit values
    config["rope_theta"], config["rope_scaling"] = theta, scaling
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def set_chat_defaults(model_dir, template: str) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = chat_template(template)
    tokenizer.save_pretrained(model_dir)
    gen = GenerationConfig(eos_token_id=tokenizer.convert_tokens_to_ids([IM_END, EOS_TOKEN]),
                           pad_token_id=tokenizer.pad_token_id, do_sample=False)
    gen.save_pretrained(model_dir)


def smoke_test(model_dir) -> dict:
    """Load the export the way a user would and generate from a chat prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                           tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=12)
    text = tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    return {"text": text, "parameters": sum(p.numel() for p in model.parameters())}
