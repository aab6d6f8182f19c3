"""Files read from outside the artifact store (raw data, user datasets, local eval copies): what they
are, by content, so a stage that reads them is cached only while they stay the same.

A file's identity is its URI, size and content digest: sha256 for local files (cached in the project
home, keyed by path, size, mtime and inode, so an unchanged file is not re-read), the object's
version id or ETag on object stores (the store's own content identity, no download).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec


@dataclass(frozen=True)
class FileIdentity:
    uri: str
    bytes: int
    digest: str  # "sha256:<hex>" (local) | "version:<id>" | "etag:<etag>" (object stores)
    source: str = ""  # what reads it: a data source name, "decontam", "files", an eval set


def expand_paths(patterns: list[str], storage_options: dict[str, Any]) -> list[str]:
    """Globs (local or any fsspec URL) -> sorted concrete URIs; a pattern matching nothing is an error."""
    out: list[str] = []
    for pattern in patterns:
        fs, _, paths = fsspec.get_fs_token_paths(pattern, storage_options=storage_options)  # expands globs
        found = sorted(p for p in paths if fs.isfile(p))
        if not found:
            raise FileNotFoundError(f"no files match {pattern!r}")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        out += [p if protocol in ("file", "local") else f"{protocol}://{p}" for p in found]
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class DigestCache:
    """sha256 of local files, remembered per (path, size, mtime_ns, inode) in an SQLite file.

    A file rewritten in place keeps its inode but changes mtime (and usually size); a file replaced
    by rename changes inode. Either makes the entry stale, so a hit is the file that was hashed."""

    def __init__(self, db: Path):
        db.parent.mkdir(parents=True, exist_ok=True)
        self._db, self._lock = str(db), threading.Lock()
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                         " inode INTEGER, sha256 TEXT)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._db, timeout=60)

    def sha256(self, path: str | Path, rehash: bool = False) -> str:
        path = os.path.abspath(path)
        st = os.stat(path)
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock, self._connect() as conn:
            row = conn.execute("SELECT size, mtime_ns, inode, sha256 FROM digests WHERE path = ?", (path,)).fetchone()
        if row and tuple(row[:3]) == key and not rehash:
            return row[3]
        digest = sha256_file(Path(path))
        with self._lock, self._connect() as conn:
            conn.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (path, *key, digest))
        return digest


def default_cache() -> DigestCache:
    from olmo3_core.home import local_cache_dir

    return DigestCache(local_cache_dir() / "file_digests.sqlite")


def identify(uri: str, storage_options: dict[str, Any], source: str = "", cache: DigestCache | None = None) -> FileIdentity:
    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return FileIdentity(uri, os.path.getsize(path), "sha256:" + (cache or default_cache()).sha256(path), source)
    info = fs.info(path)
    version = info.get("VersionId") or info.get("version_id")
    etag = info.get("ETag") or info.get("etag") or info.get("md5")
    if not (version or etag):
        raise ValueError(f"{uri}: the store reports no version or ETag, so a change could not be detected")
    return FileIdentity(uri, int(info.get("size") or 0), f"version:{version}" if version else f"etag:{str(etag).strip(chr(34))}",
                        source)


def identify_all(patterns: list[str], storage_options: dict[str, Any], source: str,
                 cache: DigestCache | None = None) -> list[FileIdentity]:
    """Every file the patterns match, each with its content identity."""
    cache = cache or default_cache()
    return [identify(uri, storage_options, source, cache) for uri in expand_paths(patterns, storage_options)]


class InputChanged(RuntimeError):
    """A file changed between planning (its identity is in the fingerprint) and reading."""
