"""A tokenizer loaded from a local directory (`data.tokenizer.path`, e.g. a copy of the dolma2 tokenizer)
instead of one trained on the corpus: ids kept, chat tokens added, sized before compute."""
from __future__ import annotations

import json

import numpy as np
import pytest

from olmo3_core.chat import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS
from olmo3_core.config.compose import compose_config
from olmo3_core.config.typed import ConfigError
from olmo3_core.data import tokenizer
from olmo3_core.plan import data_files

FOREIGN_SPECIALS = ["<s>", "</s>", "<|endoftext|>"]  # has EOS_TOKEN, lacks PAD and the chat tokens


@pytest.fixture(scope="module")
def foreign_tokenizer(tmp_path_factory):
    """A saved tokenizer built elsewhere: its own BPE, some specials shared with the project's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from olmo3_core.data.synthetic import english_doc
    import random

    rng = random.Random(3)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer, core.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    core.train_from_iterator([english_doc(rng, 20) for _ in range(200)], trainers.BpeTrainer(
        vocab_size=700, special_tokens=FOREIGN_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    path = tmp_path_factory.mktemp("dolma2-copy")
    PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>").save_pretrained(str(path))
    return path


def test_loaded_tokenizer_keeps_its_ids_and_gains_the_chat_tokens(foreign_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained(str(foreign_tokenizer))
    loaded = tokenizer.load(str(foreign_tokenizer), tmp_path / "tok")
    saved = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    text = "The harbor office opens at nine."
    assert saved.encode(text, add_special_tokens=False) == original.encode(text, add_special_tokens=False)
    assert set(SPECIAL_TOKENS) <= set(saved.get_vocab())
    assert saved.eos_token == EOS_TOKEN and saved.pad_token == PAD_TOKEN
    assert saved.convert_tokens_to_ids(EOS_TOKEN) == original.convert_tokens_to_ids(EOS_TOKEN)  # present: not moved
    assert len(saved) == len(loaded) == len(original) + len(SPECIAL_TOKENS) - 1 == tokenizer.local_size(str(foreign_tokenizer))


def test_data_stage_tokenizes_with_the_loaded_tokenizer(foreign_tokenizer, planted, make_config, run_data_stage,
                                                          tmp_path):
    from tokenizers import Tokenizer

    root, _ = planted
    cfg = make_config({"web": {"kind": "files", "paths": [str(root / "web" / "part-*")], "processors": "prose"}},
                      tokenizer={"path": str(foreign_tokenizer)})
    run_data_stage(cfg, tmp_path)
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer" / "tokenizer.json"))
    eos = tok.token_to_id(EOS_TOKEN)
    shard = np.load(tmp_path / "mixes" / "pretrain" / "shard_00000.npy")
    assert shard[-1] == eos and shard.max() < tok.get_vocab_size(with_added_tokens=True)
    sheet = json.loads((tmp_path / "datasheet.json").read_text())["tokenizer"]
    assert sheet == {"vocab_size": tokenizer.local_size(str(foreign_tokenizer)), "source": str(foreign_tokenizer),
                     "train_chars": 0}


def test_tokenizer_files_are_part_of_the_data_identity(foreign_tokenizer, make_config, tmp_path):
    import shutil

    copy = tmp_path / "tok"
    shutil.copytree(foreign_tokenizer, copy)
    cfg = make_config({"prose": {"kind": "builtin_prose"}}, tokenizer={"path": str(copy)})
    before = {f.uri: f.digest for f in data_files(cfg)}
    assert any(uri.endswith("tokenizer.json") for uri in before)
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text().replace("</s>", "</S>"))
    after = {f.uri: f.digest for f in data_files(cfg)}
    assert [u for u in before if before[u] != after[u]] == [u for u in before if u.endswith("tokenizer.json")]


def test_model_smaller_than_the_loaded_tokenizer_fails_before_compute_naming_both(foreign_tokenizer):
    size = tokenizer.local_size(str(foreign_tokenizer))
    with pytest.raises(ConfigError) as err:
        compose_config(["preset=micro", f"data.tokenizer.path={foreign_tokenizer}", "model.vocab_size=512"])
    assert f"model.vocab_size (512)" in str(err.value) and f"({size:,}, data.tokenizer.path={foreign_tokenizer})" in str(err.value)
    cfg = compose_config(["preset=micro", f"data.tokenizer.path={foreign_tokenizer}", f"model.vocab_size={size}"])
    assert cfg.data.tokenizer.path == str(foreign_tokenizer)


def test_tokenizer_path_that_is_not_a_saved_tokenizer_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.tokenizer.path: cannot load a tokenizer from .*not a directory"):
        compose_config(["preset=micro", "data.tokenizer.path=allenai/dolma2-tokenizer"])  # a hub name: never fetched
    with pytest.raises(ConfigError, match="data.tokenizer.path: cannot load a tokenizer from"):
        compose_config(["preset=micro", f"data.tokenizer.path={tmp_path}"])  # an empty directory
