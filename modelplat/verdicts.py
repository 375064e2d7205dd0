"""Lint's verdict cache: a real tool's result on a chart, reused while nothing it read changed.

`modelplat lint` runs helm lint, helm template and helm-unittest on every chart; in a repository
of a thousand models a commit changes one or two. A verdict is stored under a key over every
input of that run, so reusing it is the same as running the tool again:

- the tool's binary: its resolved path, size, modification time and version (a rebuilt or
  upgraded tool is a new key);
- the arguments, with the temporary folder lint renders into replaced by a placeholder;
- every file of the chart and the values file, byte for byte (their names too);
- this module's FORMAT (changed whenever what is stored changes).

What is stored is the tool's raw result (exit status and output, the folder again a placeholder),
never lint's judgement of it: the findings are worked out afresh from it every run. `lint
--no-cache` runs every tool and stores what it finds. Lives in the user's cache folder (beside
the render cache); an unreadable or unwritable cache only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from . import trim

FORMAT = b"modelplat-lint-verdicts-v1"
_PLACEHOLDER = "\x00root\x00"
_GET = trim.with_use("verdicts", "key", "t.data") + " WHERE t.key = ?"  # a verdict and its last use


def tool_identity(path: str, version: str) -> bytes:
    """What names one build of a tool: the binary it resolves to, its size and mtime, its version."""
    real = os.path.realpath(path)
    try:
        stat = os.stat(real)
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        stamp = "?"
    return f"{real}\0{stamp}\0{version}".encode()


def folder_stamp(*folders: Path) -> bytes:
    """What names the contents of schema folders cheaply: every file's path, size and mtime."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            try:
                stat = path.stat()
            except OSError:
                continue
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.digest()


def files_digest(files: dict[str, bytes], prefix: str, names=None) -> bytes:
    """A digest over the files below `prefix` (names relative to it, and bytes). `names`: those
    files' paths when the caller already knows them (a scan of every file per chart is
    quadratic in a large repository). Each file goes in by its name and its SHA-256, which for a
    file every chart carries (output.share: the templates, ~110 KB a chart) is taken once a
    process, not once a chart."""
    from .output import digest as file_digest

    digest = hashlib.sha256()
    for rel in sorted(names if names is not None else (r for r in files if r.startswith(prefix))):
        if not rel.startswith(prefix):
            raise ValueError(f"{rel} is not below {prefix}")
        name = rel[len(prefix):].encode()
        digest.update(len(name).to_bytes(8, "little") + name + bytes.fromhex(file_digest(files[rel])))
    return digest.digest()


# What put() keeps before it stores it: helm template's verdicts hold each chart's manifests
# (7-95 KB for the examples), so a first lint of 10,000 charts would otherwise keep hundreds
# of MB until the end.
PENDING_MAX = 8 << 20


class Verdicts:
    """Raw tool results by key; thread-safe (lint runs the tools of several charts at once)."""

    def __init__(self, root: Path | None, folder: Path | None, enabled: bool = True):
        # The temporary folder lint renders into, a placeholder in what is stored (None: no folder).
        self.root = str(root) if root is not None else None
        self.enabled = enabled and folder is not None
        self.path = folder / "lint.sqlite3" if folder is not None else None
        self._lock = threading.Lock()
        self._db = None
        self._pending: list[tuple[str, bytes]] = []
        self._pending_bytes = 0
        self._used: list[str] = []  # keys read whose mark of use is old (trim.py)
        self._now = trim.now()

    def key(self, *parts: bytes | str) -> str:
        digest = hashlib.sha256(FORMAT)
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            if self.root is not None:
                data = data.replace(self.root.encode(), _PLACEHOLDER.encode())
            digest.update(len(data).to_bytes(8, "little") + data)
        return digest.hexdigest()

    def _connect(self):
        import sqlite3

        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new file's (trim.py)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, data BLOB NOT NULL)")
            trim.prepare_all(db, self.path)
            trim.trim_if_due(db, self.path, self._now)
            self._db = db
        return self._db

    def get(self, key: str) -> tuple[bool, str] | None:
        """(ok, output) of an earlier run with exactly these inputs, or None."""
        import sqlite3

        if not self.enabled:
            return None
        with self._lock:
            try:
                row = self._connect().execute(_GET, (key,)).fetchone()
            except (sqlite3.Error, OSError):
                self.enabled = False
                return None
            if row is not None and trim.stale(row[1], self._now):
                self._used.append(key)  # marked when this run's verdicts are stored
        if row is None:
            return None
        try:
            ok, output = json.loads(row[0])
        except (ValueError, TypeError):
            return None
        return bool(ok), str(output) if self.root is None else str(output).replace(_PLACEHOLDER, self.root)

    def put(self, key: str, ok: bool, output: str) -> None:
        if self.path is None:
            return
        data = json.dumps([ok, output if self.root is None else output.replace(self.root, _PLACEHOLDER)]).encode()
        with self._lock:
            self._pending.append((key, data))
            self._pending_bytes += len(data)
            full = self._pending_bytes > PENDING_MAX
        if full:
            self.flush()

    def flush(self) -> None:
        """Store what this run found (one transaction)."""
        import sqlite3

        if self.path is None or not (self._pending or self._used):
            return
        with self._lock:
            pending, self._pending, self._pending_bytes = self._pending, [], 0
            used, self._used = self._used, []
            try:
                db = self._connect()
                with trim.transaction(db):
                    db.executemany("INSERT OR REPLACE INTO verdicts (key, data) VALUES (?, ?)", pending)
                    trim.touch(db, "verdicts", [key for key, _ in pending] + used, self._now)
            except (sqlite3.Error, OSError):
                pass

    def close(self) -> None:
        self.flush()  # what is left, and the marks of use of what was read
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
