"""Content-addressed artifacts on any fsspec filesystem (local disk, s3://, ...).

An artifact lives at `{root}/{kind}/{fingerprint}/`. Its `artifact.json` manifest is written last
(local: temp file + rename; object stores: one PUT), so a reader that finds a manifest finds a
complete artifact, and one that finds none treats whatever is there as work in progress. A complete
artifact is reused only after its files check out against the manifest (`check`); one that does not
is moved aside (`quarantine`) and rebuilt from an empty directory.

References between artifacts are stored relative to the storage root (`{kind}/{fingerprint}`), so a
copied or moved store (a project home, a bucket prefix) still resolves; readers get absolute URIs.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from olmo3_core.inputs import DigestCache, default_cache

log = logging.getLogger(__name__)
T = TypeVar("T")

MANIFEST = "artifact.json"
WORK_DIR = "work"  # checkpoints and logs of a running stage; never part of the finished artifact


REQUIRED_KEYS = ("stage", "kind", "fingerprint", "files", "config", "upstream")


def list_files(root: Path, cache: DigestCache) -> dict[str, dict[str, Any]]:
    """Every file under `root` except the manifest and the work dir, with sha256 and size."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != MANIFEST and not rel.startswith(WORK_DIR + "/"):
            files[rel] = {"sha256": cache.sha256(path), "bytes": path.stat().st_size}
    return files


class InvalidManifest(ValueError):
    """An artifact.json that is not a manifest this code can read; the message names the file."""


def parse_manifest(text: str | bytes, where: str) -> dict[str, Any]:
    """A manifest's JSON, checked for the keys every reader relies on, with absolute URIs.

    `where` is the manifest's own location (`{root}/{kind}/{fingerprint}/artifact.json`): references
    stored relative to the root are resolved against it."""
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidManifest(f"{where}: not valid JSON ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise InvalidManifest(f"{where}: not an artifact manifest (missing {missing})")
    root = where.rstrip("/").rsplit("/", 3)[0]
    manifest["uri"] = f"{root}/{manifest['kind']}/{manifest['fingerprint']}"
    manifest["upstream"] = [{**u, "uri": f"{root}/{u['kind']}/{u['fingerprint']}"} for u in manifest["upstream"]]
    return manifest


def _stored_form(manifest: dict[str, Any]) -> dict[str, Any]:
    """What goes on disk: references relative to the storage root."""
    relative = lambda m: f"{m['kind']}/{m['fingerprint']}"  # noqa: E731
    return {**manifest, "uri": relative(manifest), "upstream": [{**u, "uri": relative(u)} for u in manifest["upstream"]]}


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
    def __init__(self, root: str, storage_options: dict[str, Any] | None = None, cache_dir: Path | None = None,
                 digests: DigestCache | None = None):
        self.root = root.rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root, **(storage_options or {}))
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:
            self.root = self._root_path = os.path.abspath(self._root_path)
        self.cache_dir = cache_dir
        self.digests = digests or default_cache()

    def uri(self, kind: str, fingerprint: str) -> str:
        return f"{self.root}/{kind}/{fingerprint}"

    def _path(self, kind: str, fingerprint: str, *parts: str) -> str:
        return "/".join([self._root_path, kind, fingerprint, *parts])

    def load_manifest(self, kind: str, fingerprint: str) -> dict[str, Any] | None:
        """The manifest if the artifact is complete, else None. A manifest that exists but cannot be read
        raises `InvalidManifest` naming it (manifests are written whole, so it was damaged)."""
        try:
            text = with_retries(self.fs.cat_file, self._path(kind, fingerprint, MANIFEST))
        except FileNotFoundError:
            return None
        manifest = parse_manifest(text, f"{self.uri(kind, fingerprint)}/{MANIFEST}")
        if manifest["fingerprint"] != fingerprint:
            raise InvalidManifest(f"{self.uri(kind, fingerprint)}/{MANIFEST} names fingerprint {manifest['fingerprint']}")
        return manifest

    def has(self, kind: str, fingerprint: str) -> bool:
        """A readable manifest is there (a damaged one is not: the runner quarantines and rebuilds it)."""
        try:
            return self.load_manifest(kind, fingerprint) is not None
        except InvalidManifest:
            return False

    def fingerprints(self, kind: str) -> list[str]:
        """Fingerprints of the complete artifacts of `kind` in this store."""
        return [p.rstrip("/").split("/")[-2] for p in self.fs.glob(self._path(kind, "*", MANIFEST))]

    def check(self, manifest: dict[str, Any], full: bool = False) -> str | None:
        """The first way the artifact's files differ from its manifest, or None if they match.

        Local: size, then sha256 (remembered per path, size and mtime, so an untouched file is not
        re-read; `full` re-reads every file). Object stores: every file present with its size."""
        kind, fingerprint = manifest["kind"], manifest["fingerprint"]
        if not self.is_local:
            found = {p: info.get("size") for p, info in self.fs.find(self._path(kind, fingerprint), detail=True).items()}
            for rel, meta in manifest["files"].items():
                if found.get(self._path(kind, fingerprint, rel)) != meta["bytes"]:
                    return f"{rel} is missing or has the wrong size"
            return None
        local = Path(self._path(kind, fingerprint))
        for rel, meta in manifest["files"].items():
            path = local / rel
            if not path.is_file():
                return f"{rel} is missing"
            if path.stat().st_size != meta["bytes"]:
                return f"{rel} has {path.stat().st_size} bytes, the manifest says {meta['bytes']}"
            if self.digests.sha256(path, rehash=full) != meta["sha256"]:
                return f"{rel} does not match its sha256"
        return None

    def quarantine(self, kind: str, fingerprint: str) -> str:
        """Move a damaged artifact aside (kept for inspection, never reused); returns where it went."""
        target = f"{self._root_path}/.quarantine/{kind}/{fingerprint}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path(kind, fingerprint), target)
        else:
            self.fs.mv(self._path(kind, fingerprint), target, recursive=True)
        return target

    def clean_staging(self, kind: str, fingerprint: str) -> Path:
        """The staging dir emptied of everything but `work/` (a resumable job's checkpoints), so a
        rebuild never adopts stray files into its manifest."""
        staging = self.staging_dir(kind, fingerprint)
        for entry in staging.iterdir():
            if entry.name != WORK_DIR:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        return staging

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
        manifest = {**manifest, "files": list_files(staging, self.digests), "uri": self.uri(kind, fingerprint)}
        if not self.is_local:
            for rel in manifest["files"]:
                with_retries(self.fs.put_file, str(staging / rel), self._path(kind, fingerprint, rel))
        body = json.dumps(_stored_form(manifest), indent=2, sort_keys=True, default=str)
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

    def verify(self, local: Path, files: dict[str, dict[str, Any]]) -> None:
        for rel, meta in files.items():
            path = local / rel
            if not path.exists():
                raise ArtifactCorrupt(f"{path} is missing from a complete artifact")
            if self.digests.sha256(path) != meta["sha256"]:
                raise ArtifactCorrupt(f"{path} does not match its manifest hash")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
