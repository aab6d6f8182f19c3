"""The data stage's tokenizer: a byte-level BPE trained on the curated corpus, or a saved one loaded
from a local directory (`data.tokenizer.path`); either way saved as a `PreTrainedTokenizerFast`.

A trained tokenizer puts the special tokens first in the vocabulary (ids 0..7), so their ids do not
depend on the corpus. A loaded one keeps its ids and gets the chat tokens it lacks appended. EOS
separates packed documents and PAD pads batches; there is no BOS, as in OLMo 3.
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


def _local(path: str):
    """The saved tokenizer at `path` with every special token of `olmo3_core.chat` (missing ones appended,
    so existing ids never move) and the project's EOS/PAD roles."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():  # a non-directory would be taken for a hub name and downloaded
        raise ValueError(f"{path} is not a directory holding a saved tokenizer (tokenizer.json or vocab files)")
    tok = AutoTokenizer.from_pretrained(path)
    missing = [t for t in SPECIAL_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    tok.eos_token, tok.pad_token = EOS_TOKEN, PAD_TOKEN
    return tok


def local_size(path: str) -> int:
    """Ids the tokenizer loaded from `path` can emit, chat tokens included: what model.vocab_size must hold."""
    return len(_local(path))


def load(path: str, out_dir: Path):
    """The tokenizer saved at `path`, completed with the chat tokens and saved to `out_dir`; returns it."""
    tok = _local(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out_dir))
    return tok
