"""The code verifier's two sandboxed programs, run by path: `candidate.py` serves the completion's
functions, `judge.py` runs the tests and calls them across a pipe; `wire.py` is their data format."""
