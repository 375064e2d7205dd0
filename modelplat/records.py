"""Plain records that cross the render cache (no pydantic: a run served from the cache imports
none of it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional


# GKE's limit on the extension chains of one traffic extension: each model's `armor` (below) needs
# the chain of its provider and screen. Here, not in wiring.py, because the run checks it on every
# render, one served from the cache too, which must not import the platform's pydantic models.
MODEL_ARMOR_CHAINS = 5


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



class ModelFolders:
    """A model's name, namespace and output folders, from its `identity` (which has name, project
    and namespace): ModelPlan's, and RenderedModel's."""

    __slots__ = ()
    identity: Any

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def namespace(self) -> str:
        return self.identity.namespace

    @property
    def model_dir(self) -> str:
        """Output folder of this model, relative to the output root."""
        return f"{self.identity.project}/{self.identity.name}"

    @property
    def chart_dir(self) -> str:
        return f"{self.model_dir}/chart"


@dataclass(frozen=True)
class RenderedModel(ModelFolders):
    """A model as lint's tools see it when its files come from a render through the render cache
    (taken from it or stored in it): its values file as shown and its identity."""

    file: str
    identity: WiringIdentity
