"""Every `modelplat ...` command README.md and docs/ show runs, against a copy of the examples,
and exits as the text says (`# exit N` beside it, else 0).

Commands are taken from shell code blocks and from inline code with inputs (`modelplat lint
models --no-tools`), in the order a reader meets them; each page is one session in a folder of
its own holding `examples/` and `models/` (both copies of the examples) and the committed
`charts-out/`, so `init`, then `lint`, then `render`, then `render --check` build on each other
as they do for the reader.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelplat import toolbuild, tools

from conftest import EXAMPLES, REPO, need_tool

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL = {"sh", "bash", "shell", "console"}
# Subcommands that need inputs: an inline mention without them (`modelplat lint`) names the
# command, it is not one to run.
NEEDS_INPUTS = {"lint", "render", "diff", "init", "import", "tools"}
# Commands that need what a page says they need and a docs session has not: each flag is run for
# real by its own tests (test_engines.py, test_server_dry_run.py), against a control plane.
ELSEWHERE = {"--engines": "tests/test_engines.py", "--server-dry-run": "tests/test_server_dry_run.py"}
_EXIT = re.compile(r"#\s*exit (\d+)")
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str
    exit: int

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def commands(page: Path) -> list[Command]:
    """The page's commands in reading order."""
    rel = page.relative_to(REPO).as_posix()
    found: list[Command] = []
    lang = None  # inside a fence: its language
    for number, line in enumerate(page.read_text().splitlines(), 1):
        fence = _FENCE.match(line.strip())
        if fence:
            lang = None if lang is not None else fence.group(1)
            continue
        if lang is not None:
            stripped = line.strip().removeprefix("$ ")
            if lang in SHELL and stripped.startswith("modelplat"):
                command, _, comment = stripped.partition(" #")
                expected = _EXIT.search("#" + comment) if comment else None
                found.append(Command(rel, number, command.strip(), int(expected.group(1)) if expected else 0))
            continue
        if line.startswith("#"):
            continue  # a heading names a command (`## modelplat tools list | install | path`)
        for inline in re.findall(r"`(modelplat [^`]+)`", line):
            words = inline.split()
            if re.search(r"[<\[]|\.\.\.|[A-Z]{3,}", inline):
                continue  # a synopsis (`modelplat lint [OPTIONS] INPUTS...`), not a command
            if words[1] in NEEDS_INPUTS and (len(words) < 3 or words[2].startswith("-")):
                continue  # the command's name in a sentence
            found.append(Command(rel, number, inline, 0))
    return found


ALL = [c for page in PAGES for c in commands(page)]


def test_the_docs_show_commands_and_each_one_is_run_here_or_elsewhere():
    """The collection itself: every page's commands are found, and a command not run here names
    the test that runs its flag."""
    assert len(ALL) >= 15, [str(c) for c in ALL]
    assert any(c.page == "README.md" and c.text.startswith("modelplat init") for c in ALL)
    for command in ALL:
        for flag, test in ELSEWHERE.items():
            if flag in command.text:
                assert flag in (REPO / test).read_text(), (command, test)


@pytest.fixture
def session(tmp_path: Path, lint_tools):
    """A reader's folder: examples/, models/ and the committed charts-out/; HOME inside it."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    shutil.copytree(EXAMPLES, tmp_path / "models")
    shutil.copytree(REPO / "charts-out", tmp_path / "charts-out")
    (tmp_path / "home").mkdir()
    bin_dir = Path(sys.executable).parent
    # HOME is the reader's own, but the tools are the ones this session built: `modelplat tools
    # install` finds them all built (it must not build a second set under HOME), and Go keeps
    # its module and build caches.
    go_env = {}
    if shutil.which("go"):
        out = subprocess.run(["go", "env", "GOPATH", "GOMODCACHE", "GOCACHE"], capture_output=True, text=True).stdout
        go_env = dict(zip(("GOPATH", "GOMODCACHE", "GOCACHE"), out.split()))
    env = dict(os.environ, **go_env, HOME=str(tmp_path / "home"), COLUMNS="200",
               MODELPLAT_TOOLS_CACHE=str(tools.tools_bin().parent),
               PATH=os.pathsep.join([str(bin_dir), str(tools.tools_bin()), os.environ.get("PATH", "")]))
    assert shutil.which("modelplat", path=env["PATH"]) == str(bin_dir / "modelplat")
    return tmp_path, env


@pytest.mark.parametrize("page", [p.relative_to(REPO).as_posix() for p in PAGES
                                  if any(c.page == p.relative_to(REPO).as_posix() and
                                         not any(f in c.text for f in ELSEWHERE) for c in ALL)])
def test_every_command_on_the_page_exits_as_the_text_says(page, session):
    folder, env = session
    ran = []
    for command in commands(REPO / page):
        if any(flag in command.text for flag in ELSEWHERE):
            continue
        words = shlex.split(command.text)
        if words[1:3] == ["tools", "install"]:  # builds nothing when this session's tools are all there
            for tool in toolbuild.expand([w for w in words[3:] if not w.startswith("-")]):
                need_tool(tool)
        # As typed at a bash prompt: bash stays the command's parent (a lone command would be
        # exec'd in its place), which is what shell completion detects the shell from.
        proc = subprocess.run(["bash", "-c", f"{command.text}\nexit $?"], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == command.exit, f"{command}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        ran.append(command.text)
    assert ran
    if page == "README.md":  # what its walk-through leaves behind
        assert (folder / "examples/fraud/card-scorer.yaml").is_file()
        assert (folder / "charts-out/fraud/card-scorer/helmrelease.yaml").is_file()


def test_commands_are_shell_words_a_reader_can_paste():
    for command in ALL:
        assert shlex.split(command.text)[0] == "modelplat", command
