"""Locates the data files modelplat ships: jinja templates, exported schemas, vendored schemas.

In a wheel they sit inside the package (see pyproject's force-include); in a source checkout
they sit at the repository root. Nothing else in the package hard-codes these paths.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    """`templates`, `schemas` or `vendor`: the installed copy first, else the checkout's."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"modelplat data folder '{name}' is missing from the installation")


def templates_dir() -> Path:
    return data_dir("templates")


def schemas_dir() -> Path:
    return data_dir("schemas")


def vendor_dir() -> Path:
    return data_dir("vendor")


@lru_cache(maxsize=1)
def chart_values_schema() -> bytes:
    """The chart values JSON Schema every chart ships as values.schema.json (one read a process)."""
    return (schemas_dir() / "chart-values.schema.json").read_bytes()


@lru_cache(maxsize=1)
def lua_sources() -> dict[str, bytes]:
    """The Lua filters shipped in EnvoyFilters, by file stem. They are static: every setting
    reaches them as route metadata, so no value can ever become code."""
    return {path.stem: path.read_bytes() for path in sorted((templates_dir() / "lua").glob("*.lua"))}


@lru_cache(maxsize=1)
def helmignore() -> bytes:
    return (templates_dir() / "chart" / ".helmignore").read_bytes()


@lru_cache(maxsize=1)
def shared_files() -> tuple[bytes, ...]:
    """The packaged files every chart carries byte for byte (render.shared_files adds the chart
    templates), one object each a process."""
    return (chart_values_schema(), helmignore(), *lua_sources().values())
