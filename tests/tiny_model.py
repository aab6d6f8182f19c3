"""A tiny random Olmo3 model with the flow's special tokens, saved like a model artifact's `model/`:
what unit tests of the stages that read a model (post-training, eval, export, serve) start from."""
from __future__ import annotations

from pathlib import Path

from olmo3_core.chat import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, chat_template
from olmo3_core.config.schema import ModelConfig
from olmo3_core.model import build_model, olmo3_config


def save_tiny_model(model_dir: Path, texts: list[str], max_position_embeddings: int = 128, yarn_factor: float = 0.0,
                    original_context: int | None = None, template: str | None = None) -> ModelConfig:
    """A 300-token BPE trained on `texts` and a 2-layer model saved to `model_dir`; returns the model config."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL_TOKENS,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    if template:
        fast.chat_template = chat_template(template)
    cfg = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, vocab_size=320,
                      max_position_embeddings=max_position_embeddings, sliding_window=16, full_attention_every=2)
    model = build_model(olmo3_config(cfg, yarn_factor, original_context,
                                     special_ids={"pad": fast.pad_token_id, "eos": fast.eos_token_id}))
    model.save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    return cfg
