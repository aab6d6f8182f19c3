"""Run untrusted, model-written Python in a confined child process (Linux only).

Layers, each enforced for real, so a hole in one is caught by another:

- a separate process in its own session (`start_new_session`), started as `python -I -S -B` with a
  scrubbed environment (PATH/LANG/HOME only), so no credential of the parent reaches it;
- a private temporary directory as cwd, removed after every run, timeouts included;
- `resource` limits set in `preexec_fn`: CPU seconds, address space, file size, no core dumps,
  few file descriptors and RLIMIT_NPROC=0 (per-user and not enforced for root, hence the next layers);
- a bootstrap prelude, run before the program, that drops every capability, sets no_new_privs and
  installs a seccomp filter killing the process on fork/clone/exec/kill/ptrace/unshare/mount and
  refusing socket/sigaction (best effort: a warning on stderr where the kernel refuses);
- an audit hook (`sys.addaudithook`), installed by the same prelude, that kills the process with
  exit code 86 and a marker on stderr on process creation, signals, sockets, ctypes, resource
  changes, writes/removes/renames outside the temp dir and reads outside it and the standard
  library (so `/proc/<parent>/environ` and dot-files stay unreadable). Frame and garbage-collector
  introspection raise instead of killing (typing, enum and logging probe frames and cope), so a
  program cannot read its caller's locals - the code verifier keeps its result nonce there.
- a wall-clock timeout that SIGKILLs the whole process group.

Audit hooks alone are not a security boundary (CPython says so); with seccomp and the rlimits they
are one layer of several. An audited path that is not `str`/`bytes`/a file descriptor is refused:
a custom PathLike's `__fspath__` could answer the check and the real call differently (pathlib is
fine, it hands the os functions strings).
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO

STATUSES = ("ok", "error", "timeout", "cpu_limit", "memory_limit", "file_size_limit", "forbidden")
FORBIDDEN_EXIT, MEMORY_EXIT, FILE_SIZE_EXIT = 86, 87, 88
MARKER = "olmo3-sandbox:"
OUTPUT_LIMIT = 64 * 1024

# The prelude runs in the child as `python -c`; it gets this module's constants prepended.
_BOOTSTRAP = (f"MARKER, FORBIDDEN_EXIT, MEMORY_EXIT, FILE_SIZE_EXIT = "
              f"{MARKER!r}, {FORBIDDEN_EXIT}, {MEMORY_EXIT}, {FILE_SIZE_EXIT}\n") + r'''
import builtins, posix, sys

# (audit arch, syscalls that kill the process, syscalls that fail with EPERM) per machine. Killed:
# clone/fork/vfork/clone3, execve(at), kill/tkill/tgkill/pidfd_send_signal, ptrace, process_vm_*,
# mknod(at) (mkfifo is not audited), chroot, mount, unshare, setns, io_uring_setup. EPERM: rt_sigaction
# (no Python signal handler can be installed, so none can see a frame), socket, socketpair.
SYSCALLS = {
    "x86_64": (0xC000003E, (56, 57, 58, 59, 62, 101, 133, 161, 165, 200, 234, 259, 272, 308, 310, 311, 322, 424, 425, 435),
               (13, 41, 53)),
    "aarch64": (0xC00000B7, (33, 40, 51, 97, 117, 129, 130, 131, 220, 221, 268, 270, 271, 281, 424, 425, 435),
                (134, 198, 199)),
}
KILL_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.kill", "os.killpg",
    "os.chdir", "os.symlink", "os.link", "signal.pthread_kill", "subprocess.Popen", "pty.spawn",
    "resource.setrlimit", "resource.prlimit", "sys.remote_exec",
})
SOFT_EVENTS = frozenset({
    "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
})
# Extension modules that spawn processes, poke memory, or open files in C where the hook cannot see.
DENIED_MODULES = frozenset({"_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_xxinterpchannels",
                            "_interpreters", "_testcapi", "_testinternalcapi", "_sqlite3", "_dbm", "_gdbm",
                            "readline", "spwd", "_ssl", "_multiprocessing", "_posixshmem"})
FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
PATH_EVENTS = {"os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.truncate": (0,),
               "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,), "os.setxattr": (0,),
               "os.removexattr": (0,), "shutil.rmtree": (0,)}
READ_FILES = ("/dev/null", "/dev/urandom", "/dev/zero")


def _confine():
    """Kernel backstop under the audit hook: no capabilities, and no new processes, signals to
    others, tracing or sockets, whatever Python trick the program finds (raises OSError if refused)."""
    import ctypes, struct
    libc = ctypes.CDLL(None, use_errno=True)

    def check(rc):
        if rc != 0:
            raise OSError(ctypes.get_errno(), "confinement call failed")

    class CapHeader(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    check(libc.capset(ctypes.byref(CapHeader(0x20080522, 0)), (ctypes.c_uint32 * 6)()))
    check(libc.prctl(38, 1, 0, 0, 0))  # PR_SET_NO_NEW_PRIVS
    machine = posix.uname().machine
    if machine not in SYSCALLS:
        raise OSError(0, "no seccomp syscall table for " + machine)
    arch, kill_nrs, eperm_nrs = SYSCALLS[machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, kill, eperm = 0x7FFF0000, 0x80000000, 0x00050001
    checks = [(jeq, nr, 1) for nr in kill_nrs] + [(jeq, nr, 2) for nr in eperm_nrs]
    if machine == "x86_64":
        checks.insert(0, (jge, 0x40000000, 1))  # x32-ABI syscall numbers
    # load arch, kill on a foreign one; load nr, jump to kill/eperm on a match; else allow.
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    prog += [(op, len(checks) - i - 1 + target, 0, k) for i, (op, k, target) in enumerate(checks)]
    prog += [(ret, 0, 0, allow), (ret, 0, 0, kill), (ret, 0, 0, eperm)]
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    check(libc.prctl(22, 2, ctypes.byref(Prog(len(prog), ctypes.addressof(buf))), 0, 0))  # SECCOMP_MODE_FILTER


def _install_hook(workdir):
    """Audit hook: kill on anything dangerous, raise on introspection. Everything it uses is bound
    here, before the program runs, so monkeypatching builtins or os cannot change its verdicts."""
    write, exit_, lstat, readlink = posix.write, posix._exit, posix.lstat, posix.readlink
    str_, bytes_, int_, type_, len_, range_ = str, bytes, int, type, len, range
    errors = (OSError, ValueError)
    ValueError_, AttributeError_, RuntimeError_ = ValueError, AttributeError, RuntimeError
    kill_events, soft_events, denied_modules = KILL_EVENTS, SOFT_EVENTS, DENIED_MODULES
    frame_attrs, path_events, read_files, marker = FRAME_ATTRS, PATH_EVENTS, READ_FILES, MARKER
    forbidden_exit = FORBIDDEN_EXIT
    write_flags = posix.O_WRONLY | posix.O_RDWR | posix.O_CREAT | posix.O_TRUNC | posix.O_APPEND

    def deny(event, detail):
        write(2, ("\n%s forbidden: %s %s\n" % (marker, event, detail)).encode("utf-8", "replace"))
        exit_(forbidden_exit)

    def resolve(path):
        """Absolute, symlink-free spelling of `path` (None if not a plain path or a link loop)."""
        if type_(path) is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        if type_(path) is not str_:
            return None
        pending = (path if path.startswith("/") else workdir + "/" + path).split("/")[::-1]
        parts = []
        for _ in range_(4096):
            if not pending:
                return "/" + "/".join(parts)
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                parts = parts[:-1]
                continue
            here = "/" + "/".join(parts + [name])
            try:
                mode = lstat(here).st_mode
            except errors:
                mode = 0
            if mode & 0o170000 == 0o120000:
                target = readlink(here)
                parts = [] if target.startswith("/") else parts
                pending.extend(target.split("/")[::-1])
            else:
                parts.append(name)
        return None

    def inside(real, roots):
        for root in roots:
            if real == root or real.startswith(root + "/"):
                return True
        return False

    roots = [workdir]
    read_roots = [r for r in (resolve(p) for p in sys.path if type_(p) is str_ and p) if r]

    def is_dir(real):
        try:
            return lstat(real).st_mode & 0o170000 == 0o040000
        except errors:
            return False

    def check_open(path, flags):
        if type_(path) is int_:
            return
        real = resolve(path)
        if real is None:
            deny("open", "non-plain or unresolvable path")
        if inside(real, roots):
            return
        if type_(flags) is int_ and flags & write_flags:
            if real != "/dev/null":
                deny("open", real + " (write outside the sandbox dir)")
        elif real not in read_files and (not inside(real, read_roots) or is_dir(real)):
            deny("open", real + " (read outside the sandbox dir and the standard library)")

    def hook(event, args):
        if type_(event) is not str_:
            return
        if event == "sys._getframe":
            raise ValueError_("frame introspection is disabled in the sandbox")
        if event == "object.__getattr__":
            if len_(args) > 1 and type_(args[1]) is str_ and args[1] in frame_attrs:
                raise AttributeError_("frame introspection is disabled in the sandbox")
            return
        if event in soft_events:
            raise RuntimeError_(event + " is disabled in the sandbox")
        if event in kill_events or event.startswith(("socket.", "ctypes.")):
            deny(event, "")
        if event == "import" and args and (type_(args[0]) is not str_ or args[0] in denied_modules):
            deny(event, args[0] if type_(args[0]) is str_ else "non-plain module name")
        if event == "open":
            check_open(args[0], args[2] if len_(args) > 2 else 0)
        for i in path_events.get(event, ()):
            if i < len_(args) and type_(args[i]) is not int_:
                real = resolve(args[i])
                if real is None or not inside(real, roots):
                    deny(event, (real or "non-plain path") + " (outside the sandbox dir)")

    sys.addaudithook(hook)


def _exit_with(code, what):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    posix.write(2, ("\n%s %s\n" % (MARKER, what)).encode())
    posix._exit(code)


def _main():
    workdir = sys.argv[1]
    with open(workdir + "/main.py", "rb") as fh:
        source = fh.read()
    try:
        _confine()
    except Exception as exc:
        posix.write(2, ("%s warning: kernel confinement unavailable (%s)\n" % (MARKER, exc)).encode())
    for name in [n for n in sys.modules if n.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[name]
    _install_hook(workdir)
    module = type(sys)("__main__")
    module.__file__, module.__builtins__ = "main.py", builtins
    sys.modules["__main__"], sys.argv = module, ["main.py"]
    try:
        exec(compile(source, "main.py", "exec"), module.__dict__)
    except MemoryError:
        _exit_with(MEMORY_EXIT, "memory limit: MemoryError")
    except OSError as exc:
        if exc.errno == 27:  # EFBIG: Python ignores SIGXFSZ, so the write fails instead
            _exit_with(FILE_SIZE_EXIT, "file size limit: " + str(exc))
        raise


_main()
'''


class SandboxError(RuntimeError):
    """The sandbox itself could not run (a host problem, never the program's fault)."""


@dataclass(frozen=True)
class SandboxResult:
    status: str  # one of STATUSES
    reason: str
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


def _scrubbed_env(workdir: str) -> dict[str, str]:
    """Only what Python needs: nothing of the parent's environment (credentials) is passed on."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": workdir, "TMPDIR": workdir}


def _limit_child(cpu_s: int, memory_mb: int, file_size_mb: int) -> None:
    """preexec_fn: runs in the child between fork and exec."""
    unshare = getattr(os, "unshare", None)  # Python >= 3.12; seccomp refuses sockets anyway
    if unshare is not None:
        try:
            unshare(os.CLONE_NEWNET)
        except OSError:
            pass
    mib = 1024 * 1024
    for limit, value in ((resource.RLIMIT_CPU, (cpu_s, cpu_s + 1)), (resource.RLIMIT_AS, (memory_mb * mib,) * 2),
                         (resource.RLIMIT_FSIZE, (file_size_mb * mib,) * 2), (resource.RLIMIT_CORE, (0, 0)),
                         (resource.RLIMIT_NOFILE, (64, 64)), (resource.RLIMIT_NPROC, (0, 0))):
        resource.setrlimit(limit, value)


def _read_bounded(fh: IO[bytes], limit: int = OUTPUT_LIMIT) -> str:
    """Head and tail of a captured stream, so a flood of output cannot exhaust the parent."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    if size <= limit:
        return fh.read().decode("utf-8", "replace")
    head = fh.read(limit // 2)
    fh.seek(size - limit // 2)
    tail = fh.read()
    return (head + f"\n...[{size - len(head) - len(tail)} bytes truncated]...\n".encode() + tail).decode("utf-8", "replace")


def _wait(pid: int, timeout_s: float) -> tuple[int, float, bool]:
    """Wait for the child; on timeout SIGKILL its process group. The group is killed while the
    leader is still an unreaped zombie, so its id cannot have been reused. Returns (wait status,
    CPU seconds used, timed out)."""
    deadline, pause, timed_out = time.monotonic() + timeout_s, 0.001, False
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, wait_status, usage = os.wait4(pid, 0)
    return wait_status, usage.ru_utime + usage.ru_stime, timed_out


def _marker_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(MARKER) and "warning:" not in line]
    return lines[-1][len(MARKER):].strip() if lines else ""


def _classify(returncode: int, timed_out: bool, cpu_used: float, cpu_s: int, stderr: str) -> tuple[str, str]:
    """Map how the child ended to (status, reason)."""
    if timed_out:
        return "timeout", "wall-clock timeout: process group killed"
    if returncode == -signal.SIGXCPU or (returncode == -signal.SIGKILL and cpu_used >= cpu_s - 0.05):
        return "cpu_limit", f"CPU limit of {cpu_s}s exceeded ({cpu_used:.2f}s used)"
    if returncode == -signal.SIGSYS:
        return "forbidden", "blocked system call (seccomp)"
    if returncode == FORBIDDEN_EXIT and _marker_line(stderr).startswith("forbidden"):
        return "forbidden", _marker_line(stderr)
    if returncode == MEMORY_EXIT and _marker_line(stderr).startswith("memory"):
        return "memory_limit", _marker_line(stderr)
    if returncode == FILE_SIZE_EXIT or returncode == -signal.SIGXFSZ:
        return "file_size_limit", _marker_line(stderr) or "file size limit exceeded"
    if returncode < 0:
        return "error", f"killed by signal {-returncode} ({signal.strsignal(-returncode)})"
    if returncode != 0:
        last = stderr.strip().splitlines()[-1:] or [""]
        return "error", f"exit status {returncode}: {last[0][:200]}"
    return "ok", "exited normally"


def _force_remove(func, path: str, _exc) -> None:
    """rmtree error handler: the program may have left entries without permissions."""
    if not os.path.lexists(path):
        return
    os.chmod(os.path.dirname(path), stat.S_IRWXU)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(path, onerror=_force_remove)
    else:
        os.unlink(path)


def run_untrusted(code: str, *, stdin: str | None = None, timeout_s: float = 5.0, cpu_s: int = 5,
                  memory_mb: int = 512, file_size_mb: int = 8) -> SandboxResult:
    """Run `code` as a confined Python program and report how it ended (see the module doc).
    Raises SandboxError only when the sandbox itself cannot start."""
    if not sys.platform.startswith("linux"):
        raise SandboxError("the sandbox needs Linux (rlimits, seccomp, process groups)")
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="olmo3-sandbox-"))
    start = time.monotonic()
    try:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8", errors="replace") as fh:
            fh.write(code)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp:
            inp.write((stdin or "").encode("utf-8"))
            inp.seek(0)
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, workdir],
                    stdin=inp, stdout=out, stderr=err, cwd=workdir, env=_scrubbed_env(workdir),
                    start_new_session=True, close_fds=True,
                    preexec_fn=lambda: _limit_child(cpu_s, memory_mb, file_size_mb),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise SandboxError(f"could not start the sandboxed interpreter: {exc}") from exc
            wait_status, cpu_used, timed_out = _wait(proc.pid, timeout_s)
            proc.returncode = os.waitstatus_to_exitcode(wait_status)
            stdout, stderr = _read_bounded(out), _read_bounded(err)
        status, reason = _classify(proc.returncode, timed_out, cpu_used, cpu_s, stderr)
        return SandboxResult(status, reason, proc.returncode, stdout, stderr, time.monotonic() - start)
    finally:
        shutil.rmtree(workdir, onerror=_force_remove)
