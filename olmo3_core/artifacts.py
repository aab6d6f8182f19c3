"""Content-addressed artifacts on any fsspec filesystem (local disk, s3://, ...).

An artifact lives at `{root}/{kind}/{fingerprint}/`. Its `artifact.json` manifest is written last
(local: temp file + rename; object stores: one PUT), so a reader that finds a manifest finds a
complete artifact, and one that finds none treats whatever is there as work in progress.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)
T = TypeVar("T")

MANIFEST = "artifact.json"
WORK_DIR = "work"  # checkpoints and logs of a running stage; never part of the finished artifact


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def list_files(root: Path) -> dict[str, dict[str, Any]]:
    """Every file under `root` except the manifest and the work dir, with sha256 and size."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != MANIFEST and not rel.startswith(WORK_DIR + "/"):
            files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def with_retries(fn: Callable[..., T], *args: Any, attempts: int = 4, base_delay_s: float = 0.5) -> T:
    """Retry transient storage errors (connection drops, timeouts, 5xx surfaced as OSError) with
    exponential backoff; a missing file or a permission error is an answer, not a hiccup."""
    for attempt in range(attempts):
        try:
            return fn(*args)
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except (ConnectionError, TimeoutError, OSError) as exc:
            if attempt == attempts - 1:
                raise
            log.warning("storage error (%s), retry %d/%d", exc, attempt + 1, attempts - 1)
            time.sleep(base_delay_s * 2**attempt)
    raise AssertionError("unreachable")


class ArtifactCorrupt(RuntimeError):
    """A file of a complete artifact does not match the hash its manifest recorded."""


class ArtifactStore:
    def __init__(self, root: str, storage_options: dict[str, Any] | None = None, cache_dir: Path | None = None):
        self.root = root.rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root, **(storage_options or {}))
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.cache_dir = cache_dir

    def uri(self, kind: str, fingerprint: str) -> str:
        return f"{self.root}/{kind}/{fingerprint}"

    def _path(self, kind: str, fingerprint: str, *parts: str) -> str:
        return "/".join([self._root_path, kind, fingerprint, *parts])

    def load_manifest(self, kind: str, fingerprint: str) -> dict[str, Any] | None:
        """The manifest if the artifact is complete, else None (missing or half-written)."""
        try:
            manifest = json.loads(with_retries(self.fs.cat_file, self._path(kind, fingerprint, MANIFEST)))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return manifest if manifest.get("fingerprint") == fingerprint else None

    def staging_dir(self, kind: str, fingerprint: str) -> Path:
        """Where a stage writes: the artifact dir itself on local disk, a local cache dir otherwise."""
        if self.is_local:
            path = Path(self._path(kind, fingerprint))
        else:
            path = self._require_cache() / "staging" / kind / fingerprint
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _require_cache(self) -> Path:
        if self.cache_dir is None:
            raise ValueError("a remote artifact store needs a local cache_dir")
        return self.cache_dir

    def publish(self, kind: str, fingerprint: str, staging: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """Record file hashes, upload (remote stores), then write the manifest last."""
        manifest = {**manifest, "files": list_files(staging), "uri": self.uri(kind, fingerprint)}
        if not self.is_local:
            for rel in manifest["files"]:
                with_retries(self.fs.put_file, str(staging / rel), self._path(kind, fingerprint, rel))
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        if self.is_local:
            tmp = staging / f".{MANIFEST}.{os.getpid()}.tmp"
            tmp.write_text(body)
            os.replace(tmp, staging / MANIFEST)
            shutil.rmtree(staging / WORK_DIR, ignore_errors=True)
        else:
            with_retries(self.fs.pipe_file, self._path(kind, fingerprint, MANIFEST), body.encode())
            shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def materialize(self, manifest: dict[str, Any], verify: bool = True) -> Path:
        """A local, hash-verified copy of a complete artifact (the artifact dir itself when local)."""
        kind, fingerprint = manifest["kind"], manifest["fingerprint"]
        if self.is_local:
            local = Path(self._path(kind, fingerprint))
        else:
            local = self._require_cache() / "artifacts" / kind / fingerprint
            for rel, meta in manifest["files"].items():
                target = local / rel
                if not (target.exists() and target.stat().st_size == meta["bytes"]):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with_retries(self.fs.get_file, self._path(kind, fingerprint, rel), str(target))
        if verify:
            self.verify(local, manifest["files"])
        return local

    @staticmethod
    def verify(local: Path, files: dict[str, dict[str, Any]]) -> None:
        for rel, meta in files.items():
            path = local / rel
            if not path.exists():
                raise ArtifactCorrupt(f"{path} is missing from a complete artifact")
            if sha256_file(path) != meta["sha256"]:
                raise ArtifactCorrupt(f"{path} does not match its manifest hash")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
