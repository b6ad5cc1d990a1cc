"""Imports point down only: core <- llm <- integrations <- cli, tui; core loads no heavy library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "convogen_tui"
# each may import only those before it; the CLI is the entry point, so `convogen tui` may start the app
LAYERS = ["core", "llm", "integrations", "tui", "cli"]
ABOVE_CORE = ["textual", "llama_cpp", "httpx", "tweepy", "huggingface_hub"]


def _imports(path: Path, type_checking: bool = False) -> set[str]:
    """Every convogen_tui module a file imports at run time, at the top or inside a function.

    Imports under ``if TYPE_CHECKING:`` are for the type checker only and are counted only when
    ``type_checking`` is set.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if (
            not type_checking
            and isinstance(node, ast.If)
            and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        ):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name.startswith("convogen_tui.")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_importing_core_loads_no_layer_above_and_no_heavy_library() -> None:
    code = (
        "import json, sys, convogen_tui.core, pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(convogen_tui.core.__path__, 'convogen_tui.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    leaks = [
        m
        for m in loaded
        if any(m == top or m.startswith(top + ".") for top in ABOVE_CORE)
        or (m.startswith("convogen_tui.") and _layer(m) not in (None, "core"))
    ]
    assert leaks == []


@pytest.mark.parametrize("layer", LAYERS)
def test_every_import_points_down(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in _imports(path):
            target = _layer(module)
            if target is not None and target not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert wrong == []


@pytest.mark.parametrize("type_checking", [False, True], ids=["run-time", "type-checker-too"])
def test_no_import_cycle_between_modules(type_checking: bool) -> None:
    """No circle, counting imports inside functions and, for the type checker, under TYPE_CHECKING."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        graph[name] = {m for m in _imports(path, type_checking)}
    known = set(graph)
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for nxt in sorted(graph.get(node, set()) & known):
            if nxt in stack:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in done:
                visit(nxt, [*stack, nxt], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], done)
    assert cycles == []


def test_the_app_asks_its_screens_and_reaches_into_no_pane() -> None:
    """app.py calls no pane's or screen's action_* and touches no private field but its own."""
    tree = ast.parse((PACKAGE / "tui" / "app.py").read_text(encoding="utf-8"))
    offenders = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = ast.unparse(node.value)
        own = owner in ("self", "super()", "cls")
        private = node.attr.startswith("_") and not node.attr.startswith("__")
        if (node.attr.startswith("action_") or private) and not own:
            offenders.append(f"app.py:{node.lineno} {owner}.{node.attr}")
    assert offenders == []


def test_no_caller_probes_a_backend_with_getattr() -> None:
    """Every capability is declared on core.backend.Backend; nobody asks whether it exists."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and node.args
                and "backend" in ast.unparse(node.args[0]).lower()
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
