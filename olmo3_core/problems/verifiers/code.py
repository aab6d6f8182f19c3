"""Code verifier: run a completion's code against assert-style tests in the sandbox.

Reward = fraction of tests passed, from one sandbox run. The harness closes the usual reward hacks:

- exiting early (`sys.exit`, `os._exit`) or printing fake results: a test counts only when its result
  line carries a random nonce sent on stdin, which the harness reads before the candidate runs and
  keeps in a local the candidate cannot reach (the sandbox disables frame/gc introspection);
- objects whose `__eq__`/`__bool__` always agree: tests are rewritten so every value they judge
  (call results, comparison operands, assert conditions, and/or/not operands) must be plain
  built-in data (None, bool, numbers, str, bytes, list, tuple, dict, set, range) all the way down;
- monkeypatching builtins: tests see a copy of builtins taken before the candidate runs.

Not closed: a candidate can monkeypatch stdlib modules the tests import (`math.isclose`), so tests
should compare values directly. A candidate that does anything the sandbox forbids scores 0.
"""
from __future__ import annotations

import ast
import math
import re
import secrets

from olmo3_core.problems.sandbox import run_untrusted
from olmo3_core.problems.verifiers.math import strip_reasoning

PLAIN_CHECK = "__olmo3_plain__"
_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_LANGS = {"python", "py", "python3"}

_HARNESS = r'''
import builtins as _builtins, os as _os


def _olmo3_run(blocks, tests, entry_point, plain_name):
    read, write, exit_, dup, dup2, open_ = _os.read, _os.write, _os._exit, _os.dup, _os.dup2, _os.open
    exec_, compile_, callable_, type_, len_, dict_ = exec, compile, callable, type, len, dict
    enumerate_, BaseException_, AssertionError_ = enumerate, BaseException, AssertionError
    scalars = (type(None), bool, int, float, complex, str, bytes, range)
    collections = (list, tuple, set, frozenset)

    def plain(value, depth=0):
        """`value` if it is built-in data all the way down, else the test fails."""
        kind = type_(value)
        for t in scalars:
            if kind is t:
                return value
        if depth < 64:
            for t in collections:
                if kind is t:
                    for item in value:
                        plain(item, depth + 1)
                    return value
            if kind is dict_:
                for key, item in value.items():
                    plain(key, depth + 1)
                    plain(item, depth + 1)
                return value
        raise AssertionError_("a test judged a value that is not plain built-in data")

    nonce = b""
    while len_(nonce) < 32:
        chunk = read(0, 32 - len_(nonce))
        if not chunk:
            exit_(3)
        nonce += chunk
    out = dup(1)
    dup2(open_("/dev/null", _os.O_WRONLY), 1)  # the candidate's prints go nowhere, results to `out`
    compiled = [compile_(src, "test_%d.py" % i, "exec") for i, src in enumerate_(tests)]
    safe_builtins = dict_(_builtins.__dict__)
    ns = {"__name__": "solution", "__builtins__": _builtins}
    for i, block in enumerate_(blocks):
        try:
            exec_(compile_(block, "solution_%d.py" % i, "exec"), ns)
        except BaseException_:
            pass
    target = ns.get(entry_point) if entry_point else None
    if entry_point and not callable_(target):
        exit_(0)
    for i, code in enumerate_(compiled):
        scope = dict_(ns)
        scope["__builtins__"], scope[plain_name] = safe_builtins, plain
        if entry_point:
            scope["candidate"] = target
        ok = 0
        try:
            exec_(code, scope)
            ok = 1
        except BaseException_:
            pass
        write(out, b"%s %d %d\n" % (nonce, i, ok))
    exit_(0)
'''


class _PlainGuard(ast.NodeTransformer):
    """Route every value a test judges through the harness's plain-data check."""

    @staticmethod
    def _plain(node: ast.expr) -> ast.expr:
        return ast.Call(ast.Name(PLAIN_CHECK, ast.Load()), [node], [])

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        return self._plain(node)

    def visit_Compare(self, node: ast.Compare) -> ast.Compare:
        self.generic_visit(node)
        node.left, node.comparators = self._plain(node.left), [self._plain(c) for c in node.comparators]
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.BoolOp:
        self.generic_visit(node)
        node.values = [self._plain(v) for v in node.values]
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.UnaryOp:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            node.operand = self._plain(node.operand)
        return node

    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        self.generic_visit(node)
        node.test = self._plain(node.test)
        return node


def guard_test(source: str) -> str:
    """`source` with every judged value checked to be plain data; ValueError if it is not Python."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"code test is not valid Python: {source!r}") from exc
    return ast.unparse(ast.fix_missing_locations(_PlainGuard().visit(tree)))


def extract_code(completion: str) -> list[str]:
    """Code blocks of a completion: its ```python fences (else any ``` fences), else the raw text."""
    text = strip_reasoning(completion)
    fences = _FENCE_RE.findall(text)
    python = [body for lang, body in fences if lang.lower() in _PYTHON_LANGS]
    blocks = python or [body for _, body in fences] or [text]
    return [b for b in blocks if b.strip()]


def _tests(ground_truth) -> tuple[list[str], str | None]:
    tests = ground_truth.get("tests") if isinstance(ground_truth, dict) else None
    entry_point = ground_truth.get("entry_point") if isinstance(ground_truth, dict) else None
    if not tests or not all(isinstance(t, str) for t in tests) or not isinstance(entry_point, (str, type(None))):
        raise ValueError(f"code ground truth must be {{'tests': [str, ...], 'entry_point': str | None}}, got {ground_truth!r}")
    return [guard_test(t) for t in tests], entry_point


def verify_code(completion: str, ground_truth, *, timeout_s: float = 10.0) -> float:
    """Fraction of `ground_truth["tests"]` the completion's code passes. With an `entry_point`, the
    code must define that callable, which tests may also call as `candidate`. Tests finished before
    a timeout or resource limit count; anything forbidden scores 0.0."""
    tests, entry_point = _tests(ground_truth)
    blocks = extract_code(completion) if isinstance(completion, str) else []
    if not blocks:
        return 0.0
    nonce = secrets.token_hex(16)
    program = _HARNESS + f"\n_olmo3_run({blocks!r}, {tests!r}, {entry_point!r}, {PLAIN_CHECK!r})\n"
    result = run_untrusted(program, stdin=nonce, timeout_s=timeout_s, cpu_s=math.ceil(timeout_s))
    if result.status == "forbidden":
        return 0.0
    passed = {int(i) for i, ok in re.findall(rf"^{nonce} (\d+) ([01])$", result.stdout, re.MULTILINE) if ok == "1"}
    return len(passed & set(range(len(tests)))) / len(tests)
