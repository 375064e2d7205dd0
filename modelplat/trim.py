"""How modelplat's caches stop growing: each row's last use is recorded, and rows unused for days
are deleted, as Go's build cache does.

Every key of the render cache and of lint's verdict cache names the bytes that made it, so
nothing in them is ever wrong, only dead: a modelplat upgrade leaves a full set of renders behind
(2.1 GB after four versions at 10,000 models), and each edit of a chart leaves its old verdicts.
A row in use is never lost this way, and one that is trimmed only costs the time to make it again.

- A table's uses are kept in a small table beside it, `<table>_used` (key, time of last use in
  seconds): marking a 95 KB row used rewrites 60 bytes, not the row. Reading a row marks it only
  when its mark is over an hour old, so a warm run does not write for what it reads.
- Once a day at most (the time of the last trim is kept in a file beside the database), rows
  unused for `MODELPLAT_CACHE_TRIM_DAYS` days (default 5; 0: never) are deleted, and rows with
  no mark at all (written by an older modelplat). When that frees more than half the file, it is
  rewritten smaller (VACUUM), which also turns on incremental auto-vacuum: from then on, freed
  pages are handed back as they are freed.
- A database made before uses were kept gets the table, every row marked used now.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

# The caches' databases (in cache.cache_dir()) and their tables: {table: its key column}.
DATABASES = {"render.sqlite3": {"entries": "key", "blobs": "digest"}, "lint.sqlite3": {"verdicts": "key"}}

TOUCH_AFTER = 3600  # a row marked within the hour is not marked again
TRIM_EVERY = 86400
DEFAULT_DAYS = 5

clock = time.time  # tests move it


def now() -> int:
    return int(clock())


def days() -> float:
    """How many days a row may go unused (MODELPLAT_CACHE_TRIM_DAYS; 0 or less: kept for ever)."""
    raw = os.environ.get("MODELPLAT_CACHE_TRIM_DAYS", "")
    try:
        return float(raw) if raw.strip() else DEFAULT_DAYS
    except ValueError:
        return DEFAULT_DAYS


@contextmanager
def transaction(db):
    """One write transaction on a connection in autocommit mode (isolation_level=None): committed
    when the block ends, rolled back when it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def prepare(db, table: str, key: str) -> None:
    """Makes `table`'s uses table; for a database that had none, every row is marked used now.
    Run where the caller makes its tables (before any row is read)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (f"{table}_used",)).fetchone():
        return
    with transaction(db):
        db.execute(f"CREATE TABLE IF NOT EXISTS {table}_used (key TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID")
        db.execute(f"INSERT OR IGNORE INTO {table}_used (key, at) SELECT {key}, ? FROM {table}", (now(),))


def prepare_all(db, path: Path) -> None:
    """prepare() for every table of the cache database at `path` (DATABASES)."""
    for table, key in DATABASES[path.name].items():
        prepare(db, table, key)


def trim_if_due(db, path: Path, at: int) -> None:
    """What a render or lint does on opening a cache database: trim it when a day has passed
    since its last trim. A database another process holds is trimmed by a later run."""
    import sqlite3

    if due(path, at):
        try:
            trim(db, path, DATABASES[path.name], at)
        except sqlite3.OperationalError:
            pass


def with_use(table: str, key: str, columns: str) -> str:
    """A SELECT of `columns` of `table` (aliased t) and the row's last use (None: unmarked), for
    a WHERE clause to follow."""
    return f"SELECT {columns}, u.at FROM {table} t LEFT JOIN {table}_used u ON u.key = t.{key}"


def stale(used: int | None, at: int) -> bool:
    """Whether a row last marked at `used` must be marked again at `at`."""
    return used is None or used < at - TOUCH_AFTER


def touch(db, table: str, keys, at: int) -> None:
    """Marks the rows of `keys` used at `at` (within the caller's transaction, if any)."""
    db.executemany(f"INSERT OR REPLACE INTO {table}_used (key, at) VALUES (?, ?)", ((k, at) for k in keys))


def due(path: Path, at: int) -> bool:
    """Whether the database at `path` was last trimmed a day or more ago (or never)."""
    if days() <= 0:
        return False
    try:
        last = int(_stamp(path).read_text().strip() or 0)
    except (OSError, ValueError):
        return True
    return not (at - TRIM_EVERY < last <= at)


def trim(db, path: Path, tables: dict[str, str], at: int, unused_days: float | None = None) -> int:
    """Deletes the rows of `tables` ({table: its key column}) unused for `unused_days` (default:
    days()), or never marked; returns how many. Marks the database trimmed at `at` first, so
    that of two processes at once, one trims, and one that cannot write its mark does not trim."""
    try:
        _stamp(path).write_text(f"{at}\n")
    except OSError:
        return 0
    if unused_days is None:
        unused_days = days()
        if unused_days <= 0:
            return 0  # kept for ever
    # Kept: what was used since the cutoff. 0 days keeps nothing, not even what this very second
    # used (a mark is in whole seconds).
    cutoff = at - int(unused_days * 86400) if unused_days > 0 else None
    deleted = 0
    with transaction(db):
        for table, key in tables.items():
            if cutoff is None:
                deleted += db.execute(f"DELETE FROM {table}").rowcount
                db.execute(f"DELETE FROM {table}_used")
                continue
            deleted += db.execute(
                f"DELETE FROM {table} WHERE {key} NOT IN (SELECT key FROM {table}_used WHERE at >= ?)",
                (cutoff,)).rowcount
            db.execute(f"DELETE FROM {table}_used WHERE at < ?", (cutoff,))
    if deleted:
        _shrink(db)
    return deleted


def _shrink(db) -> None:
    """Hands freed pages back to the file system: a VACUUM the first time more than half the file
    is free (turning on incremental auto-vacuum), an incremental vacuum after that."""
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # incremental
        # Run to its end (sqlite3_exec): Python's execute() takes one step, which frees one page.
        db.executescript("PRAGMA incremental_vacuum;")
        return
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    if free * 2 > pages:
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("VACUUM")


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".trimmed")


def size(path: Path) -> int:
    """A database's bytes on disk, its write-ahead log included."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def describe(folder: Path) -> list[dict]:
    """Each cache database in `folder`: its file, size, rows and when it was last trimmed."""
    import sqlite3

    found = []
    for name, tables in DATABASES.items():
        path = folder / name
        if not path.exists():
            continue
        row: dict = {"file": str(path), "bytes": size(path), "rows": None, "trimmed": None}
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                row["rows"] = sum(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables)
            finally:
                db.close()
        except sqlite3.Error:
            pass  # not a database: the next run starts it again
        try:
            row["trimmed"] = int(_stamp(path).read_text().strip())
        except (OSError, ValueError):
            pass
        found.append(row)
    return found


def prune(folder: Path, unused_days: float) -> list[dict]:
    """Trims every cache database in `folder` now, of the rows unused for `unused_days`:
    [{file, rows deleted, bytes before, bytes after}]."""
    import sqlite3

    done = []
    for name, tables in DATABASES.items():
        path = folder / name
        if not path.exists():
            continue
        before = size(path)
        db = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            for table, key in tables.items():
                db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({key} TEXT PRIMARY KEY, data BLOB NOT NULL)")
            prepare_all(db, path)
            deleted = trim(db, path, tables, now(), unused_days)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
        done.append({"file": str(path), "deleted": deleted, "bytes_before": before, "bytes_after": size(path)})
    return done
