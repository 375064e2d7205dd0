"""Typed, user-facing failures and the diagnostics they carry.

The CLI turns these into one readable message and an exit code; nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Exit codes, documented in docs/cli.md.
EXIT_OK = 0
EXIT_INVALID = 1  # bad input, failed lint, stale output (--check)
EXIT_USAGE = 2  # bad command line, missing required tool, output dir not ours


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding about one place in one file."""

    file: str
    line: int  # 1-based; 0 when the finding is about the whole file
    column: int  # 1-based; 0 when unknown
    code: str  # stable, kebab-case: "unknown-key", "latest-tag", ...
    message: str
    hint: str = ""
    key: str = ""  # dotted path of the value concerned, e.g. "resources.limitGPU"
    severity: str = "error"

    def location(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column or 1}"
        return self.file

    def format(self) -> str:
        text = f"{self.location()}: {self.severity}[{self.code}]: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "code": self.code,
            "key": self.key,
            "message": self.message,
            "hint": self.hint,
        }


class ModelplatError(Exception):
    """Base of every failure a user can act on."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None):
        super().__init__(message)
        self.message = message
        self.diagnostics: list[Diagnostic] = list(diagnostics or [])


class InvalidInput(ModelplatError):
    """Values or platform files that cannot be rendered; carries every diagnostic found."""


class OutputError(ModelplatError):
    """The output directory cannot be written safely (not ours, locked, ...)."""

    exit_code = EXIT_USAGE


class ToolError(ModelplatError):
    """A required external tool is missing or failed to run at all."""

    exit_code = EXIT_USAGE


class Interrupted(BaseException):
    """Ctrl-C (SIGINT). Not a KeyboardInterrupt: click turns that into its own silent exit, and
    the CLI must say what the interrupt left behind (cli.main)."""


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted()


def handle_interrupts() -> None:
    """Ctrl-C raises Interrupted from here on (the main thread of the `modelplat` command only)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _raise_interrupted)
