"""Judge side of the code verifier, run by path in its own sandbox:
`python judge.py TESTS_JSON REQUEST_FD RESPONSE_FD RESULT_FD`.

Runs each assert-style test here, with every name the test does not define itself (and that is not
a builtin) standing for the completion's object of that name, plus `candidate` for the entry point.
Calling one sends a request to the candidate sandbox and returns its plain-data answer, so every
value a test judges was built by this process from plain data, never an object of the completion.
One line `INDEX 0|1` per test goes to RESULT_FD, a file only this sandbox and the parent hold.
"""
from __future__ import annotations

import builtins
import json
import os
import sys

try:
    from . import wire
except ImportError:  # run by path inside the sandbox, where wire.py sits next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import wire


class CandidateError(Exception):
    """The candidate raised an exception that is not a builtin one, or its answer was unusable."""


class Remote:
    """A callable of the candidate sandbox."""

    def __init__(self, name: str, channel: "Channel"):
        self.name, self.channel = name, channel

    def __call__(self, *args, **kwargs):
        return self.channel.call(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate {self.name}>"


class Channel:
    def __init__(self, request_fd: int, responses):
        self.request_fd, self.responses = request_fd, responses

    def call(self, name: str, args: tuple, kwargs: dict):
        def plain(value):
            return wire.Ref(value.name) if type(value) is Remote else value

        wire.send(self.request_fd, {"call": name, "args": wire.encode([plain(a) for a in args]),
                                    "kwargs": wire.encode({k: plain(v) for k, v in kwargs.items()})})
        answer = wire.receive(self.responses)
        if "ok" in answer:
            return wire.decode(answer["ok"])
        raised = builtins.__dict__.get(answer.get("raise"))
        if isinstance(raised, type) and issubclass(raised, Exception):
            raise raised(f"raised by the candidate's {name}")
        raise CandidateError(f"{name}: {answer.get('raise')!r}")


class TestNames(dict):
    """A test's globals: unknown names that are not builtins resolve to the candidate's objects."""

    def __init__(self, channel: Channel, entry_point: str | None):
        super().__init__(__name__="__test__", __builtins__=builtins)
        if entry_point:
            self["candidate"] = Remote(entry_point, channel)
        self.channel = channel

    def __missing__(self, name: str):
        if name in builtins.__dict__:
            raise KeyError(name)  # the interpreter then looks in builtins
        return Remote(name, self.channel)


def main(argv: list[str]) -> None:
    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    channel = Channel(int(argv[2]), os.fdopen(int(argv[3]), "rb"))
    result_fd = int(argv[4])
    for i, source in enumerate(spec["tests"]):
        passed = 0
        try:
            exec(compile(source, f"test_{i}.py", "exec"), TestNames(channel, spec["entry_point"]))
            passed = 1
        except Exception:  # a failed assert, a candidate error, or a broken pipe: the test failed
            pass
        os.write(result_fd, b"%d %d\n" % (i, passed))


if __name__ == "__main__":
    main(sys.argv)
