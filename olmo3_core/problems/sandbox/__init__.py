"""Run untrusted, model-written Python in a kernel-confined child process (Linux only).

The boundary is the kernel, set up by the launcher *before* the untrusted interpreter starts, so
nothing a program does inside its interpreter (ctypes, raw memory writes, clearing audit hooks)
lifts it. There is no in-process hook to switch off:

- bubblewrap (`bwrap`, Debian package `bubblewrap`) gives the program private mount, PID, network,
  IPC, UTS and cgroup namespaces. Its file system holds read-only binds of the interpreter, its
  standard library and the shared libraries, five device nodes, the trusted script it runs and its
  data, and a size-limited tmpfs as working directory (the total disk quota, gone with the
  namespace). There is no /proc, /etc, /tmp, /home, project source or site-packages to list, read
  or write (a folder on the interpreter's path, such as /root/.pyenv, holds just the interpreter). `--die-with-parent` and the PID namespace take every process down with the sandbox.
- a seccomp filter compiled with libseccomp (PyPI `pyseccomp`) and loaded by bwrap right before it
  executes the interpreter kills the process on process and thread creation (fork, vfork, clone,
  clone3), namespace and mount calls, ptrace and cross-process memory access, mknod, and the
  bpf/perf/userfaultfd/io_uring/keyring interfaces; socket creation fails with EPERM (setpriv probes
  a socket, and the network namespace has no interfaces anyway). libseccomp's architecture check
  kills x32/i386 system calls. execve stays allowed because bwrap must exec the interpreter after
  loading the filter; an exec only replaces the confined process (same namespaces, filter, uid and
  limits), and the file system holds no programs besides the interpreter and setpriv.
- as root, the program runs under a per-sandbox unprivileged uid/gid (`sandbox_uids`), no
  supplementary groups, empty capability sets and no_new_privs (util-linux `setpriv`), so file
  permissions and RLIMIT_NPROC=1 apply. Not as root, bwrap runs in an unprivileged user namespace as
  the caller (already unprivileged) and RLIMIT_NPROC is not set, since it would count the caller's
  other processes; the seccomp filter still kills every fork.
- rlimits set before bwrap starts and inherited by the program: CPU seconds, address space, file
  size, no core dumps, 64 file descriptors; a scrubbed environment (PATH/LANG/HOME only); a
  wall-clock timeout that kills the whole sandbox.

When a mechanism is missing (no bwrap, no libseccomp, no setpriv as root, namespaces refused by the
kernel) the launch raises SandboxError: the sandbox never runs weaker than described here.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from olmo3_core.problems.sandbox import child

STATUSES = ("ok", "error", "timeout", "cpu_limit", "memory_limit", "file_size_limit", "disk_limit", "forbidden")
MARKER = child.MARKER
OUTPUT_LIMIT = 64 * 1024
WORKDIR = "/sandbox"  # the program's cwd and only writable place, inside its mount namespace
SCRIPTS_DIR, DATA_DIR = "/olmo3/scripts", "/olmo3/data"
_UID_BASE, _UIDS_PER_PROCESS = 1 << 30, 256
_uid_counter = itertools.count()
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_KILLED_SYSCALLS = (
    "fork", "vfork", "clone", "clone3",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsmount", "fsconfig", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "mknod", "mknodat",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key",
)
_REFUSED_SYSCALLS = ("socket", "socketpair")


class SandboxError(RuntimeError):
    """The sandbox itself could not run (a host problem, never the program's fault)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 5.0
    cpu_s: int = 5
    memory_mb: int = 512
    file_size_mb: int = 8
    disk_mb: int = 16


@dataclass(frozen=True)
class SandboxResult:
    status: str  # one of STATUSES
    reason: str
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


def sandbox_uids(pid: int) -> range:
    """The uids the sandboxes started by process `pid` run under (as root). A pid is unique among
    live processes and every sandbox dies with its launcher, so no two live sandboxes share a uid
    unless one process runs more than 256 at once."""
    start = _UID_BASE + pid * _UIDS_PER_PROCESS
    return range(start, start + _UIDS_PER_PROCESS)


def _seccomp_filter() -> int:
    """A memfd holding the compiled BPF program (bwrap reads it from the fd)."""
    try:
        import pyseccomp
        seccomp = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in _KILLED_SYSCALLS:
            seccomp.add_rule(pyseccomp.KILL_PROCESS, name)
        for name in _REFUSED_SYSCALLS:
            seccomp.add_rule(pyseccomp.ERRNO(1), name)  # EPERM
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        raise SandboxError(f"cannot build the seccomp filter (pyseccomp and libseccomp2 needed): {exc}") from exc
    fd = os.memfd_create("olmo3-seccomp")
    with os.fdopen(os.dup(fd), "wb") as fh:
        seccomp.export_bpf(fh)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name)
    with os.fdopen(os.dup(fd), "wb") as fh:
        fh.write(data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@functools.cache
def _interpreter_binds() -> tuple[str, tuple[str, ...]]:
    """(the real interpreter binary, the host paths it needs besides /usr/lib*), both resolved."""
    exe = os.path.realpath(sys.executable)
    # The base installation's standard library, never a virtualenv's site-packages.
    paths = {exe, os.path.realpath(os.path.dirname(os.__file__)),
             os.path.realpath(sysconfig.get_config_var("DESTSHARED") or os.path.dirname(os.__file__))}
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and library:
        paths.update(os.path.realpath(os.path.join(libdir, name))
                     for name in os.listdir(libdir) if name.startswith(library.split(".so")[0] + ".so"))
    return exe, tuple(sorted(p for p in paths if os.path.exists(p)))


def _mount_args(script_dir: str, data_fds: Mapping[str, int], disk_mb: int, programs: Sequence[str]) -> list[str]:
    """bwrap arguments for the sandbox's file system (see the module doc); `programs` are host
    executables bound at their own path."""
    binds = [p for p in ("/usr/lib", "/usr/lib64") if os.path.isdir(p) and not os.path.islink(p)]
    links = []
    for top in ("/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(top):
            links.append((os.readlink(top), top))
        elif os.path.isdir(top):
            binds.append(top)
    _, interpreter = _interpreter_binds()
    for path in sorted((*interpreter, *programs), key=len):  # parents first, so nested paths come along
        if not any(path == b or path.startswith(b + "/") for b in binds):
            binds.append(path)
    destinations = binds + list(_DEVICES) + [SCRIPTS_DIR, DATA_DIR + "/x", WORKDIR]
    parents = sorted({str(parent) for d in destinations for parent in Path(d).parents if str(parent) != "/"},
                     key=lambda p: (p.count("/"), p))
    args = []
    for parent in parents:  # created 0755 first: bwrap would create missing parents as 0700
        args += ["--perms", "0755", "--dir", parent]
    for target, link in links:
        args += ["--symlink", target, link]
    for path in sorted(binds, key=len):
        args += ["--ro-bind", path, path]
    for device in _DEVICES:
        args += ["--dev-bind", device, device]
    args += ["--ro-bind", script_dir, SCRIPTS_DIR]
    for name, fd in data_fds.items():
        args += ["--perms", "0444", "--ro-bind-data", str(fd), f"{DATA_DIR}/{name}"]
    args += ["--perms", "01777", "--size", str(disk_mb * 1024 * 1024), "--tmpfs", WORKDIR, "--chdir", WORKDIR,
             "--remount-ro", "/"]
    return args


def _limit_child(limits: Limits, as_root: bool) -> None:
    """preexec_fn: runs in the child between fork and exec of bwrap; the program inherits them.
    RLIMIT_NPROC binds only once setpriv has switched to the sandbox uid (root is exempt)."""
    mib = 1024 * 1024
    for limit, value in ((resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1)),
                         (resource.RLIMIT_AS, (limits.memory_mb * mib,) * 2),
                         (resource.RLIMIT_FSIZE, (limits.file_size_mb * mib,) * 2), (resource.RLIMIT_CORE, (0, 0)),
                         (resource.RLIMIT_NOFILE, (64, 64))):
        resource.setrlimit(limit, value)
    if as_root:
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))


def _read_bounded(fd: int, limit: int = OUTPUT_LIMIT) -> str:
    """Head and tail of a captured stream, so a flood of output cannot exhaust the parent."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size <= limit:
        return os.pread(fd, size, 0).decode("utf-8", "replace")
    head, tail = os.pread(fd, limit // 2, 0), os.pread(fd, limit // 2, size - limit // 2)
    return (head + f"\n...[{size - len(head) - len(tail)} bytes truncated]...\n".encode() + tail).decode("utf-8", "replace")


def _marker_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(MARKER)]
    return lines[-1][len(MARKER):].strip() if lines else ""


def _classify(returncode: int, timed_out: bool, cpu_s: int, stderr: str) -> tuple[str, str]:
    """Map how the program ended to (status, reason). bwrap reports a death by signal N as 128+N."""
    signum = returncode - 128 if returncode > 128 else 0
    if timed_out:
        return "timeout", "wall-clock timeout: sandbox killed"
    if signum == signal.SIGXCPU:  # the soft limit; the hard one (SIGKILL) is a second later
        return "cpu_limit", f"CPU limit of {cpu_s}s exceeded"
    if signum == signal.SIGSYS:
        return "forbidden", "blocked system call (seccomp)"
    marker = _marker_line(stderr)
    if returncode == child.MEMORY_EXIT and marker.startswith("memory"):
        return "memory_limit", marker
    if returncode == child.FILE_SIZE_EXIT or signum == signal.SIGXFSZ:
        return "file_size_limit", marker or "file size limit exceeded"
    if returncode == child.DISK_EXIT and marker.startswith("disk"):
        return "disk_limit", marker
    if signum:
        return "error", f"killed by signal {signum} ({signal.strsignal(signum)})"
    if returncode != 0:
        last = stderr.strip().splitlines()[-1:] or [""]
        return "error", f"exit status {returncode}: {last[0][:200]}"
    return "ok", "exited normally"


class Confined:
    """One running sandbox, started by `spawn`; `wait` collects it."""

    def __init__(self, proc: subprocess.Popen, out_fd: int, err_fd: int, status_fd: int, limits: Limits,
                 start: float):
        self.proc, self.limits, self.start = proc, limits, start
        self._out, self._err, self._status = out_fd, err_fd, status_fd

    def finished(self) -> bool:
        return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def _report(self) -> list[dict]:
        """bwrap's JSON status lines so far (child-pid once the namespace exists, exit-code at the end)."""
        text = _read_bounded(self._status)
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]

    def kill(self) -> None:
        """Kill the sandbox. bwrap's process inside the PID namespace (its init) goes first: its death
        takes the whole namespace down, and bwrap exits only once it is gone, so nothing outlives
        `wait`. bwrap reaps that init only right before exiting itself, so while bwrap is unreaped
        the init's pid cannot have been reused. bwrap's own process group follows, the same way."""
        if not self.finished():
            init = next((entry["child-pid"] for entry in self._report() if "child-pid" in entry), None)
            if init is not None:
                try:
                    os.kill(init, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + 2.0
                while not self.finished() and time.monotonic() < deadline:
                    time.sleep(0.002)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, deadline: float | None = None) -> SandboxResult:
        """Wait until the program ends or `deadline` (monotonic; default: start + timeout) passes."""
        deadline = self.start + self.limits.timeout_s if deadline is None else deadline
        pause, timed_out = 0.001, False
        while not self.finished():
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        self.kill()
        self.proc.wait()
        try:
            stdout, stderr = _read_bounded(self._out), _read_bounded(self._err)
            report = self._report()
        finally:
            for fd in (self._out, self._err, self._status):
                os.close(fd)
        returncode = next((e["exit-code"] for e in report if "exit-code" in e), None)
        if returncode is None and not timed_out:  # bwrap reports an exit code only for a program it started
            raise SandboxError(f"bubblewrap could not set up the sandbox: {stderr.strip()[-500:]}")
        returncode = self.proc.returncode if returncode is None else returncode
        status, reason = _classify(returncode, timed_out, self.limits.cpu_s, stderr)
        return SandboxResult(status, reason, returncode, stdout, stderr, time.monotonic() - self.start)


def spawn(script: Path, args: Sequence[str] = (), *, data: Mapping[str, bytes] | None = None, stdin: bytes = b"",
          pass_fds: Sequence[int] = (), limits: Limits = Limits()) -> Confined:
    """Start the trusted `script` (run by path: its folder is bound read-only at SCRIPTS_DIR) in a new
    sandbox with `args`; each `data` entry is a read-only file at DATA_DIR/<name>, and `pass_fds`
    stay open in it. Raises SandboxError when the sandbox cannot be set up as the module doc says."""
    if not sys.platform.startswith("linux"):
        raise SandboxError("the sandbox needs Linux (namespaces, seccomp, rlimits)")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError("bubblewrap (bwrap) is not installed; `apt-get install bubblewrap`")
    as_root = os.geteuid() == 0
    setpriv = shutil.which("setpriv")
    if as_root and setpriv is None:
        raise SandboxError("running as root needs util-linux `setpriv` to drop to an unprivileged uid")
    exe, _ = _interpreter_binds()
    start = time.monotonic()
    owned = [_seccomp_filter(), _memfd("olmo3-status"), _memfd("olmo3-stdin", stdin)]
    seccomp_fd, status_fd, stdin_fd = owned
    data_fds = {name: _memfd("olmo3-data", content) for name, content in (data or {}).items()}
    owned += data_fds.values()
    out_fd, err_fd = _memfd("olmo3-stdout"), _memfd("olmo3-stderr")
    argv = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session"]
    command = [exe, "-I", "-S", "-B", f"{SCRIPTS_DIR}/{script.name}", *args]
    if as_root:
        uid = sandbox_uids(os.getpid())[next(_uid_counter) % _UIDS_PER_PROCESS]
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        command = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                   "--bounding-set=-all", "--", *command]
    else:
        argv += ["--unshare-user"]
    argv += _mount_args(str(script.parent), data_fds, limits.disk_mb, [setpriv] if as_root else [])
    argv += ["--seccomp", str(seccomp_fd), "--json-status-fd", str(status_fd), *command]
    try:
        proc = subprocess.Popen(
            argv, stdin=stdin_fd, stdout=out_fd, stderr=err_fd, cwd="/", start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": WORKDIR, "TMPDIR": WORKDIR},
            pass_fds=(seccomp_fd, status_fd, *data_fds.values(), *pass_fds),
            preexec_fn=lambda: _limit_child(limits, as_root),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        for fd in owned + [out_fd, err_fd]:
            os.close(fd)
        raise SandboxError(f"could not start bubblewrap: {exc}") from exc
    for fd in owned:
        if fd != status_fd:
            os.close(fd)
    return Confined(proc, out_fd, err_fd, status_fd, limits, start)


def run_untrusted(code: str, *, stdin: str | None = None, timeout_s: float = 5.0, cpu_s: int = 5,
                  memory_mb: int = 512, file_size_mb: int = 8, disk_mb: int = 16) -> SandboxResult:
    """Run `code` as a confined Python program (see the module doc) and report how it ended.
    Raises SandboxError only when the sandbox itself cannot start."""
    limits = Limits(timeout_s, cpu_s, memory_mb, file_size_mb, disk_mb)
    program = f"{DATA_DIR}/main.py"
    confined = spawn(Path(child.__file__), [program], data={"main.py": code.encode("utf-8", "replace")},
                     stdin=(stdin or "").encode("utf-8"), limits=limits)
    return confined.wait()
