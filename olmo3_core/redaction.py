"""Keep credentials out of everything we record: MLflow params and tags, manifests, logs, Prefect.

Two kinds of secrets are recognized:
- values under a secret-looking key (`secret`, `password`, `client_secret`, `accessKey`, `sas_token`,
  `aws_access_key_id`, ...), matched on the key's last word after splitting snake_case, camelCase,
  dashes and dots, so `tokens`, `tokenizer`, `max_new_tokens` or `keep_every` are left alone;
- credentials embedded in a string: URL userinfo (`http://user:pass@host`, `postgresql://u:p@h/db`),
  `Bearer`/`Basic` tokens, and `name=value` / `name: value` pairs with a secret-looking name
  (`AccountKey=...;`, `?sig=...&`, `Authorization: ...`, `{secret: ...}`).
"""
from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

# A key is secret when its last word is one of these ...
_SECRET_WORDS = frozenset({
    "secret", "secrets", "password", "passwd", "pwd", "passphrase", "token", "credential", "credentials",
    "key", "apikey", "auth", "authorization", "cookie", "signature", "sig", "sas", "privatekey", "accountkey",
})
# ... or its last two words are one of these (`aws_access_key_id`, `connection_string`).
_SECRET_PAIRS = frozenset({("key", "id"), ("connection", "string")})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD_SEP = re.compile(r"[^A-Za-z0-9]+")


def is_secret_key(key: Any) -> bool:
    """Whether a config key (or dotted path, header or connection-string field name) names a credential."""
    words = [w.lower() for w in _WORD_SEP.split(_CAMEL.sub("_", str(key))) if w]
    return bool(words) and (words[-1] in _SECRET_WORDS or tuple(words[-2:]) in _SECRET_PAIRS)


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#]+@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*")
_BASIC = re.compile(r"\b(Basic\s+)[A-Za-z0-9+/]{6,}={0,2}(?![A-Za-z0-9+/=])")
_PAIR = re.compile(r"(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
                   r"(?P<value>(?![{\[])[^\s,;&}\]'\"]+)")


def redact_text(text: str) -> str:
    """`text` with embedded credentials masked; unchanged if it carries none."""
    text = _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _BASIC.sub(rf"\g<1>{REDACTED}", text)
    return _PAIR.sub(lambda m: m["name"] + m["sep"] + REDACTED if is_secret_key(m["name"]) and m["value"] != REDACTED
                     else m[0], text)


def redact(obj: Any) -> Any:
    """A copy of `obj` with the value of every secret-looking key and every embedded credential masked."""
    if isinstance(obj, dict):
        return {k: REDACTED if is_secret_key(k) and v is not None else redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_override(override: str) -> str:
    """A Hydra override with credentials masked: the whole value when the key is secret
    (`+storage.storage_options.secret=...`), else whatever credentials its value embeds."""
    key, sep, _ = override.partition("=")
    if sep and is_secret_key(key.lstrip("+~")):
        return f"{key}{sep}{REDACTED}"
    return redact_text(override)


def redact_overrides(overrides: list[str]) -> list[str]:
    return [redact_override(o) for o in overrides]


def secret_overrides(overrides: list[str]) -> list[str]:
    """The overrides that carry a credential (shown redacted): a secret-looking key or a value with
    embedded credentials. `olmo3-flow run` refuses these, since overrides become Prefect flow parameters."""
    return [masked for override, masked in zip(overrides, redact_overrides(overrides)) if masked != override]
