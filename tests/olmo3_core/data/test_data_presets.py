"""The shipped presets: they validate, and `micro` runs end to end into what the trainers read."""
from __future__ import annotations

import pytest

from olmo3_core.config.compose import compose_config


@pytest.mark.parametrize("preset", ["micro", "tiny"])
def test_presets_validate_and_feed_the_model_vocab(preset):
    cfg = compose_config([f"preset={preset}"])
    data = cfg.data
    assert cfg.model.vocab_size == data.tokenizer.vocab_size
    assert {"prose", "code", "math"} == set(data.sources)
    assert data.mixes["longcontext"].longest_first and data.mixes["midtrain"].preset == "dolmino"


def test_user_source_overrides_from_the_config_docstring():
    """The exact overrides written at the top of conf/data/default.yaml (copied into the README)."""
    cfg = compose_config(["preset=micro", "data.sources.prose.kind=files", "data.sources.prose.paths=[s3://my-bucket/web/*.jsonl.gz]"])
    assert cfg.data.sources["prose"].paths == ["s3://my-bucket/web/*.jsonl.gz"]
    added = compose_config(["preset=micro", "+data.sources.web={kind: files, paths: [/data/web/*.jsonl.zst], processors: prose}",
                            "+data.mixes.pretrain.proportions.web=0.5"])
    assert added.data.mixes["pretrain"].proportions == {"web": 0.5}
    pdfs = compose_config(["preset=micro", "+data.sources.pdf={kind: pdf, paths: [/data/papers/*.pdf], processors: prose}"])
    assert pdfs.data.sources["pdf"].pdf_backend == "pypdf"
    endpoint = compose_config(["preset=micro", "+data.storage_options.client_kwargs.endpoint_url=http://127.0.0.1:9000"])
    assert endpoint.data.storage_options["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"


def test_micro_preset_runs_into_the_trainer_layout(tmp_path, run_data_stage):
    from olmo3_core.train.data import TokenWindows

    cfg = compose_config(["preset=micro"])
    result = run_data_stage(cfg.data, tmp_path)
    for stage in ("pretrain", "midtrain", "longmino"):
        train = getattr(cfg, stage)
        windows = TokenWindows(tmp_path / "mixes" / train.mix, train.seq_len, seed=0)
        assert windows.batch(0, 2).shape == (2, train.seq_len)
        assert int(windows.tokens.max()) < cfg.model.vocab_size
    assert result.metrics["pretrain_tokens"] >= 0.9 * cfg.data.mixes["pretrain"].tokens
    assert {r["source"] for r in result.raw_inputs} == {"prose", "code", "math"}
    assert all(r["uri"].startswith("file://") for r in result.raw_inputs)
