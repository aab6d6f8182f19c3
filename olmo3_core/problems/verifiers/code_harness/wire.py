"""Plain built-in data on the pipes between the judge and the candidate sandboxes.

JSON lines with tags, so tuples, sets, bytes, complex numbers, ranges and non-string dict keys
survive the trip, while decoding can only ever build plain built-in data (no pickle or marshal: the
judge decodes what an untrusted process wrote). Exact types only: a subclass of int or an object
with a custom `__eq__` is not plain data, so a candidate cannot return one.
"""
from __future__ import annotations

import json
import os

MAX_DEPTH = 64
MAX_LINE = 16 * 1024 * 1024
_SCALARS = (type(None), bool, int, float, str)
_SEQUENCES = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}
_BY_TAG = {tag: kind for kind, tag in _SEQUENCES.items()}


class Ref:
    """A name in the candidate's namespace, sent instead of the callable itself."""

    def __init__(self, name: str):
        self.name = name


def encode(value, depth: int = 0):
    """A JSON-able form of `value`; TypeError if it is not plain data all the way down."""
    kind = type(value)
    if depth > MAX_DEPTH:
        raise TypeError("value nested too deeply")
    if kind in _SCALARS:
        return value
    if kind in _SEQUENCES:
        return {_SEQUENCES[kind]: [encode(item, depth + 1) for item in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    if kind is range:
        return {"range": [value.start, value.stop, value.step]}
    if isinstance(value, Ref):
        return {"ref": value.name}
    raise TypeError(f"not plain built-in data: {kind.__name__}")


def decode(obj, resolve=None, depth: int = 0):
    """Inverse of `encode`; `resolve(name)` turns a ref back into an object (refused without one).
    ValueError on anything `encode` cannot have produced (TypeError for an unhashable set member
    or dict key)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if type(obj) in _SCALARS:
        return obj
    if type(obj) is not dict or len(obj) != 1:
        raise ValueError("malformed value")
    (tag, body), = obj.items()
    if tag in _BY_TAG and type(body) is list:
        return _BY_TAG[tag](decode(item, resolve, depth + 1) for item in body)
    if tag == "dict" and type(body) is list and all(type(p) is list and len(p) == 2 for p in body):
        return {decode(k, resolve, depth + 1): decode(v, resolve, depth + 1) for k, v in body}
    if tag == "bytes" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "complex" and type(body) is list and len(body) == 2 and all(type(x) is float for x in body):
        return complex(*body)
    if tag == "range" and type(body) is list and len(body) == 3 and all(type(x) is int for x in body):
        return range(*body)
    if tag == "ref" and type(body) is str and resolve is not None:
        return resolve(body)
    raise ValueError(f"malformed value tagged {tag!r}")


def send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def receive(stream) -> dict:
    """The next message from a binary stream; EOFError when the other side has gone."""
    line = stream.readline(MAX_LINE)
    if not line.endswith(b"\n"):
        raise EOFError("the other sandbox closed the pipe or sent an oversized message")
    message = json.loads(line)
    if type(message) is not dict:
        raise ValueError("malformed message")
    return message
