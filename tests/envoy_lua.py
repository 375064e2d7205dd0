"""Run the Lua shipped in modelplat's EnvoyFilters in a real LuaJIT (lupa), against a stand-in for
Envoy's stream handle (tests/envoy_lua_standin.lua). Nothing here preloads a JSON library: the
filters must carry their own, as in Envoy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STANDIN = (Path(__file__).parent / "envoy_lua_standin.lua").read_text()


def _to_lua(lua, value):
    if isinstance(value, str):
        return value.encode()  # the runtime speaks latin-1 so that any byte string round-trips
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def text(value: str | bytes) -> str:
    """A Lua string as Python text (the runtime hands strings over as latin-1)."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return raw.decode("utf-8", "surrogateescape")


def _to_py(value):
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (str, bytes)):
        return text(value)
    keys = list(value.keys())
    if keys and all(isinstance(k, int) for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        return [_to_py(value[k]) for k in sorted(keys)]
    return {(text(k) if isinstance(k, (str, bytes)) else k): _to_py(v) for k, v in value.items()}


@dataclass
class Result:
    headers: list[tuple[str, str]]
    body: bytes
    responded: dict | None

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return ",".join(values) if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Filter:
    """One Lua filter (its own LuaJIT state, as Envoy gives each filter config one per worker)."""

    def __init__(self, source: str, name: str, route_metadata: dict[str, dict] | None = None):
        from lupa.luajit21 import LuaRuntime

        self.source, self.name, self.route_metadata = source, name, route_metadata or {}
        # latin-1: every Lua byte string maps to one Python str and back, so bodies that are not
        # UTF-8 survive the trip; text() turns them into Python text.
        self.lua = LuaRuntime(encoding="latin-1", unpack_returned_tuples=True)
        assert self.lua.eval("jit and jit.version or ''").startswith("LuaJIT 2.1")
        self.standin = self.lua.execute(STANDIN)
        # A fresh environment per filter: the script's globals are its own, like in Envoy.
        self.lua.execute(self.source)
        self.globals = self.lua.globals()

    def __repr__(self) -> str:
        return f"Filter({self.name})"

    def stream(self, remote_address: str = "10.0.0.7:51234") -> "Stream":
        spec = _to_lua(self.lua, {"route_metadata": self.route_metadata, "filter_name": self.name,
                                  "remote_address": remote_address})
        return Stream(self, self.standin.stream(spec))


class Stream:
    def __init__(self, filter_: Filter, lua_stream):
        self.filter = filter_
        self.s = lua_stream

    def _run(self, entry: str, flow: str, headers: dict[str, str] | list[tuple[str, str]], chunks) -> Result:
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        lua = self.filter.lua
        fn = self.filter.globals[entry]
        if fn is None:
            return Result(pairs, b"".join(chunks or []), None)
        out = self.s.run(fn, flow, _to_lua(lua, [list(p) for p in pairs]),
                         _to_lua(lua, [c if isinstance(c, bytes) else c.encode() for c in (chunks or [])]))
        body = out["body"]
        body = body.encode("latin-1") if isinstance(body, str) else (body or b"")
        responded = _to_py(out["responded"]) if out["responded"] is not None else None
        return Result([tuple(e) for e in _to_py(out["headers"])], body, responded)

    def request(self, headers, chunks=None) -> Result:
        return self._run("envoy_on_request", "request", headers, chunks)

    def response(self, headers, chunks=None) -> Result:
        return self._run("envoy_on_response", "response", headers, chunks)

    def metadata(self, namespace: str) -> dict | None:
        value = self.s.dynamic[namespace]
        return _to_py(value) if value is not None else None

    @property
    def logs(self) -> list[dict]:
        return _to_py(self.s.logs) or []
