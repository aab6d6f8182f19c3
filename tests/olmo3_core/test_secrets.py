from olmo3_core.secrets import REDACTED, redact
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
