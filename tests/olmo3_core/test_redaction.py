import json

import pytest

from olmo3_core.redaction import REDACTED, is_secret_key, redact, redact_overrides, redact_text, secret_overrides
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


SECRET_KEYS = ["secret", "password", "passwd", "passphrase", "auth", "Authorization", "accessKey", "access_key",
               "secretAccessKey", "aws_secret_access_key", "aws_access_key_id", "AccessKeyId", "client_secret",
               "clientSecret", "private_key", "privateKey", "sas_token", "sasToken", "api_key", "apiKey", "X-Api-Key",
               "X-Amz-Security-Token", "AccountKey", "connection_string", "connectionString", "credentials", "sig",
               "storage_options.key", "+storage.storage_options.token"]
ORDINARY_KEYS = ["tokens", "tokenizer", "max_new_tokens", "keep_every", "min_doc_tokens", "shard_tokens", "secret_name",
                 "token_file", "key_file", "monkey", "hotkeys", "authority", "keyword", "passes", "endpoint_url"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_key_names_in_any_case_style_are_recognized(key):
    assert is_secret_key(key)
    assert redact({key: "canary-value"}) == {key: REDACTED}


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_ordinary_key_names_are_not_secrets(key):
    assert not is_secret_key(key)
    assert redact({key: "value"}) == {key: "value"}


@pytest.mark.parametrize("preset", ["micro", "tiny"])
def test_no_key_or_value_of_the_real_config_is_redacted(preset):
    """No false positive anywhere in the shipped config: it is logged in full as MLflow params."""
    from olmo3_core.config.compose import compose_config
    from olmo3_core.config.typed import to_dict

    cfg = to_dict(compose_config([f"preset={preset}"]))
    assert redact(cfg) == json.loads(json.dumps(cfg))


@pytest.mark.parametrize("text, secret, kept", [
    ("http://user:pa55word@minio.local:9000/bucket", "pa55word", "minio.local:9000/bucket"),
    ("https://ghp_tokenvalue123@github.com/org/repo", "ghp_tokenvalue123", "github.com/org/repo"),
    ("postgresql://olmo:s3cr3t@db.internal:5432/mlflow", "s3cr3t", "db.internal:5432/mlflow"),
    ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi", "Authorization"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA", "Authorization"),
    ("DefaultEndpointsProtocol=https;AccountName=olmo;AccountKey=QUJDREVGRw==;EndpointSuffix=core.windows.net",
     "QUJDREVGRw", "AccountName=olmo"),
    ("Server=db;Database=runs;User Id=olmo;Password=hunter2;", "hunter2", "Database=runs"),
    ("https://acct.blob.core.windows.net/c?sv=2022-11-02&se=2030&sig=AbCdEf%2Bsig&sp=r", "AbCdEf", "sv=2022-11-02"),
    ("{'client_secret': 'cs-123', 'region': 'us-east-1'}", "cs-123", "us-east-1"),
])
def test_credentials_embedded_in_values_are_masked(text, secret, kept):
    clean = redact({"endpoint_url": text, "nested": [{"header": text}]})
    assert secret not in json.dumps(clean)
    assert kept in clean["endpoint_url"] and clean["endpoint_url"] == clean["nested"][0]["header"]
    assert redact_text(redact_text(text)) == redact_text(text)


@pytest.mark.parametrize("text", ["http://127.0.0.1:9000", "s3://bucket/olmo3/data", "basic arithmetic problems",
                                  "max_new_tokens=8", "tokens: 100", "git describe --tags", "lr=0.1; warmup=10"])
def test_ordinary_values_are_left_alone(text):
    assert redact_text(text) == text


def test_secret_overrides_are_found_and_ordinary_ones_pass():
    refused = ["+storage.storage_options.secret=hunter2", "+storage.storage_options.accessKey=AKIA1",
               "+data.storage_options.client_kwargs.endpoint_url=http://u:hunter2@minio:9000",
               "storage.storage_options={key: AKIA1, region: x}", "+tracking.headers.Authorization='Bearer abc123'"]
    allowed = ["preset=micro", "stages=[data]", "+storage.storage_options.client_kwargs.endpoint_url=http://127.0.0.1:9000",
               "storage.root=s3://bucket/olmo3", "posttrain.instruct.sft.lr=1e-4"]
    found = secret_overrides(allowed + refused)
    assert len(found) == len(refused)
    assert not any(s in " ".join(found) for s in ("hunter2", "AKIA1", "abc123"))
