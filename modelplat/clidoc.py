"""Generates the CLI reference (docs/cli-reference.md) from the command definitions themselves.

Read-only: returns Markdown; tests/test_docs.py keeps the committed page in sync with the code.
"""

from __future__ import annotations

import re


def reference() -> str:
    import typer.main

    from .cli import app

    # typer vendors its own click, so everything is reached through the command objects.
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="modelplat")
    lines = [
        "# CLI reference",
        "",
        "<!-- Generated from modelplat/cli.py by `python -m modelplat.clidoc`; do not edit. -->",
        "",
        (group.help or "").strip(),
        "",
        "Exit codes, environment variables and diagnostic codes: [cli.md](cli.md).",
        "",
    ]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = command.context_class(command, info_name=name, parent=ctx)
        usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), " ".join(command.collect_usage_pieces(sub)))
        lines += [f"## modelplat {name}", "", f"`modelplat {name} {usage}`", "", (command.help or "").strip(), ""]
        rows = []
        for param in command.params:
            if param.param_type_name == "argument":
                names = f"`{param.human_readable_name}`"
                kind = "argument" + (", repeatable" if param.nargs == -1 else "")
            else:
                names = ", ".join(f"`{o}`" for o in param.opts + param.secondary_opts)
                kind = "flag" if param.is_flag else str(param.type.name).lower()
            default = param.default
            if isinstance(default, (list, tuple)) and not default:
                default = None
            shown = "" if default in (None, "") or callable(default) else f"`{getattr(default, 'value', default)}`"
            help_text = (getattr(param, "help", "") or "").replace("|", "\\|")
            rows.append(f"| {names} | {kind} | {shown} | {help_text} |")
        if rows:
            lines += ["| name | kind | default | meaning |", "| --- | --- | --- | --- |", *rows, ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(reference())
