"""Hostile programs against the sandbox: each gets the right status and leaves the host intact, and as
a code completion each scores 0."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

import olmo3_core
from olmo3_core.problems import sandbox
from olmo3_core.problems.sandbox import STATUSES, WORKDIR, SandboxError, SandboxResult, run_untrusted
from olmo3_core.problems.verifiers.code import verify_code

ADD = {"tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"], "entry_point": "add"}
WRONG_ADD = "\ndef add(a, b):\n    return None\n"  # scores 0 honestly: any reward would be a hack


def _sandbox_processes() -> list[int]:
    """Live processes of this test process's sandboxes: those under its sandbox uids (as root)
    and bwrap processes among its descendants. Other tests' servers and pools are not counted."""
    uids = sandbox.sandbox_uids(os.getpid())
    found = {p.pid for p in psutil.Process().children(recursive=True) if p.name() == "bwrap"}
    for proc in psutil.process_iter(["uids"]):
        if proc.info["uids"] and proc.info["uids"].real in uids:
            found.add(proc.pid)
    return sorted(found)


def assert_host_intact(result: SandboxResult) -> None:
    """No process left behind, the test runner alive, and a normal program still runs."""
    assert result.status in STATUSES and result.reason
    assert _sandbox_processes() == []
    os.kill(os.getppid(), 0)
    after = run_untrusted("print(6 * 7)")
    assert (after.status, after.stdout) == ("ok", "42\n")


def test_benign_program_runs_with_stdin_in_its_own_dir():
    result = run_untrusted("import os\nprint(os.getcwd())\nprint(input()[::-1])", stdin="olleh\n")
    assert result.status == "ok" and result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [WORKDIR, "hello"]
    assert_host_intact(result)


def test_common_stdlib_works():
    code = ("import typing, enum, collections, dataclasses, logging, json, re, math, fractions, decimal, random\n"
            "import itertools, functools, heapq, bisect, statistics, datetime, sqlite3, ctypes\n"
            "T = typing.TypeVar('T')\nP = collections.namedtuple('P', 'a')\nlogging.getLogger().info('x')\n"
            "db = sqlite3.connect(':memory:')\nprint(db.execute('select 6 * 7').fetchone()[0])\n")
    result = run_untrusted(code)
    assert (result.status, result.stdout) == ("ok", "42\n"), result.stderr
    assert_host_intact(result)


def test_syntax_error_is_an_error():
    result = run_untrusted("def f(:\n    pass\n")
    assert result.status == "error" and "SyntaxError" in result.stderr
    assert_host_intact(result)


def test_infinite_loop_hits_the_cpu_limit():
    result = run_untrusted("while True:\n    pass\n", timeout_s=5, cpu_s=1)
    assert result.status == "cpu_limit" and result.duration_s < 5
    assert_host_intact(result)


def test_sleeping_forever_hits_the_wall_clock_timeout():
    result = run_untrusted("import time\ntime.sleep(60)\n", timeout_s=1)
    assert result.status == "timeout" and result.duration_s < 3
    assert_host_intact(result)


def test_memory_bomb_hits_the_memory_limit():
    result = run_untrusted("hog = []\nwhile True:\n    hog.append(bytearray(50 * 1024 * 1024))\n", memory_mb=256)
    assert result.status == "memory_limit", result.stderr
    assert_host_intact(result)


def test_huge_file_hits_the_file_size_limit():
    code = "with open('big.bin', 'wb') as fh:\n    for _ in range(100):\n        fh.write(b'x' * 1024 * 1024)\n"
    result = run_untrusted(code, file_size_mb=4)
    assert result.status == "file_size_limit", result.stderr
    assert_host_intact(result)


def test_many_small_files_hit_the_total_disk_quota():
    # Each file is under the per-file limit; together they would fill a disk without the quota.
    code = "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * 65536)\n    i += 1\n"
    result = run_untrusted(code, file_size_mb=1, disk_mb=4, timeout_s=20, cpu_s=20)
    assert result.status == "disk_limit", (result.reason, result.stderr[-500:])
    assert verify_code(code + WRONG_ADD, ADD) == 0.0
    assert_host_intact(result)


def test_environment_secrets_do_not_reach_the_program(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("HF_TOKEN", "hunter2")
    dump = run_untrusted("import os\nprint(dict(os.environ))")
    assert dump.status == "ok" and "hunter2" not in dump.stdout and "AWS_" not in dump.stdout
    # ... nor from any /proc entry: the sandbox has no /proc at all.
    proc = run_untrusted("print(open('/proc/1/environ').read())")
    assert proc.status == "error" and "FileNotFoundError" in proc.stderr and "hunter2" not in proc.stdout
    assert_host_intact(proc)


KILLED = {  # ended by the launcher's seccomp filter, whatever the program catches
    "fork_bomb": "import os\nwhile True:\n    os.fork()\n",
    "fork_bomb_caught": "import os\nwhile True:\n    try:\n        os.fork()\n    except BaseException:\n        pass\n",
    "subprocess": "import subprocess\nsubprocess.run(['true'])\n",
    "os_system": "import os\nos.system('true')\n",
    "thread": "import threading\nthreading.Thread(target=print).start()\n",
    "daemonize": ("import os\ntry:\n    os.setsid()\nexcept OSError:\n    pass\n"
                  "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        import time\n        time.sleep(60)\n"),
    "ctypes_fork": "import ctypes\nctypes.CDLL(None).syscall(57)\n",  # raw fork(2), x86-64 number
    "ctypes_clone3": "import ctypes\nctypes.CDLL(None).syscall(435, 0, 0)\n",
    "ctypes_unshare": "import ctypes\nctypes.CDLL(None).unshare(0x10000000)\n",  # CLONE_NEWUSER
    "ctypes_mount": "import ctypes\nctypes.CDLL(None).mount(b'none', b'/sandbox', b'tmpfs', 0, None)\n",
    "ctypes_ptrace": "import ctypes\nctypes.CDLL(None).ptrace(16, 1, 0, 0)\n",  # PTRACE_ATTACH to pid 1
    "mkfifo": "import os\nos.mkfifo('pipe')\n",
}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="raw system call numbers are x86-64 ones")
@pytest.mark.parametrize("name", sorted(KILLED))
def test_process_creation_and_kernel_escapes_are_killed(name):
    result = run_untrusted(KILLED[name])
    assert result.status == "forbidden" and "seccomp" in result.reason, (result.reason, result.stderr)
    assert verify_code(KILLED[name] + WRONG_ADD, ADD) == 0.0
    assert_host_intact(result)


REFUSED = {  # the kernel refuses, the program sees an error and nothing happens
    "socket": ("import socket\nsocket.create_connection(('127.0.0.1', 80))\n", "PermissionError"),
    "kill_parent": ("import os\nos.kill(os.getppid(), 9)\n", "PermissionError"),
    "setuid_root": ("import os\nos.setuid(0)\n", "PermissionError"),
    "raise_limits": ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))\n", "ValueError"),
    "exec_shell": ("import os\nos.execv('/bin/sh', ['sh', '-c', 'true'])\n", "FileNotFoundError"),
    "write_workdir_root": ("open('/escape', 'w')\n", "OSError"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_operations_fail_without_effect(name):
    code, error = REFUSED[name]
    result = run_untrusted(code)
    assert result.status == "error" and error in result.stderr, (result.reason, result.stderr)
    assert verify_code(code + WRONG_ADD, ADD) == 0.0
    assert_host_intact(result)


def _host_targets(tmp_path: Path) -> list[Path]:
    """Host folders an escaping program would like to write into: a temp dir, the project's
    source and the interpreter's site-packages."""
    return [tmp_path, Path(olmo3_core.__file__).parent, Path(pytest.__file__).parent.parent]


@pytest.mark.parametrize("write", ["open({target!r}, 'w').write('pwned')", "os.mkdir({target!r})",
                                   "os.symlink('/etc/passwd', {target!r})", "os.rename('mine', {target!r})",
                                   "os.mkfifo({target!r})"])
def test_writing_into_host_folders_leaves_no_trace(tmp_path, write):
    for folder in _host_targets(tmp_path):
        target = str(folder / f"pwned_{uuid.uuid4().hex}.py")
        code = "import os\nopen('mine', 'w').close()\n" + write.format(target=target) + "\n"
        result = run_untrusted(code)
        assert result.status != "ok", (target, result.stderr)
        assert not os.path.lexists(target)
        assert_host_intact(result)


def test_removing_or_renaming_host_files_leaves_them(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    source = Path(olmo3_core.__file__)
    before = source.read_bytes()
    for path in (victim, source):
        for op in (f"os.remove({str(path)!r})", f"os.rename({str(path)!r}, 'stolen')", f"os.truncate({str(path)!r}, 0)"):
            result = run_untrusted("import os\n" + op + "\n")
            assert result.status == "error", (op, result.stderr)
            assert_host_intact(result)
    assert victim.read_text() == "precious" and source.read_bytes() == before


def test_reading_and_listing_outside_the_sandbox_finds_nothing(tmp_path):
    secret = f"hunter2-{uuid.uuid4().hex}"
    (tmp_path / "secret.txt").write_text(secret)
    _, interpreter = sandbox._interpreter_binds()
    # Outside places the sandbox does not show at all (one holding the interpreter shows just that).
    absent = [p for p in ("/root", "/home", "/etc", "/tmp", str(tmp_path), str(Path(olmo3_core.__file__).parent), "/proc")
              if not any(b.startswith(p + "/") for b in interpreter)]
    tops = {"dev", "olmo3", "sandbox", "usr", "lib", "lib32", "lib64", "libx32"} | {b.split("/")[1] for b in interpreter}
    code = (f"import os\nfor place in {['/', *absent]!r}:\n"
            "    try:\n        print(place, sorted(os.listdir(place)))\n    except OSError as exc:\n"
            "        print(place, type(exc).__name__)\n"
            f"for path in ['/etc/passwd', '/etc/shadow', '/root/.bashrc', {str(tmp_path / 'secret.txt')!r}]:\n"
            "    try:\n        print(open(path).read())\n    except OSError as exc:\n        print(path, type(exc).__name__)\n")
    result = run_untrusted(code)
    assert result.status == "ok", result.stderr
    listed = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert set(json.loads(listed["/"].replace("'", '"'))) <= tops, listed["/"]
    for place in absent:
        assert listed[place] == "FileNotFoundError", place
    assert secret not in result.stdout and "root:" not in result.stdout
    assert verify_code(code + WRONG_ADD, ADD) == 0.0
    assert_host_intact(result)


# Where, relative to id(None), the running interpreter keeps its list of audit hooks: found the way
# an attacker would, on the same binary, with ctypes and /proc/self/maps.
_FIND_AUDIT_HOOKS = r"""
import ctypes, sys
ctypes.pythonapi.PyInterpreterState_Main.restype = ctypes.c_void_p
interp = ctypes.pythonapi.PyInterpreterState_Main()
def hook(*args):
    pass
sys.addaudithook(hook)
readable = []
for line in open("/proc/self/maps"):
    span, perms = line.split()[:2]
    if perms.startswith("r"):
        readable.append(tuple(int(x, 16) for x in span.split("-")))
def mapped(addr):
    return any(lo <= addr and addr + 32 <= hi for lo, hi in readable)
P = ctypes.POINTER(ctypes.c_size_t)
for i, word in enumerate((ctypes.c_size_t * 8192).from_address(interp)):
    if word % 8 == 0 and mapped(word):
        obj = ctypes.cast(word, P)
        if obj[1] == id(list) and obj[2] == 1 and mapped(obj[3]) and ctypes.cast(obj[3], P)[0] == id(hook):
            print(interp - id(None), i * 8)
            break
"""

# Reaches ctypes through the object graph where the sandbox loaded it (else imports it), empties the
# interpreter's audit-hook list by writing memory, then writes into the host folder.
_CLEAR_HOOKS_AND_ESCAPE = """
CDLL = next((c for c in object.__subclasses__() if c.__name__ == 'CDLL'), None)
if CDLL is not None:
    ct = CDLL.__init__.__globals__
else:
    import ctypes
    ct = vars(ctypes)
class Word(ct['Union']):
    _fields_ = [('addr', ct['c_size_t']), ('ptr', ct['POINTER'](ct['c_size_t']))]
def at(addr):
    word = Word()
    word.addr = addr
    return word.ptr
hooks = at(id(None) + {interp})[{slot} // 8]
if hooks:
    at(hooks)[2] = 0  # ob_size of the hook list: no audit hook runs any more
print('hooks cleared' if hooks else 'no hooks to clear', flush=True)
open({target!r}, 'w').write('pwned')
print('escaped', flush=True)
"""


def test_clearing_audit_hooks_through_ctypes_gains_nothing(tmp_path):
    found = subprocess.run([os.path.realpath(sys.executable), "-I", "-c", _FIND_AUDIT_HOOKS],
                           capture_output=True, text=True, timeout=60)
    if not found.stdout.strip():
        pytest.skip(f"could not locate the audit-hook list in this interpreter: {found.stderr[-300:]}")
    interp, slot = map(int, found.stdout.split())
    target = str(tmp_path / "pwned.txt")
    code = _CLEAR_HOOKS_AND_ESCAPE.format(interp=interp, slot=slot, target=target)
    result = run_untrusted(code)
    assert "escaped" not in result.stdout and not os.path.exists(target), (result.stdout, result.stderr)
    assert verify_code(code + WRONG_ADD, ADD) == 0.0
    assert_host_intact(result)


# Tries every way a result line could reach the scorer: a nonce left on stdin, stdout, every fd.
FORGE = """import os
try:
    os.lseek(0, 0, os.SEEK_SET)
    nonce = os.read(0, 4096).decode().strip()
except OSError:
    nonce = ''
lines = ''.join('%s %d 1\\n' % (nonce, i) if nonce else '%d 1\\n' % i for i in range(3)).encode()
for fd in range(64):
    try:
        os.write(fd, lines)
    except OSError:
        pass
print(lines.decode(), flush=True)
"""


@pytest.mark.parametrize("where", ["import", "call"])
def test_forged_test_results_score_zero(where):
    if where == "import":
        completion = FORGE + "os._exit(0)\n"
    else:
        completion = "def add(a, b):\n" + "".join("    " + line + "\n" for line in FORGE.splitlines()) + "    os._exit(0)\n"
    assert verify_code(completion, ADD) == 0.0


def test_the_judge_scores_through_the_pipe():
    # The honest path: the candidate's values cross as plain data and the judge compares them.
    tests = {"tests": ["assert swap((1, 'a')) == ('a', 1)", "assert swap(((1,), {2: b'x'})) == ({2: b'x'}, (1,))",
                       "try:\n    swap(None)\n    assert False\nexcept TypeError:\n    pass",
                       "assert apply(swap, (1, 2)) == (2, 1)"],
             "entry_point": "swap"}
    code = "def swap(pair):\n    a, b = pair\n    return b, a\ndef apply(f, x):\n    return f(x)\n"
    assert verify_code(code, tests) == 1.0


def test_files_inside_the_sandbox_dir_are_fine():
    code = "import os\nos.mkdir('d')\nopen('d/a.txt', 'w').write('hi')\nos.rename('d/a.txt', 'd/b.txt')\nprint(open('d/b.txt').read())\n"
    result = run_untrusted(code)
    assert (result.status, result.stdout) == ("ok", "hi\n"), result.stderr
    assert_host_intact(result)


def test_output_is_bounded():
    result = run_untrusted("import sys\nsys.stdout.write('y' * 2_000_000)\n")
    assert result.status == "ok" and len(result.stdout) < 70 * 1024 and "truncated" in result.stdout
    assert_host_intact(result)


# ---------------------------------------------------------------- refusing to run weaker

def test_missing_bubblewrap_refuses_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxError, match="bubblewrap"):
        run_untrusted("print(1)")


def test_a_sandbox_bubblewrap_cannot_build_is_an_error_not_a_weaker_run(tmp_path):
    # The same path reports namespaces the kernel refuses: bwrap exits before starting the program.
    with pytest.raises(SandboxError, match="could not set up"):
        sandbox.spawn(tmp_path / "missing" / "script.py").wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop applies when running as root")
def test_root_without_setpriv_refuses_to_run(monkeypatch, tmp_path):
    (tmp_path / "bwrap").symlink_to(shutil.which("bwrap"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxError, match="setpriv"):
        run_untrusted("print(1)")


_AS_USER = """
import json, sys
from olmo3_core.problems.sandbox import run_untrusted
out = {}
for name, code in json.loads(sys.argv[1]).items():
    result = run_untrusted(code)
    out[name] = [result.status, result.stdout]
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the test as an unprivileged user")
def test_unprivileged_launcher_uses_a_user_namespace(tmp_path):
    # Not root: bwrap runs in an unprivileged user namespace; the same kernel walls hold. The system
    # interpreter is used because the test's own may sit under a folder only root can enter.
    python = "/usr/bin/python3"
    import pyseccomp
    paths = [str(Path(olmo3_core.__file__).parents[1]), str(Path(pyseccomp.__file__).parent)]
    if not os.path.exists(python) or any(not (os.stat(p).st_mode & 0o005) for p in paths):
        pytest.skip("no system python3, or the project is not readable by other users")
    target = f"/tmp/escape-{uuid.uuid4().hex}"
    programs = {"ok": "import os\nprint(os.getcwd())", "fork": "import os\nos.fork()",
                "write": f"open({target!r}, 'w').write('x')"}
    run = subprocess.run([python, "-c", _AS_USER, json.dumps(programs)], capture_output=True, text=True, timeout=120,
                         user=65534, group=65534, extra_groups=[], cwd="/",
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(paths)})
    if run.returncode != 0 and "could not set up" in run.stderr:
        pytest.skip(f"unprivileged user namespaces are off here: {run.stderr[-300:]}")
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["ok"] == ["ok", WORKDIR + "\n"]
    assert out["fork"][0] == "forbidden" and out["write"][0] == "error"
    assert not os.path.exists(target)


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop applies when running as root")
def test_as_root_the_program_runs_under_its_own_unprivileged_uid():
    code = ("import ctypes, json, os, resource\n"
            "print(json.dumps([os.getuid(), os.getgid(), os.getgroups(), resource.getrlimit(resource.RLIMIT_NPROC),\n"
            "                  ctypes.CDLL(None).prctl(39, 0, 0, 0, 0)]))\n")  # PR_GET_NO_NEW_PRIVS
    result = run_untrusted(code)
    assert result.status == "ok", result.stderr
    uid, gid, groups, nproc, no_new_privs = json.loads(result.stdout)
    assert uid in sandbox.sandbox_uids(os.getpid()) and gid == uid and groups == []
    assert nproc == [1, 1] and no_new_privs == 1
    assert_host_intact(result)
