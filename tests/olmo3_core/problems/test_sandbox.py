"""Hostile programs against the sandbox: each must get the right status and leave the host intact."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from olmo3_core.problems.sandbox import STATUSES, SandboxResult, run_untrusted

# Every program first prints its working directory, so the test can check it was removed.
CWD = "import os\nprint(os.getcwd(), flush=True)\n"


def _processes_in_sandbox_dirs() -> list[int]:
    out = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if "olmo3-sandbox-" in os.readlink(cwd):
                out.append(int(cwd.parent.name))
        except OSError:
            continue
    return out


def assert_host_intact(result: SandboxResult) -> None:
    """No process left behind, the temp dir gone, and a normal program still runs."""
    assert result.status in STATUSES and result.reason
    # Other tests in the session may own child processes (servers, pools); the sandbox's own are
    # recognisable by their working directory.
    assert _processes_in_sandbox_dirs() == []
    workdir = result.stdout.splitlines()[0] if result.stdout else ""
    if workdir:
        assert "olmo3-sandbox-" in workdir and not os.path.exists(workdir)
    os.kill(os.getppid(), 0)  # pytest's parent is alive too
    after = run_untrusted("print(6 * 7)")
    assert (after.status, after.stdout) == ("ok", "42\n")


def test_benign_program_runs_with_stdin():
    result = run_untrusted(CWD + "print(input()[::-1])", stdin="olleh\n")
    assert result.status == "ok" and result.returncode == 0
    assert result.stdout.splitlines()[1] == "hello"
    assert_host_intact(result)


def test_common_stdlib_works_and_introspection_is_refused_softly():
    code = CWD + (
        "import typing, enum, collections, dataclasses, logging, json, re, math, fractions, sys\n"
        "T = typing.TypeVar('T')\nP = collections.namedtuple('P', 'a')\nlogging.getLogger().info('x')\n"
        "try:\n    sys._getframe(1)\nexcept ValueError:\n    print('no frames')\n"
    )
    result = run_untrusted(code)
    assert result.status == "ok", result.stderr
    assert "no frames" in result.stdout
    assert_host_intact(result)


def test_syntax_error_is_an_error():
    result = run_untrusted("def f(:\n    pass\n")
    assert result.status == "error" and "SyntaxError" in result.stderr
    assert_host_intact(result)


def test_infinite_loop_hits_the_cpu_limit():
    result = run_untrusted(CWD + "while True:\n    pass\n", timeout_s=5, cpu_s=1)
    assert result.status in ("cpu_limit", "timeout")
    assert result.duration_s < 5
    assert_host_intact(result)


def test_sleeping_forever_hits_the_wall_clock_timeout():
    result = run_untrusted(CWD + "import time\ntime.sleep(60)\n", timeout_s=1)
    assert result.status == "timeout" and result.duration_s < 3
    assert_host_intact(result)


def test_memory_bomb_hits_the_memory_limit():
    result = run_untrusted(CWD + "hog = []\nwhile True:\n    hog.append(bytearray(50 * 1024 * 1024))\n", memory_mb=256)
    assert result.status == "memory_limit", result.stderr
    assert_host_intact(result)


def test_huge_file_hits_the_file_size_limit():
    code = CWD + "with open('big.bin', 'wb') as fh:\n    for _ in range(100):\n        fh.write(b'x' * 1024 * 1024)\n"
    result = run_untrusted(code, file_size_mb=4)
    assert result.status == "file_size_limit", result.stderr
    assert_host_intact(result)


def test_environment_secrets_do_not_reach_the_program(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("HF_TOKEN", "hunter2")
    dump = run_untrusted(CWD + "print(dict(os.environ))")
    assert dump.status == "ok" and "hunter2" not in dump.stdout and "AWS_" not in dump.stdout
    assert_host_intact(dump)
    # ... nor can it read them from the parent's /proc entry.
    proc = run_untrusted(CWD + "print(open(f'/proc/{os.getppid()}/environ').read())")
    assert proc.status == "forbidden" and "hunter2" not in proc.stdout + proc.stderr
    assert_host_intact(proc)


HOSTILE = {
    "fork_bomb": "while True:\n    os.fork()\n",
    "fork_bomb_caught": "while True:\n    try:\n        os.fork()\n    except BaseException:\n        pass\n",
    "fork_via_extension": "import importlib\nimportlib.import_module('_posixsubprocess')\n",
    "subprocess": "import subprocess\nsubprocess.run(['true'])\n",
    "os_system": "os.system('true')\n",
    "exec": "os.execv('/bin/true', ['true'])\n",
    "socket": "import socket\nsocket.create_connection(('127.0.0.1', 80))\n",
    "kill_parent": "os.kill(os.getppid(), 9)\n",
    "ctypes": "import ctypes\n",
    "read_dotfile": "print(open('/root/.bashrc').read())\n",
    "raise_limits": "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))\n",
    "chdir_out": "os.chdir('/')\n",
    "sqlite_outside": "import sqlite3\nsqlite3.connect('/tmp/escape.db')\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_forbidden(name):
    result = run_untrusted(CWD + HOSTILE[name])
    assert result.status == "forbidden", (result.reason, result.stderr)
    assert_host_intact(result)


def test_thread_creation_is_blocked_by_seccomp():
    result = run_untrusted(CWD + "import threading\nthreading.Thread(target=print).start()\n")
    if "kernel confinement unavailable" in result.stderr:
        pytest.skip("seccomp is not available on this kernel")
    assert result.status == "forbidden" and "seccomp" in result.reason
    assert_host_intact(result)


@pytest.mark.parametrize("write", ["open({target!r}, 'w').write('pwned')", "os.mkfifo({target!r})",
                                   "os.mkdir({target!r})", "os.symlink('/etc/passwd', 'link')"])
def test_writing_outside_the_temp_dir_is_forbidden(write):
    target = f"/tmp/escape-{uuid.uuid4().hex}"
    result = run_untrusted(CWD + write.format(target=target) + "\n")
    if "mkfifo" in write and "kernel confinement unavailable" in result.stderr:
        pytest.skip("mkfifo is not audited; only seccomp stops it, and this kernel has none")
    assert result.status == "forbidden", result.stderr
    assert not os.path.exists(target)
    assert_host_intact(result)


def test_removing_and_renaming_host_files_is_forbidden(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for op in (f"os.remove({str(victim)!r})", f"os.rename({str(victim)!r}, 'stolen.txt')",
               f"os.rename('x', {str(tmp_path / 'planted')!r})"):
        result = run_untrusted(CWD + "open('x', 'w').close()\n" + op + "\n")
        assert result.status == "forbidden", op
        assert_host_intact(result)
    assert victim.read_text() == "precious" and not (tmp_path / "planted").exists()


def test_files_inside_the_temp_dir_are_fine():
    code = CWD + "os.mkdir('d')\nopen('d/a.txt', 'w').write('hi')\nos.rename('d/a.txt', 'd/b.txt')\nprint(open('d/b.txt').read())\n"
    result = run_untrusted(code)
    assert result.status == "ok", result.stderr
    assert result.stdout.splitlines()[1] == "hi"
    assert_host_intact(result)


def test_output_is_bounded():
    result = run_untrusted(CWD + "import sys\nsys.stdout.write('y' * 2_000_000)\n")
    assert result.status == "ok" and len(result.stdout) < 70 * 1024 and "truncated" in result.stdout
    assert_host_intact(result)
