"""The sandboxed side of `run_untrusted`: run inside the sandbox as `python -I -S -B child.py PROGRAM`.

It confines nothing (the kernel does that, set up by the launcher before this interpreter started);
it only runs the untrusted PROGRAM as `__main__` and turns the resource errors Python raises instead
of dying (MemoryError, EFBIG, ENOSPC) into distinct exit codes with a marker line on stderr, so the
parent can report *which* limit was hit. A program can fake these codes for its own run only.
Importing this module has no side effects (the parent imports it for the constants and its path).
"""
from __future__ import annotations

import builtins
import errno
import os
import sys

MARKER = "olmo3-sandbox:"
MEMORY_EXIT, FILE_SIZE_EXIT, DISK_EXIT = 87, 88, 89
_OS_ERROR_EXITS = {errno.EFBIG: (FILE_SIZE_EXIT, "file size limit"), errno.ENOSPC: (DISK_EXIT, "disk quota")}


def _exit_with(code: int, what: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a full disk or a closed stream must not hide the real reason
            pass
    os.write(2, f"\n{MARKER} {what}\n".encode())
    os._exit(code)


def run_program(path: str) -> None:
    """Execute the file at `path` as the `__main__` module."""
    with open(path, "rb") as fh:
        source = fh.read()
    module = type(sys)("__main__")
    module.__file__ = path
    module.__builtins__ = builtins
    sys.modules["__main__"], sys.argv = module, [path]
    try:
        exec(compile(source, path, "exec"), module.__dict__)
    except MemoryError:
        _exit_with(MEMORY_EXIT, "memory limit: MemoryError")
    except OSError as exc:
        if exc.errno in _OS_ERROR_EXITS:  # Python ignores SIGXFSZ, so the write fails instead
            code, what = _OS_ERROR_EXITS[exc.errno]
            _exit_with(code, f"{what}: {exc}")
        raise


if __name__ == "__main__":
    run_program(sys.argv[1])
