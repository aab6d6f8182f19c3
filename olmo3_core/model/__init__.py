"""The model: `Olmo3ForCausalLM` from transformers, built from our typed config."""
from olmo3_core.model.build import build_model, count_parameters, olmo3_config

__all__ = ["build_model", "count_parameters", "olmo3_config"]
