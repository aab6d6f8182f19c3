"""Fixtures for the training-loop tests: a tiny tokenizer and token shard, and a micro pretrain job on them."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from olmo3_core.chat import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS
from olmo3_core.config.compose import compose_config
from olmo3_core.stages.jobs import TrainJob


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A tokenizer and one token shard built from stdlib source, like a tiny data artifact."""
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def build_corpus(root: Path) -> Path:
    import sysconfig

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [p.read_text() for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:25]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIAL_TOKENS,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    fast.save_pretrained(root / "tokenizer")
    ids = [i for t in texts for i in fast(t)["input_ids"] + [fast.eos_token_id]]
    (root / "mix").mkdir()
    np.save(root / "mix" / "shard_00000.npy", np.array(ids, dtype=np.uint32))
    return root


def pretrain_job(corpus, out: Path, **train_overrides) -> TrainJob:
    cfg = compose_config(["preset=micro"])
    train = dataclasses.replace(cfg.pretrain, **{"max_steps": 30, "anneal_stop_step": None, "keep_every": 0,
                                                "checkpoint_every": 10, "log_every": 1, **train_overrides})
    return TrainJob(kind="pretrain", train=train, model=dataclasses.replace(cfg.model, vocab_size=512),
                    tokenizer_dir=str(corpus / "tokenizer"), mix_dir=str(corpus / "mix"), output_dir=str(out),
                    checkpoint_dir=str(out / "work" / "ckpt"))
