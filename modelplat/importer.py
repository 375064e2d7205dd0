"""Turns a seed-platform HelmRelease (or its bare values) into a modelplat model values mapping.

Every key it cannot carry over is reported with a reason, never dropped; it does no file I/O.
"""

from __future__ import annotations

from pathlib import Path

import datetime
import difflib
import math
import re
from typing import Any, Sequence

from .errors import InvalidInput

SCHEMA_URL = "https://modelplat.dev/schemas/model-values.schema.json"

# Seed spellings of model.format that modelplat names differently.
_FORMAT_ALIASES = {
    "scikit-learn": "sklearn",
    "scikit_learn": "sklearn",
    "tfserving": "tensorflow",
    "tensorflow-serving": "tensorflow",
    "torch": "pytorch",
    "hf": "huggingface",
}

# Seed token-quota keys (snake case) → tokenLimit keys.
_TOKEN_KEYS = {"tenant_id": "tenantId", "sa_limit": "saLimit", "ip_limit": "ipLimit"}

_AUTOSCALING_TARGETS = (
    "targetCPUUtilizationPercentage",
    "targetMemoryUtilizationPercentage",
    "targetGPUUtilizationPercentage",
    "targetRequestRate",
    "targetKVCacheUtilizationPercentage",
    "targetQueueDepth",
)

# Kubernetes-style resources (requests/limits) → seed key names.
_K8S_RESOURCES = {
    ("requests", "cpu"): "requestCPU",
    ("limits", "cpu"): "limitCPU",
    ("requests", "memory"): "requestMemory",
    ("limits", "memory"): "limitMemory",
    ("requests", "nvidia.com/gpu"): "requestGPU",
    ("limits", "nvidia.com/gpu"): "limitGPU",
}

# Parts of a HelmRelease that modelplat writes itself, so an owner's value there is not carried over.
_RELEASE_PLUMBING = "modelplat writes its own HelmRelease settings (chart, intervals, remediation)"


def _path(*parts: Any) -> str:
    return ".".join(str(p) for p in parts if p != "")


def _load(text: str, source: str) -> list[Any]:
    """The documents of the file to import, through the values files' guarded loader (size,
    nesting depth, aliases): a deeply nested file crashed the process before."""
    from .loader import LoadError, parse_all

    try:
        return parse_all(text, source)
    except LoadError as exc:
        syntax = exc.diagnostic.code in ("yaml-syntax", "yaml-character", "duplicate-key")
        raise InvalidInput(f"{source} is not valid YAML" if syntax else f"cannot import {source}",
                           [exc.diagnostic]) from None


def _pick(documents: list[Any], source: str) -> Any:
    releases = [d for d in documents if isinstance(d, dict) and d.get("kind") == "HelmRelease"]
    if len(releases) > 1:
        names = ", ".join(str((r.get("metadata") or {}).get("name", "?")) for r in releases)
        raise InvalidInput(f"{source} holds {len(releases)} HelmReleases ({names}); import them one file at a time")
    if releases:
        return releases[0]
    if len(documents) != 1:
        raise InvalidInput(f"{source} holds no HelmRelease and {len(documents)} documents; expected one values mapping")
    document = documents[0]
    if not isinstance(document, dict):
        raise InvalidInput(f"{source}: expected a HelmRelease or a values mapping, got {type(document).__name__}")
    if "kind" in document and "apiVersion" in document:
        raise InvalidInput(f"{source}: expected a HelmRelease or a values mapping, got a {document['kind']}")
    return document


def import_helmrelease(text: str, source: str, documents: list | None = None) -> tuple[dict, list[str]]:
    """(values mapping, unmapped keys as 'dotted.path: reason') for a seed HelmRelease or values file."""
    document = _pick(_load(text, source) if documents is None else documents, source)
    unmapped: list[str] = []
    out: dict[str, Any] = {}
    if document.get("kind") == "HelmRelease":
        values = _release(document, out, unmapped)
    else:
        values = document
    values = _plain(values)
    if not isinstance(values, dict):
        raise InvalidInput(f"{source}: spec.values is not a mapping")
    _values(values, out, unmapped, "spec.values" if document.get("kind") == "HelmRelease" else "")
    return _ordered(out), unmapped


def _release(document: dict, out: dict, unmapped: list[str]) -> Any:
    """Take name and namespace from the HelmRelease; report the rest of it that is not values."""
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    spec = document.get("spec") if isinstance(document.get("spec"), dict) else {}
    if metadata.get("name"):
        out["name"] = metadata["name"]
    # Flux installs into targetNamespace when set; metadata.namespace only holds the HelmRelease.
    namespace = spec.get("targetNamespace") or metadata.get("namespace")
    if namespace:
        out["namespace"] = namespace
    for key in sorted(metadata, key=str):
        if key not in ("name", "namespace"):
            unmapped.append(f"metadata.{key}: belongs to the HelmRelease object; modelplat writes its own (use labels: for model labels)")
    for key in sorted(spec, key=str):
        if key in ("values", "targetNamespace"):
            continue
        if key == "releaseName" and spec[key] == metadata.get("name"):
            continue
        if key == "releaseName":
            unmapped.append(f"spec.releaseName: modelplat names the release after the model ({metadata.get('name')}), not {spec[key]}")
        elif key == "valuesFrom":
            unmapped.append("spec.valuesFrom: values from ConfigMaps/Secrets are not read; copy them into the values file")
        else:
            unmapped.append(f"spec.{key}: {_RELEASE_PLUMBING}")
    return spec.get("values") or {}


def _plain(value: Any) -> Any:
    """Values the YAML emitter can write: timestamps and odd floats become text (validation then speaks)."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _values(values: dict, out: dict, unmapped: list[str], prefix: str) -> None:
    from .values import ModelValues

    rest = dict(values)

    def where(*parts: Any) -> str:  # paths as they appear in the imported file
        return _path(prefix, *parts)

    def section(key: str) -> dict:
        value = rest.pop(key, None)
        if value is not None and not isinstance(value, dict):
            unmapped.append(f"{where(key)}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value) if isinstance(value, dict) else {}

    # A seed canary chart keeps each InferenceService's own keys in a section of its own
    # (primary: / canary:); the primary's are the model's.
    primary = section("primary")
    for key in sorted(primary, key=str):
        if key in rest:
            unmapped.append(f"{where('primary', key)}: {key} is also set at the top level, which is kept")
        else:
            rest[key] = primary[key]

    # Seed keys whose modelplat name or place differs.
    model = section("model")
    if "storageUri" in rest:
        if "storageUri" in model:
            unmapped.append(f"{where('storageUri')}: model.storageUri is already {model['storageUri']!r}")
            rest.pop("storageUri")
        else:
            model["storageUri"] = rest.pop("storageUri")
    for key in ("modelFormat", "format"):
        if key in rest:
            value = rest.pop(key)
            if "format" in model:
                unmapped.append(f"{where(key)}: model.format is already {model['format']!r}")
                continue
            if isinstance(value, dict) and set(value) <= {"name", "version"} and isinstance(value.get("name"), str):
                if "version" in value:  # KServe's modelFormat: {name, version}
                    unmapped.append(f"{where(key, 'version')}: modelplat picks the runtime by model.format and "
                                    "model.runtimeVersion, not by a format version")
                value = value["name"]
            model["format"] = _FORMAT_ALIASES.get(str(value).lower(), str(value).lower()) if isinstance(value, str) else value
    if "image" in rest:
        image = _image(rest.pop("image"), where("image"), unmapped)
        if image:
            model["image"] = image
    if "image" in model and "format" not in model:
        model["format"] = "custom"  # a seed image is a serving container: modelplat's custom format
    elif "image" in model and model["format"] != "custom":
        unmapped.append(f"{where('image')}: {model.pop('image')!r} is not imported: KServe's runtime for format "
                        f"{model['format']!r} brings its own image (pin its version with model.runtimeVersion), "
                        "or set format: custom to run this image")

    canary = section("canary")
    for holder, label in ((rest, where("newStorageUri")), (canary, where("canary", "newStorageUri"))):
        if "newStorageUri" in holder:
            value = holder.pop("newStorageUri")
            if "storageUri" in canary and canary["storageUri"] != value:
                unmapped.append(f"{label}: canary.storageUri is already {canary['storageUri']!r}")
            else:
                canary["storageUri"] = value
    for key in ("modelFormat", "format"):  # a canary serves the primary's format
        if key in canary:
            value = canary.pop(key)
            name = value.get("name") if isinstance(value, dict) else value
            if str(name).lower() != str(model.get("format", "")).lower():
                unmapped.append(f"{where('canary', key)}: a canary serves the primary's model.format "
                                f"({model.get('format')!r}), not {name!r}")
    if "image" in canary:  # the seed's canary image: modelplat's canary changes only the tag
        image = _image(canary.pop("image"), where("canary", "image"), unmapped)
        repository, _, tag = (image or "").rpartition(":") if image and "@" not in image else ("", "", "")
        primary_repository = str(model.get("image", "")).rpartition(":")[0]
        if tag and "/" not in tag and repository and repository == primary_repository:
            canary.setdefault("imageTag", tag)
        elif image:
            unmapped.append(f"{where('canary', 'image')}: a canary runs the primary's image with another tag "
                            f"(canary.imageTag); {image!r} is another image")
    if any(k in canary for k in ("storageUri", "imageTag")):
        canary.setdefault("enabled", True)

    token = section("tokenLimit")
    for seed, name in _TOKEN_KEYS.items():
        for holder, label in ((rest, where(seed)), (token, where("tokenLimit", seed))):
            if seed not in holder:
                continue
            value = holder.pop(seed)
            if name in token:
                unmapped.append(f"{label}: tokenLimit.{name} is already set to {token[name]!r}")
            else:
                token[name] = value
    if any(k in token for k in _TOKEN_KEYS.values()):
        token.setdefault("enabled", True)

    if isinstance(rest.get("env"), list):
        rest["env"] = [_env(item, where("env", index), unmapped) for index, item in enumerate(rest["env"])]

    resources = rest.pop("resources", None)
    if isinstance(resources, dict):
        resources = _resources(resources, where("resources"), unmapped)

    for key, value in (("model", model), ("canary", canary), ("tokenLimit", token), ("resources", resources)):
        if value:
            rest[key] = value

    kept, problems = _filter(ModelValues, rest, prefix)
    unmapped.extend(problems)
    for key, value in kept.items():
        if key in ("name", "namespace") and key in out and out[key] != value:
            # The HelmRelease's own name and namespace are what Flux deployed under: they win.
            unmapped.append(f"{where(key)}: {value!r} differs from the HelmRelease's {out[key]!r}, which is kept")
            continue
        out[key] = value
    _autoscaling(out)


def _image(value: Any, where: str, unmapped: list[str]) -> str | None:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        unmapped.append(f"{where}: expected an image reference or repository/tag, got {type(value).__name__}")
        return None
    image = dict(value)
    repository = image.pop("repository", None)
    tag = image.pop("tag", None)
    digest = image.pop("digest", None)
    registry = image.pop("registry", None)
    for key in sorted(image, key=str):
        reason = "modelplat leaves the pull policy to Kubernetes" if key == "pullPolicy" else "no modelplat equivalent"
        unmapped.append(f"{where}.{key}: {reason}")
    if not repository:
        unmapped.append(f"{where}: no image.repository, so no image was imported")
        return None
    reference = f"{registry}/{repository}" if registry else str(repository)
    if tag not in (None, ""):
        reference += f":{tag}"
    if digest:
        reference += f"@{digest}"
    return reference


def _env(item: Any, where: str, unmapped: list[str]) -> Any:
    """Kubernetes-style valueFrom.secretKeyRef → secretKeyRef; other valueFrom sources are reported."""
    if not isinstance(item, dict) or not isinstance(item.get("valueFrom"), dict):
        return item
    item = dict(item)
    source = dict(item.pop("valueFrom"))
    secret = source.pop("secretKeyRef", None)
    if isinstance(secret, dict) and "secretKeyRef" not in item:
        item["secretKeyRef"] = {k: v for k, v in secret.items() if k in ("name", "key")}
        for key in sorted(set(secret) - {"name", "key"}, key=str):
            unmapped.append(f"{where}.valueFrom.secretKeyRef.{key}: no modelplat equivalent")
    elif secret is not None:
        source["secretKeyRef"] = secret
    for key in sorted(source, key=str):
        unmapped.append(f"{where}.valueFrom.{key}: only secretKeyRef is supported; set a literal value instead")
    return item


def _resources(resources: dict, where: str, unmapped: list[str]) -> dict:
    """Seed keys pass through; Kubernetes-style requests/limits are renamed to them."""
    out = {k: v for k, v in resources.items() if k not in ("requests", "limits")}
    for section in ("requests", "limits"):
        block = resources.get(section)
        if block is None:
            continue
        if not isinstance(block, dict):
            unmapped.append(f"{where}.{section}: expected a mapping")
            continue
        for name, value in block.items():
            target = _K8S_RESOURCES.get((section, str(name)))
            if target is None:
                unmapped.append(f"{where}.{section}.{name}: no modelplat equivalent (only cpu, memory, nvidia.com/gpu)")
            elif target in out:
                unmapped.append(f"{where}.{section}.{name}: resources.{target} is already set")
            else:
                out[target] = value
    return out


def _autoscaling(out: dict) -> None:
    """The seed has no switch: scaling is on when it can scale or a target is set."""
    scaling = out.get("autoscaling")
    if not isinstance(scaling, dict) or "enabled" in scaling:
        return
    replicas = out.get("replicaCount", 1)
    maximum = scaling.get("maxReplicaCount")
    wider = isinstance(maximum, int) and isinstance(replicas, int) and maximum > replicas
    if wider or any(scaling.get(t) is not None for t in _AUTOSCALING_TARGETS):
        out["autoscaling"] = {"enabled": True, **scaling}


_INT = re.compile(r"^[+-]?[0-9]+$")


def _coerce(value: Any, annotation: Any) -> Any:
    """Seed charts often quote numbers and booleans; modelplat's types are strict, so unquote them."""
    from .validate import unwrap

    target = unwrap(annotation)
    if isinstance(value, str):
        if target is int and _INT.match(value.strip()):
            return int(value.strip())
        if target is bool and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    return value


def _filter(model: type, data: dict, prefix: str) -> tuple[dict, list[str]]:
    """Keep keys the model knows (recursing into sections and lists of sections); report the rest."""
    from pydantic import BaseModel

    from .validate import unwrap

    fields = model.model_fields
    kept: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in data.items():
        path = _path(prefix, key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6) or \
                [f for f in fields if f.lower() == str(key).lower()][:1]
            hint = f" (did you mean '{_path(prefix, close[0])}'?)" if close else ""
            problems.append(f"{path}: no modelplat equivalent{hint}")
            continue
        inner = unwrap(fields[key].annotation)
        section = isinstance(inner, type) and issubclass(inner, BaseModel)
        if section and isinstance(value, dict):
            value, more = _filter(inner, value, path)
            problems.extend(more)
        elif section and isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    item, more = _filter(inner, item, _path(path, index))
                    problems.extend(more)
                items.append(item)
            value = items
        else:
            value = _coerce(value, fields[key].annotation)
        kept[key] = value
    order = {name: index for index, name in enumerate(fields)}
    return {k: kept[k] for k in sorted(kept, key=lambda k: order[k])}, problems


def _ordered(values: dict) -> dict:
    """Top-level keys in the schema's order, so imported files read like hand-written ones."""
    from .values import ModelValues

    order = {name: index for index, name in enumerate(ModelValues.model_fields)}
    return {k: values[k] for k in sorted(values, key=lambda k: order.get(k, len(order)))}


def validate_imported(values: dict, platform=None, file: Path | None = None) -> list[str]:
    """Readable problems of the imported values, empty when valid; never raises. The schema
    always; with the platform settings, every rule lint applies too (an import that passes
    here is not refused by lint), for the values file at `file` (its name and folder give the
    model's name and project, as for render)."""
    from . import rules
    from .loader import Source
    from .resolve import identity
    from .validate import validate
    from .values import ModelValues

    where = file or Path("imported.yaml")
    source = Source(where, str(where), "", values)
    model, diagnostics = validate(source, ModelValues)
    if model is not None and platform is not None:
        folder = where.parent.name if file is not None and where.parent.name else None
        diagnostics = rules.check(model, platform, source, identity(model, where.stem, folder))
    problems = []
    for d in diagnostics:
        if d.severity != "error":
            continue
        text = d.message if not d.key or d.message.startswith(d.key) else f"{d.key}: {d.message}"
        problems.append(f"{text} ({d.hint})" if d.hint else text)
    return problems


def to_yaml(values: dict, source: str, unmapped: Sequence[str] = ()) -> str:
    """The values file text, with the schema comment editors use and, if any, what was left behind."""
    from .yamlout import dump

    one_line = " ".join(str(source).split())  # a newline in a name must not end the comment
    header = [f"yaml-language-server: $schema={SCHEMA_URL}", f"Imported from {one_line} by modelplat import"]
    if unmapped:
        header.append("Not imported (review these by hand):")
        header.extend(f"  {' '.join(item.split())}" for item in unmapped)
    return dump(values, "\n".join(header))
