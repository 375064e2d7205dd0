"""The `modelplat` command's entry point: Ctrl-C is handled before anything heavy is imported,
so an interrupt during start-up is one line, not a traceback from deep inside an import."""

from __future__ import annotations

import sys


def main() -> None:
    from .errors import Interrupted, handle_interrupts

    handle_interrupts()
    try:
        from .cli import main as cli_main
    except (Interrupted, KeyboardInterrupt):
        sys.stderr.write("interrupted: no output was changed\n")
        sys.exit(130)
    cli_main()
