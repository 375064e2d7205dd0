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
from functools import lru_cache
from pathlib import Path

from .resources import chart_values_schema

FORMAT = b"modelplat-render-cache-v3"  # v2: identities carry the request limits; v3: and token quotas
CHART_SCHEMA = "@chart-values-schema"  # the one large file every chart shares: stored once, by reference


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


class RenderCache:
    def __init__(self, platform_bytes: bytes, root: Path | None = None):
        self.root = root or cache_dir()
        self.base = hashlib.sha256(code_fingerprint().encode() + hashlib.sha256(platform_bytes).digest())

    def key(self, *parts: str | bytes) -> str:
        digest = self.base.copy()
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "little") + data)
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            entry = json.loads(self._path(key).read_bytes())
            files = {rel: chart_values_schema() if text == CHART_SCHEMA else text.encode() for rel, text in entry["files"].items()}
            return {"identity": tuple(entry["identity"]), "files": files}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put_many(self, entries: list[tuple[str, tuple | None, dict[str, bytes]]]) -> None:
        """Store entries from a few threads: creating a file is latency-bound on virtual disks."""
        if len(entries) < 8:
            for entry in entries:
                self.put(*entry)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda entry: self.put(*entry), entries))

    def put(self, key: str, identity: tuple | None, files: dict[str, bytes]) -> None:
        schema = chart_values_schema()
        entry = {
            "identity": list(identity) if identity else [],
            "files": {rel: CHART_SCHEMA if data == schema else data.decode() for rel, data in files.items()},
        }
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entry, separators=(",", ":")))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only or full cache only costs speed
