"""helm template's output split into documents, and the name of lint's row for problems that
belong to no model. Shared by lint, the server dry-run and the engines, which import it (and
not each other).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WIRING = "(flux wiring)"  # the row of problems that belong to no model (kustomizations, _platform/)


@dataclass
class Manifest:
    """One document of a chart's `helm template` output."""

    source: str  # the template it came from, relative to the chart: "templates/virtualservice.yaml"
    kind: str
    name: str
    namespace: str
    group: str
    body: dict
    text: str


_SOURCE = re.compile(r"^# Source: [^/\n]+/(\S+)", re.M)
# A document's apiVersion, a key at its top level (a line of its own at column 0).
_API_VERSION = re.compile(r"""^apiVersion:[ \t]*["']?([^"'\s#]*)["']?[ \t]*(?:#.*)?$""", re.M)


def split_manifests(output: str, groups=None) -> list[Manifest]:
    """helm template's output, one Manifest a document, each keeping its "# Source:" template.
    `groups`: the API groups wanted (a predicate on the group); a document whose apiVersion line
    says it is of another is not parsed (lint wants the Istio and Prometheus documents of a 95 KB
    output: parsing the rest was ~45 ms a chart)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    reader = YAML(typ="safe")  # one per call: a YAML instance is not thread-safe
    manifests = []
    for chunk in re.split(r"^---[ \t]*$", output, flags=re.M):
        if groups is not None:
            stated = _API_VERSION.findall(chunk)
            if len(stated) == 1 and not groups(stated[0].rpartition("/")[0]):
                continue
        try:
            body = reader.load(chunk)
        except YAMLError:
            continue  # kubeconform reports a document that is not YAML
        if not isinstance(body, dict):
            continue
        source = _SOURCE.search(chunk)
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        api_version = str(body.get("apiVersion", ""))
        manifests.append(Manifest(source.group(1) if source else "?", str(body.get("kind", "")),
                                  str(metadata.get("name", "")), str(metadata.get("namespace", "")),
                                  api_version.rpartition("/")[0], body, chunk.strip() + "\n"))
    if groups is not None:
        manifests = [m for m in manifests if groups(m.group)]
    return manifests
