"""Byte-level BPE trained on the curated corpus, saved as a `PreTrainedTokenizerFast`.

The special tokens come first in the vocabulary (ids 0..7), so their ids do not depend on the
corpus; EOS separates packed documents and PAD pads batches; there is no BOS, as in OLMo 3.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from olmo3_core.chat import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS
from olmo3_core.data.config import TokenizerConfig


def train(texts: Iterable[str], cfg: TokenizerConfig, out_dir: Path):
    """Trains on `texts` and saves to `out_dir` (tokenizer.json + HF files); returns the HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                          if cfg.split_digits else byte_level)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
                                 additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)])
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out_dir))
    return hf
