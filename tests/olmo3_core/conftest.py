"""A tiny random model with the flow's chat tokens, saved like a model artifact, for post-training and soup tests."""
from __future__ import annotations

import pytest

from olmo3_core.chat import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, chat_template
from olmo3_core.config.schema import ModelConfig
from olmo3_core.model import build_model, olmo3_config


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny-model")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["What is 2 + 3? The answer is 5. Tom has 7 apples and buys 4 more."] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL_TOKENS,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    fast.chat_template = chat_template("instruct")
    cfg = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                      vocab_size=320, max_position_embeddings=256, sliding_window=16, full_attention_every=2)
    model = build_model(olmo3_config(cfg, special_ids={"pad": fast.pad_token_id, "eos": fast.eos_token_id}))
    model.save_pretrained(root)
    fast.save_pretrained(root)
    return root
