"""Helpers of the flow-level fault tests."""
from __future__ import annotations

import time

import pytest


@pytest.fixture
def wait_for():
    """`wait_for(predicate, timeout_s, what)`: poll until `predicate()` is truthy and return it, or fail
    naming what was awaited."""
    def wait(predicate, timeout_s: float, what: str):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
    return wait
