"""modelplat: one small values file per model in, a Helm chart and its Flux objects out.

This package must stay cheap to import: heavy libraries are imported where they are used.
"""

__version__ = "0.1.0"
