"""Fingerprints cover the code a stage can actually run: the import closure of its entry point."""
import json
import shutil
import subprocess
import sys

import pytest

from olmo3_core import plan
from olmo3_core.config.compose import compose_config


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of olmo3_core that the fingerprint code reads instead of the real one."""
    root = tmp_path / "olmo3_core"
    shutil.copytree(plan.PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(plan, "PACKAGE_ROOT", root)

    def digests():
        plan.import_closure.cache_clear()
        plan.code_digest.cache_clear()
        return {kind: plan.code_digest(kind) for kind in plan.KINDS}

    yield root, digests
    plan.import_closure.cache_clear()
    plan.code_digest.cache_clear()


def test_every_module_a_stage_imports_is_in_its_fingerprint():
    """Independent of the static analysis: import each entry point in a fresh interpreter and check
    that every olmo3_core module it loaded is hashed."""
    modules = sorted({k.entrypoint.__module__ for k in plan.KINDS.values()})
    probe = ("import importlib, json, sys; importlib.import_module(sys.argv[1]); "
             "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
             "if n.split('.')[0] == 'olmo3_core' and getattr(m, '__file__', None))))")
    procs = {m: subprocess.Popen([sys.executable, "-c", probe, m], stdout=subprocess.PIPE, text=True) for m in modules}
    for module, proc in procs.items():
        loaded = set(json.loads(proc.communicate(timeout=120)[0]))
        hashed = {str(p) for p in plan.import_closure(module)}
        assert loaded <= hashed, f"{module} loads {sorted(loaded - hashed)} outside its fingerprint"


def test_subprocess_jobs_and_shared_problem_code_are_covered():
    closure = {kind: {p.relative_to(plan.PACKAGE_ROOT).as_posix() for p in plan.import_closure(k.entrypoint.__module__)}
               for kind, k in plan.KINDS.items()}
    assert "train/loop.py" in closure["pretrain"]  # the job runs as `python -m`, by module object
    assert "posttrain/trainers.py" in closure["sft"]
    for needed in ("problems/procedural/math.py", "problems/sandbox/__init__.py", "problems/sandbox/child.py",
                   "problems/verifiers/code.py", "problems/verifiers/code_harness/judge.py"):
        assert needed in closure["eval"], needed
    assert "problems/procedural/instructions.py" in closure["rlvr"]  # imported by name map, not importlib


def test_editing_a_reachable_module_changes_exactly_the_stages_that_reach_it(package_copy):
    root, digests = package_copy
    before = digests()
    with open(root / "problems" / "procedural" / "math.py", "a") as fh:
        fh.write("\n# an edit\n")
    after = digests()
    changed = {kind for kind in plan.KINDS if before[kind] != after[kind]}
    assert {"eval", "data", "sft", "dpo", "rlvr"} <= changed
    assert not changed & {"pretrain", "midtrain", "longmino", "export"}

    (root / "unrelated.py").write_text("X = 1\n")  # a module no stage imports
    assert digests() == after
    with open(root / "train" / "loop.py", "a") as fh:
        fh.write("\n# an edit\n")
    again = digests()
    assert {kind for kind in plan.KINDS if again[kind] != after[kind]} == {"pretrain", "midtrain", "longmino"}


def test_plan_fingerprints_follow_code_edits(package_copy):
    root, digests = package_copy
    cfg = compose_config(["preset=micro"])

    def fingerprints_after(edit):
        with open(root / edit, "a") as fh:
            fh.write("\n# an edit\n")
        digests()
        return {n: s.fingerprint for n, s in plan.build_plan(cfg).stages.items()}

    digests()
    before = {n: s.fingerprint for n, s in plan.build_plan(cfg).stages.items()}
    after = fingerprints_after("problems/procedural/math.py")  # generates eval sets (and built-in data)
    assert before["base/eval"] != after["base/eval"]
    loop_edit = fingerprints_after("train/loop.py")
    assert loop_edit["data"] == after["data"] and loop_edit["pretrain"] != after["pretrain"]
