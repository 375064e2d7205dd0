"""The package's shape (docs/architecture.md): no module imports one that imports it back,
function-level imports included, and each derived fact is worked out in resolve.py only."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "modelplat"


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(text: str, module: str, is_package: bool = False) -> set[str]:
    """Every modelplat module the code imports, at any depth (function-level imports too);
    imports under `if TYPE_CHECKING:` are types only and do not count."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                parts = package.split(".")
                target = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module:
                found.add(target)
            else:  # from . import a, b: modules
                found.update(f"{target}.{alias.name}" for alias in node.names)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

    Visitor().visit(ast.parse(text))
    return {name for name in found if name.startswith("modelplat") and name != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, once each (listed from its smallest module)."""
    graph = {m: {d for d in deps if d in graph} for m, deps in graph.items()}
    cycles: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                cycles.append(path + [start])
            elif nxt not in path and nxt > start:
                walk(start, nxt, path + [nxt])

    for module in sorted(graph):
        walk(module, module, [module])
    return cycles


def _package_graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p.read_text(), _module(p), p.name == "__init__.py") for p in PACKAGE.rglob("*.py")}


def test_no_module_imports_one_that_imports_it_back():
    graph = _package_graph()
    assert _cycles(graph) == []
    # rules and plan both take the derived facts from resolve (they imported each other before).
    assert "modelplat.resolve" in graph["modelplat.rules"] and "modelplat.resolve" in graph["modelplat.plan"]
    assert "modelplat.lint" not in graph["modelplat.dryrun"]


def test_the_check_sees_function_level_imports_and_finds_a_planted_cycle():
    code = "from .config import X\nif TYPE_CHECKING:\n    from .plan import P\n\ndef f():\n    from . import rules, yamlout\n"
    assert _imports(code, "modelplat.example") == {"modelplat.config", "modelplat.rules", "modelplat.yamlout"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    graph = _package_graph()
    graph["modelplat.resolve"] = graph["modelplat.resolve"] | {"modelplat.rules"}
    assert ["modelplat.resolve", "modelplat.rules", "modelplat.resolve"] in _cycles(graph)


def test_resolved_facts_are_worked_out_in_resolve_only():
    """plan and rules call resolve's functions; none defines its own copy."""
    for name in ("identity", "default_protocol", "metrics_port", "exposure_host", "token_limit",
                 "rate_limit_domain", "token_scope"):
        owners = [p.name for p in PACKAGE.rglob("*.py") if f"\ndef {name}(" in p.read_text()]
        assert owners == ["resolve.py"], (name, owners)
