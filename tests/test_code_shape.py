"""The code's shape: no function of the package over 80 lines, text constants aside.

A long string (a template, a help text) counts as one line: it is text, not logic.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "convogen_tui"
MAX_LINES = 80


def _text_lines(node: ast.AST) -> int:
    """Lines inside a function taken by multi-line string constants, less one each."""
    extra = 0
    for child in ast.walk(node):
        text = isinstance(child, ast.JoinedStr) or (
            isinstance(child, ast.Constant) and isinstance(child.value, str)
        )
        if text and child.end_lineno is not None:
            extra += child.end_lineno - child.lineno
    return extra


def long_functions(root: Path = PACKAGE, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function longer than ``limit`` lines of code."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1 - _text_lines(node)
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_over_80_lines() -> None:
    assert long_functions() == []


def test_the_count_skips_text_and_counts_code(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    text = '    help = """\n' + "words\n" * 200 + '"""\n'
    (tmp_path / "a.py").write_text(f"def long():\n{body}\n\ndef wordy():\n{text}    return help\n")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/a.py:1 long (82 lines)"]


if __name__ == "__main__":
    print("\n".join(long_functions()) or "none")
