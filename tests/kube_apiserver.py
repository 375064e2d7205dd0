"""The tests' name for the throwaway API server, which now lives in the package (lint --engines
starts it too): modelplat.engines.apiserver."""

from modelplat.engines.apiserver import ApiServer, StartError, free_port  # noqa: F401
