from olmo3_core.redaction import REDACTED, redact, redact_overrides
from olmo3_core.tracking import flatten_params


def test_credentials_are_redacted_everywhere_but_ordinary_keys_survive():
    cfg = {"storage_options": {"key": "AKIA123", "secret": "hunter2", "client_kwargs": {"endpoint_url": "http://x"}},
           "aws_secret_access_key": "s3cr3t", "session_token": "tok", "mixes": {"pretrain": {"tokens": 100}},
           "tokenizer": {"vocab_size": 1024}, "max_new_tokens": 8}
    clean = redact(cfg)
    flat = " ".join(f"{k}={v}" for k, v in flatten_params(cfg).items())
    for secret in ("AKIA123", "hunter2", "s3cr3t", "=tok"):
        assert secret not in str(clean) and secret not in flat
    assert clean["storage_options"]["key"] == REDACTED
    assert clean["mixes"]["pretrain"]["tokens"] == 100 and clean["tokenizer"] == {"vocab_size": 1024}
    assert clean["max_new_tokens"] == 8


def test_override_strings_are_redacted():
    masked = redact_overrides(["+data.storage_options.secret=hunter2", "pretrain.lr=0.1",
                               "storage.storage_options={key: AKIA1, secret: s3cr3t, client_kwargs: {endpoint_url: x}}",
                               "data.tokenizer.vocab_size=1024"])
    assert masked[0] == "+data.storage_options.secret=***" and masked[1] == "pretrain.lr=0.1"
    assert "AKIA1" not in masked[2] and "s3cr3t" not in masked[2] and "endpoint_url: x" in masked[2]
    assert masked[3] == "data.tokenizer.vocab_size=1024"
