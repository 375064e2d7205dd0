"""Checks on the rendered output tree that need no tool: kustomization listings, and the rate
limit service's descriptor config read with the service's own loading rules.

Pure functions over the rendered files (relative path → bytes); no I/O, no subprocesses.
"""

from __future__ import annotations

import posixpath
from itertools import chain
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .wiring import KUSTOMIZE_ROOTS


KUSTOMIZATION = "kustomization.yaml"
RATELIMIT_CONFIGMAP = "_platform/ratelimit/configmap.yaml"


@dataclass(frozen=True)
class Finding:
    """One problem; `path` is the output path it is about, which decides whose row shows it."""

    path: str
    message: str


# --- kustomization listings ----------------------------------------------------------------------



def _mapping(reader, text, path: str, where: str, findings: list) -> dict | None:
    """The YAML mapping in text, or None with a finding (invalid YAML, or not a mapping)."""
    try:
        document = reader.load(text)
    except YAMLError as exc:
        findings.append(Finding(path, f"{where}: not valid YAML: {exc}"))
        return None
    if not isinstance(document, dict):
        findings.append(Finding(path, f"{where}: not a mapping"))
        return None
    return document

def kustomization_findings(files: Mapping[str, bytes], roots: tuple[str, ...] = KUSTOMIZE_ROOTS) -> list[Finding]:
    """Every YAML file and every folder holding its own kustomization.yaml must be listed by one
    kustomization.yaml above it, and nothing may be listed that does not exist.

    kustomize itself refuses an entry that does not exist, but silently ignores a file nobody
    lists: Flux would never apply it (a model whose HelmRelease is not listed is never deployed).
    Listing stops at Helm charts (a folder with a Chart.yaml: helm-controller reads it from Git,
    kustomize must not) and at `roots`, the folders a Flux Kustomization of their own builds: no
    other kustomization may list those, or two Kustomizations would own the same objects.
    """
    reader = YAML(typ="safe")
    # One pass over the paths, none of them kept: at 10,000 models they are 340,000, almost all
    # inside charts, which nothing here lists (lint holds them by folder, lint.Held).
    folders: set[str] = set()
    kustomized: set[str] = set()
    charts: set[str] = set()
    for path in files:
        folder, _, name = path.rpartition("/")
        if name == KUSTOMIZATION:
            kustomized.add(folder)
        elif name == "Chart.yaml":
            charts.add(folder)
        while folder not in folders:
            folders.add(folder)
            folder = _parent(folder)
    findings: list[Finding] = []
    listed_by: dict[str, list[str]] = {}
    for folder in sorted(kustomized):
        own = _join(folder, KUSTOMIZATION)
        document = _mapping(reader, files[own], own, own, findings)
        if document is None:
            continue
        for entry in _entries(document):
            if "://" in entry or entry.startswith("github.com/"):
                continue  # a remote base: nothing on disk to compare with
            target = posixpath.normpath(_join(folder, entry))
            listed_by.setdefault(target, []).append(own)
            if target in roots:
                findings.append(Finding(target, f"{own}: lists '{entry}', which a Flux Kustomization of its own "
                                                "builds (its objects would have two owners)"))
            elif target in files or target in kustomized:
                continue
            elif target in folders:
                findings.append(Finding(target, f"{own}: lists '{entry}', a folder without a {KUSTOMIZATION}"))
            else:
                findings.append(Finding(target, f"{own}: lists '{entry}', which does not exist (a stale entry)"))
    for item, owners in sorted(_listable(files, kustomized, charts, set(roots)).items()):
        by = listed_by.get(item, [])
        if not by:
            findings.append(Finding(item, f"{item}: not listed in {_join(owners[0], KUSTOMIZATION)}, "
                                          "so Flux never applies it"))
        elif len(by) > 1:
            findings.append(Finding(item, f"{item}: listed by {' and '.join(by)}: applied twice"))
    return findings


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _entries(document: dict) -> list[str]:
    entries = []
    for field in ("resources", "components"):
        value = document.get(field) or []
        if isinstance(value, list):
            entries += [str(item) for item in value]
    return entries


def _listable(paths: Iterable[str], kustomized: set[str], charts: set[str], roots: set[str]) -> dict[str, list[str]]:
    """Each path that one kustomization.yaml must list → the folders of the kustomizations above
    it that may (nearest first): every YAML file and every kustomized folder other than a root,
    outside Helm charts."""
    listable: dict[str, list[str]] = {}
    items = chain((p for p in paths if p.endswith((".yaml", ".yml")) and p.rpartition("/")[2] != KUSTOMIZATION),
                  (folder for folder in kustomized if folder and folder not in roots))
    for item in items:
        owners, parent = [], _parent(item)
        while parent not in charts:
            if parent in kustomized:
                owners.append(parent)
            if not parent:
                if owners:
                    listable[item] = owners
                break
            parent = _parent(parent)
    return listable


# --- the rate limit service's config -------------------------------------------------------------

# What envoyproxy/ratelimit's config loader (src/config/config_impl.go) accepts: any other key
# anywhere in a file fails the whole load, and so does a unit outside the RateLimit proto's enum
# (matched case-insensitively, UNKNOWN excluded). requests_per_unit is a uint32.
_SERVICE_KEYS = frozenset({
    "domain", "key", "value", "descriptors", "rate_limit", "unit", "requests_per_unit", "unlimited",
    "shadow_mode", "quota_mode", "name", "replaces", "detailed_metric", "value_to_metric", "share_threshold",
})
UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
_UINT32_MAX = 2**32 - 1


def ratelimit_findings(files: Mapping[str, bytes]) -> list[Finding]:
    """The rate limit service's ConfigMap, each key read as the service reads a config file.

    One bad file makes the service refuse the whole config (every model loses its limits), so
    each problem is reported against the key (one model's file) it is in. Domains must be unique
    across files: the rendered service does not set MERGE_DOMAIN_CONFIG.
    """
    raw = files.get(RATELIMIT_CONFIGMAP)
    if raw is None:
        return []
    reader = YAML(typ="safe")
    try:
        configmap = reader.load(raw)
    except YAMLError as exc:
        return [Finding(RATELIMIT_CONFIGMAP, f"{RATELIMIT_CONFIGMAP}: not valid YAML: {exc}")]
    data = (configmap or {}).get("data") or {}
    findings: list[Finding] = []
    domains: dict[str, str] = {}
    for key in sorted(data):
        where = f"{RATELIMIT_CONFIGMAP}: data[{key}]"
        path = f"{RATELIMIT_CONFIGMAP}#{key}"
        problems: list[str] = []
        config = _mapping(reader, data[key] if isinstance(data[key], str) else "", path, where, findings)
        if config is None:
            continue
        _check_keys(config, "", problems)
        domain = config.get("domain")
        if not isinstance(domain, str) or not domain:
            problems.append("empty or missing domain")
        elif domain in domains:
            problems.append(f"duplicate domain '{domain}' (also in data[{domains[domain]}])")
            findings.append(Finding(f"{RATELIMIT_CONFIGMAP}#{domains[domain]}",
                                    f"{RATELIMIT_CONFIGMAP}: data[{domains[domain]}]: duplicate domain '{domain}' "
                                    f"(also in data[{key}])"))
        else:
            domains[domain] = key
        _check_descriptors(config.get("descriptors"), "descriptors", str(domain or ""), problems)
        findings += [Finding(path, f"{where}: {problem}") for problem in problems]
    return findings


def _check_keys(node: Any, at: str, problems: list[str]) -> None:
    for key, value in node.items():
        here = f"{at}.{key}" if at else str(key)
        if not isinstance(key, str):
            problems.append(f"{here}: a key that is not a string")
            continue
        if key not in _SERVICE_KEYS:
            problems.append(f"{here}: unknown key '{key}' (the service refuses the whole config)")
        if isinstance(value, dict):
            _check_keys(value, here, problems)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    _check_keys(item, f"{here}[{index}]", problems)
                else:
                    problems.append(f"{here}[{index}]: not a mapping")
        elif value is not None and not isinstance(value, (str, int, bool)):
            problems.append(f"{here}: a {type(value).__name__} where the service takes text, a whole number or a boolean")


def _check_descriptors(descriptors: Any, at: str, parent: str, problems: list[str]) -> None:
    if descriptors is None:
        return
    if not isinstance(descriptors, list):
        problems.append(f"{at}: not a list")
        return
    seen: set[str] = set()
    for index, descriptor in enumerate(descriptors):
        here = f"{at}[{index}]"
        if not isinstance(descriptor, dict):
            continue  # reported by _check_keys
        key, value = descriptor.get("key"), descriptor.get("value")
        if not isinstance(key, str) or not key:
            problems.append(f"{here}: empty or missing key")
            continue
        # The service files a descriptor under "key" or "key_value" within its level.
        composite = f"{key}_{value}" if value not in (None, "") else key
        full = f"{parent}.{composite}"
        if composite in seen:
            problems.append(f"{here}: duplicate descriptor '{full}' at this level")
        seen.add(composite)
        limit = descriptor.get("rate_limit")
        if limit is not None:
            _check_limit(limit, f"{here}.rate_limit ({full})", problems)
        if descriptor.get("share_threshold") is True and not composite.endswith("*"):
            problems.append(f"{here}: share_threshold needs a wildcard value (ending in '*')")
        _check_descriptors(descriptor.get("descriptors"), f"{here}.descriptors", full, problems)


def _check_limit(limit: Any, at: str, problems: list[str]) -> None:
    if not isinstance(limit, dict):
        problems.append(f"{at}: not a mapping")
        return
    unit = limit.get("unit")
    valid_unit = isinstance(unit, str) and unit.lower() in UNITS
    if limit.get("unlimited") is True:
        if valid_unit:
            problems.append(f"{at}: unit '{unit}' with unlimited: true (the service refuses both)")
    elif not valid_unit:
        problems.append(f"{at}: invalid unit {unit!r}; one of {', '.join(UNITS)}")
    count = limit.get("requests_per_unit", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= _UINT32_MAX:
        problems.append(f"{at}: requests_per_unit {count!r} is not a whole number from 0 to {_UINT32_MAX}")
    for index, replaced in enumerate(limit.get("replaces") or []):
        name = replaced.get("name") if isinstance(replaced, dict) else None
        if not name:
            problems.append(f"{at}.replaces[{index}]: empty name")
        elif name == limit.get("name"):
            problems.append(f"{at}.replaces[{index}]: replaces its own limit '{name}'")
