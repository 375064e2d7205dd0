"""Plain records that cross the render cache (no pydantic: a run served from the cache imports
none of it)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional


class WiringIdentity(NamedTuple):
    """What the Flux wiring and the platform services need of one model (plan.wiring_identity),
    stored with the model's cache entry: its identity, its request limits, its token quota and its
    Model Armor screening."""

    name: str
    project: str
    namespace: str
    limits: Optional[tuple]  # (per client IP, per service account) requests a minute, either None
    tokens: Optional[tuple]  # (tenant, scope, ((descriptor key, unit, tokens), ...))
    armor: Optional[tuple] = None  # (provider, screen, CEL matching the model's screened requests)
    networks: Optional[tuple] = None  # ((index in rdma.networks, name), ...) of the networks it renders

    @classmethod
    def from_json(cls, data: list[Any]) -> "WiringIdentity":
        """The record from its cached JSON form (lists where it had tuples)."""
        name, project, namespace, limits, tokens, armor, networks = data
        if tokens:
            tokens = (tokens[0], tokens[1], tuple(tuple(w) for w in tokens[2]))
        return cls(name, project, namespace, tuple(limits) if limits else None, tokens or None,
                   tuple(armor) if armor else None, tuple(tuple(n) for n in networks) if networks else None)
