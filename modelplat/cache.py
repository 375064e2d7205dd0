"""Render cache: skips loading, validating and rendering models whose inputs have not changed.

Like black's or mypy's caches: an entry is keyed by the bytes of everything that can change a
model's output (modelplat's own code and templates, the platform file, the values file and its
place in the tree), so a hit is exactly what a fresh render would produce. Lives in the user's
cache folder, never in the output; unreadable or unwritable caches are ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

from . import trim

# An entry (and a shared file) with its last use (trim.py).
_ENTRIES = trim.with_use("entries", "key", "t.key, t.data")
_BLOB = trim.with_use("blobs", "digest", "t.data") + " WHERE t.digest = ?"

FORMAT = b"modelplat-render-cache-v7"  # v7: the networks a model owns in its identity; v2: request limits; v3: token quotas; v4: binary entries; v5: shared files by reference; v6: shared files by digest


def cache_dir() -> Path:
    explicit = os.environ.get("MODELPLAT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modelplat" / "render"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of modelplat's code and data: any change to either invalidates every entry."""
    from .resources import schemas_dir, templates_dir

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(FORMAT)
    sources = sorted(package.glob("*.py")) + sorted(p for p in templates_dir().rglob("*") if p.is_file())
    sources.append(schemas_dir() / "chart-values.schema.json")
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name in _dependency_versions():
        digest.update(name.encode() + b"\0")
    return digest.hexdigest()


def _dependency_versions() -> list[str]:
    """dist-info names (which carry versions) of the libraries that shape the output.

    An upgrade of pydantic (model_dump), jinja2 or ruamel must not be answered from entries an
    older version rendered. Reading the folder names costs a directory listing, not an import.
    """
    import importlib.util

    names: set[str] = set()
    for module in ("pydantic", "pydantic_core", "jinja2", "ruamel.yaml"):
        spec = importlib.util.find_spec(module.split(".")[0])
        origin = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None
        if not origin:
            continue
        site = Path(origin).parent
        prefix = module.replace(".", "_").lower() + "-"  # ruamel.yaml → ruamel_yaml-0.19.1.dist-info
        try:
            names.update(e.name for e in os.scandir(site)
                         if e.name.endswith(".dist-info") and e.name.lower().startswith(prefix))
        except OSError:
            continue
    return sorted(names)


def _key(digest, parts: tuple[str | bytes, ...]) -> str:
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


class RenderCache:
    """Entries in one SQLite file (stdlib sqlite3): a thousand fresh models are one transaction,
    not a thousand files to create (~1 ms each on the virtual disks seen here). Concurrent runs
    are serialised by SQLite's own locking; any database error only costs speed."""

    def __init__(self, platform_bytes: bytes, root: Path | None = None):
        self.root = root or cache_dir()
        self.platform_digest = hashlib.sha256(platform_bytes).digest()
        self.base = hashlib.sha256(code_fingerprint().encode() + self.platform_digest)
        self._db = None
        self._blobs: dict[str, bytes] = {}  # digest → the one bytes object this process hands out
        self._now = trim.now()  # when this run used what it reads (trim.py)

    def key(self, *parts: str | bytes) -> str:
        return _key(self.base.copy(), parts)

    def code_key(self, *parts: str | bytes) -> str:
        """A key of modelplat's code (and the libraries of code_fingerprint) and the parts, whatever
        the platform file."""
        return _key(hashlib.sha256(code_fingerprint().encode()), parts)

    def _connect(self):
        if self._db is None:
            import sqlite3

            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / "render.sqlite3"
            try:
                self._db = _open(path)
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise  # locked or unwritable: leave it to its owner
                # Not a database (or a damaged one): it only ever held a cache, start again.
                for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                    stale.unlink(missing_ok=True)
                self._db = _open(path)
            trim.trim_if_due(self._db, path, self._now)
        return self._db

    # An entry: 8 bytes (little-endian length of the header), a JSON header {"identity", "files":
    # [[rel, size or digest], ...]} and the files' bytes one after another. A file every chart
    # carries byte for byte (render.shared_files: templates, schema, Lua) is stored once, in the
    # blobs table, and named by its sha256 digest; a hit hands back one shared object for it, so
    # memory and the output's hard links stay shared. Raw bytes, no text encoding.

    def get(self, key: str) -> dict | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """The entries found among keys (one query for them all; a lookup a model cost ~0.1 ms)."""
        import sqlite3

        found: dict[str, dict] = {}
        try:
            db = self._connect()
            for at in range(0, len(keys), 500):  # SQLite's limit of bound parameters is 999 or more
                chunk = keys[at:at + 500]
                marks = ",".join("?" * len(chunk))
                unmarked = []
                for key, data, used in db.execute(f"{_ENTRIES} WHERE t.key IN ({marks})", chunk):
                    entry = _decode(data, self._blob)
                    if entry is not None:
                        found[key] = entry
                        if trim.stale(used, self._now):
                            unmarked.append(key)
                if unmarked:  # one transaction, not one a row
                    with trim.transaction(db):
                        trim.touch(db, "entries", unmarked, self._now)
        except (sqlite3.Error, OSError):
            return {}
        return found

    def _blob(self, digest: str) -> bytes | None:
        blob = self._blobs.get(digest)
        if blob is None:
            db = self._connect()
            row = db.execute(_BLOB, (digest,)).fetchone()
            if row is None or hashlib.sha256(row[0]).hexdigest() != digest:
                return None
            if trim.stale(row[1], self._now):
                trim.touch(db, "blobs", [digest], self._now)
            blob = self._blobs[digest] = bytes(row[0])
            from .output import share

            share(blob)
        return blob

    def put_many(self, entries: list[tuple], shared: tuple[bytes, ...] = ()) -> None:
        """Store entries (key, identity, files[, warnings]); files that are one of the `shared`
        objects are stored once, by digest. Warnings: the model's own findings that do not stop its
        render (JSON-able dicts), replayed with the files."""
        import sqlite3

        if not entries:
            return
        from .output import digest

        digests = {id(blob): digest(blob) for blob in shared}
        try:
            db = self._connect()
            with trim.transaction(db):
                db.executemany("INSERT OR IGNORE INTO blobs (digest, data) VALUES (?, ?)",
                               ((digests[id(blob)], blob) for blob in shared))
                db.executemany("INSERT OR REPLACE INTO entries (key, data) VALUES (?, ?)",
                               ((entry[0], _encode(entry[1], entry[2], digests, *entry[3:])) for entry in entries))
                trim.touch(db, "blobs", (digests[id(blob)] for blob in shared), self._now)
                trim.touch(db, "entries", (entry[0] for entry in entries), self._now)
        except (sqlite3.Error, OSError):
            pass  # a read-only, locked or full cache only costs speed

    def put(self, key: str, identity: tuple | None, files: dict[str, bytes]) -> None:
        self.put_many([(key, identity, files)])

    # The platform settings as validated from the platform file these entries are keyed by: a
    # pickle of the pydantic model (restoring it builds no validator, ~40% of a one-model render's
    # validation), under this Python's version too. `raw`: the bytes the caller read, which must be
    # the bytes the cache was made for (a file changed in between is validated, never stored).

    def _settings_key(self, raw: bytes) -> str | None:
        if hashlib.sha256(raw).digest() != self.platform_digest:
            return None
        return self.key("platform-settings", sys.version)

    def platform_settings(self, raw: bytes):
        import pickle

        from .config import PlatformSettings

        key = self._settings_key(raw)
        entry = self.get(key) if key else None
        try:
            settings = pickle.loads(entry["files"]["settings.pickle"]) if entry else None
        except Exception:  # written by another build of the same code: validate again
            return None
        return settings if isinstance(settings, PlatformSettings) else None

    def keep_platform_settings(self, raw: bytes, settings) -> None:
        import pickle

        key = self._settings_key(raw)
        if key:
            self.put(key, None, {"settings.pickle": pickle.dumps(settings, protocol=5)})

    def delete(self, keys: list[str]) -> None:
        import sqlite3

        try:
            db = self._connect()
            db.executemany("DELETE FROM entries WHERE key = ?", ((key,) for key in keys))
            db.executemany("DELETE FROM entries_used WHERE key = ?", ((key,) for key in keys))
        except (sqlite3.Error, OSError):
            pass  # an entry left behind is only ever what a fresh render would produce

    def transaction(self, shared: tuple[bytes, ...] = ()) -> "Store":
        return Store(self, shared)


class Store:
    """Entries put a model at a time and stored in batches, so a run never holds them all; leaving
    it with an exception, or with `keep` turned off, takes back what it stored."""

    BATCH = 64

    def __init__(self, cache: RenderCache, shared: tuple[bytes, ...]):
        self.cache = cache
        self.shared = shared
        self.keep = True
        self._batch: list[tuple] = []
        self._stored: list[str] = []

    def __enter__(self) -> "Store":
        return self

    def put(self, key: str, identity: tuple | None, files: dict[str, bytes], warnings: list[dict]) -> None:
        self._batch.append((key, identity, files, warnings))
        if len(self._batch) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self.cache.put_many(self._batch, self.shared)
            self._stored += [entry[0] for entry in self._batch]
            self._batch = []

    def __exit__(self, kind, *exc) -> None:
        if kind is None and self.keep:
            self._flush()
            return
        self._batch = []
        if self._stored:
            self.cache.delete(self._stored)


def _open(path: Path):
    import sqlite3

    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new file's; an older one's changes on a VACUUM (trim.py)
        db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut loses recent entries, never the file
        # A checkpoint (the one step that syncs to disk) once the log holds 64 MB, not 4 MB: a
        # render stores ~45 KB a model, and one each 64-model batch cost ~10 ms of fsync.
        db.execute("PRAGMA wal_autocheckpoint=16384")
        db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, data BLOB NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL)")
        trim.prepare_all(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _encode(identity: tuple | None, files: dict[str, bytes], digests: dict[int, str],
            warnings: list[dict] | None = None) -> bytes:
    listing, payload = [], []
    for rel, data in files.items():
        digest = digests.get(id(data))
        if digest is not None:
            listing.append([rel, digest])
        else:
            listing.append([rel, len(data)])
            payload.append(data)
    head: dict = {"identity": list(identity) if identity else [], "files": listing}
    if warnings:
        head["warnings"] = warnings
    header = json.dumps(head, separators=(",", ":")).encode()
    return b"".join([len(header).to_bytes(8, "little"), header, *payload])


def _decode(raw: bytes, blob) -> dict | None:
    """An entry, or None when it is not one this code wrote (or names a blob that is gone)."""
    try:
        size = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + size])
        files, at = {}, 8 + size
        for rel, length in header["files"]:
            if isinstance(length, str):
                shared = blob(length)
                if shared is None:
                    return None
                files[rel] = shared
                continue
            files[rel] = raw[at:at + length]
            at += length
        if at != len(raw):
            return None  # truncated or padded: not an entry this code wrote
        return {"identity": tuple(header["identity"]), "files": files, "warnings": header.get("warnings") or []}
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
