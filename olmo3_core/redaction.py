"""Keep credentials out of everything we record: MLflow params and tags, manifests, logs."""
from __future__ import annotations

import re
from typing import Any

# Whole key names (or their last `_` part) that carry credentials: s3fs's key/secret/token,
# aws_secret_access_key, session_token, password, api_key, ... but not `tokens` or `tokenizer`.
SECRET_KEY = re.compile(r"(^|_)(secret|password|passwd|token|credentials?|key|apikey|key_id)$", re.I)
REDACTED = "***"


def redact(obj: Any) -> Any:
    """A copy of `obj` with the value of every secret-looking key replaced."""
    if isinstance(obj, dict):
        return {k: REDACTED if SECRET_KEY.search(str(k)) and v is not None else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


_INLINE_SECRET = re.compile(r"((?:^|[{,\s_])(?:secret|password|passwd|token|credentials?|key|apikey|key_id)\s*:\s*)[^,}\s]+", re.I)


def redact_overrides(overrides: list[str]) -> list[str]:
    """Hydra override strings with credential values masked, whether set directly
    (`+storage.storage_options.secret=...`) or inside a dict literal (`...={key: ..., secret: ...}`)."""
    out = []
    for override in overrides:
        key, sep, value = override.partition("=")
        last = key.lstrip("+~").rsplit(".", 1)[-1]
        out.append(f"{key}{sep}{REDACTED}" if sep and SECRET_KEY.search(last) else _INLINE_SECRET.sub(rf"\g<1>{REDACTED}", override))
    return out
