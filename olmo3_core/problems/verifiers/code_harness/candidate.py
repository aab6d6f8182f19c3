"""Candidate side of the code verifier, run by path in its own sandbox:
`python candidate.py SOLUTION_JSON REQUEST_FD RESPONSE_FD`.

Runs the completion's code blocks, then answers the judge's calls one at a time: each request names
a function of the completion and carries plain-data arguments; the answer is the plain-data result
or the name of the exception raised. The completion never sees the tests, their expected values or
the judge's result channel, so whatever it does in this process (exit early, print fake results,
rewrite memory) it can only answer calls, with plain data or not at all.
"""
from __future__ import annotations

import json
import os
import sys

try:
    from . import wire
except ImportError:  # run by path inside the sandbox, where wire.py sits next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import wire


def serve(blocks: list[str], requests, response_fd: int) -> None:
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"solution_{i}.py", "exec"), namespace)
        except BaseException:  # a broken block loses only what it would have defined
            pass

    def resolve(name: str):
        return namespace[name]

    while True:
        try:
            request = wire.receive(requests)
        except EOFError:
            return
        try:
            args, kwargs = wire.decode(request["args"], resolve), wire.decode(request["kwargs"], resolve)
            if type(args) is not list or type(kwargs) is not dict:
                raise ValueError("malformed request")
            answer = {"ok": wire.encode(resolve(request["call"])(*args, **kwargs))}
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included: the call failed
            answer = {"raise": type(exc).__name__}
        wire.send(response_fd, answer)


def main(argv: list[str]) -> None:
    with open(argv[1], encoding="utf-8") as fh:
        blocks = json.load(fh)
    request_fd, response_fd = int(argv[2]), int(argv[3])
    serve(blocks, os.fdopen(request_fd, "rb"), response_fd)


if __name__ == "__main__":
    main(sys.argv)
