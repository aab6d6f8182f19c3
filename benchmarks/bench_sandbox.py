"""Per-call overhead of the code sandbox: the median wall time of `run_untrusted` on a trivial program
(bubblewrap namespaces, seccomp filter, uid drop, tmpfs, interpreter start, teardown), and of one
`verify_code` call (two sandboxes: candidate and judge). Goal: sandbox median < 0.15 s.

    python benchmarks/bench_sandbox.py [--calls 100]
"""
from __future__ import annotations

import argparse
import statistics
import time

from olmo3_core.problems.sandbox import run_untrusted
from olmo3_core.problems.verifiers.code import verify_code

ADD = {"tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"], "entry_point": "add"}


def median_seconds(call, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()

    def trivial():
        result = run_untrusted("pass")
        assert result.status == "ok", result.stderr

    def verify():
        assert verify_code("def add(a, b):\n    return a + b\n", ADD) == 1.0

    sandbox_s = median_seconds(trivial, args.calls)
    verify_s = median_seconds(verify, max(args.calls // 4, 5))
    print(f"run_untrusted('pass'): median {sandbox_s:.4f} s over {args.calls} calls (goal < 0.15 s)")
    print(f"verify_code (3 tests, candidate + judge sandboxes): median {verify_s:.4f} s")


if __name__ == "__main__":
    main()
