"""`modelplat import`: each KServe InferenceService (isvc_import.py) and LLMInferenceService
(llm_import.py) of a file into model values, else the file's one seed HelmRelease (importer.py)."""

from __future__ import annotations

from .errors import InvalidInput
from .importer import _load, import_helmrelease
from .isvc_import import import_inferenceservice, is_inferenceservice
from .llm_import import import_llminferenceservice, is_llminferenceservice


def import_file(text: str, source: str, platform=None) -> list[tuple[dict, list[str]]]:
    """(values, unmapped) for each model in the file: every KServe InferenceService and
    LLMInferenceService in it (llm_import.py), else its one seed HelmRelease (or bare values)."""
    documents = _load(text, source)
    ours = lambda d: is_inferenceservice(d) or is_llminferenceservice(d)  # noqa: E731
    services = [d for d in documents if ours(d)]
    if not services:
        return [import_helmrelease(text, source, documents)]
    results = [import_llminferenceservice(d, platform) if is_llminferenceservice(d) else import_inferenceservice(d, platform)
               for d in services]
    names = [v.get("name") for v, _ in results]
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        raise InvalidInput(f"{source} holds more than one (LLM)InferenceService named {', '.join(twice)}")
    others = [f"document {i + 1}: a {d.get('kind', type(d).__name__) if isinstance(d, dict) else type(d).__name__} "
              "is not imported (only InferenceServices and LLMInferenceServices are)"
              for i, d in enumerate(documents) if d is not None and not ours(d)]
    results[0][1][:0] = others
    return results
