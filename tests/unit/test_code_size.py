"""``client/`` stays readable: no function over 60 lines, no class over 500 (issue 11).

Issue 11 split a 1 900-line engine class, a 930-line operation handler and
a 658-line firmware coordinator; this keeps every part of ``client/`` that
size. Lines are counted as the AST spans them (``end_lineno - lineno + 1``,
decorators not included, docstrings and blank lines included), so a part
cannot pass by cramming its statements.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aiolwm2m.client

MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 500
CLIENT = Path(aiolwm2m.client.__file__).parent

_LIMITS: dict[type[ast.AST], tuple[str, int]] = {
    ast.FunctionDef: ("function", MAX_FUNCTION_LINES),
    ast.AsyncFunctionDef: ("function", MAX_FUNCTION_LINES),
    ast.ClassDef: ("class", MAX_CLASS_LINES),
}


def oversize(source: str, filename: str) -> list[str]:
    """``"file:line kind name: N lines (limit L)"`` for every definition over its limit."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        kind_limit = _LIMITS.get(type(node))
        if kind_limit is None:
            continue
        kind, limit = kind_limit
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        assert node.end_lineno is not None
        lines = node.end_lineno - node.lineno + 1
        if lines > limit:
            found.append(
                f"{filename}:{node.lineno} {kind} {node.name}: {lines} lines (limit {limit})"
            )
    return found


def test_no_function_over_60_lines_and_no_class_over_500_in_client() -> None:
    files = sorted(CLIENT.rglob("*.py"))
    assert len(files) > 20, f"expected the client package under {CLIENT}"
    found = [
        line
        for path in files
        for line in oversize(path.read_text(encoding="utf-8"), str(path.relative_to(CLIENT)))
    ]
    assert not found, "split these (extract named steps):\n" + "\n".join(found)


def test_the_check_sees_a_long_function_and_a_long_class() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    source = f"def long():\n{body}\n\ndef short():\n    return 1\n\n\nclass Big:\n" + (
        "".join(f"    def m{i}(self) -> int:\n        return {i}\n\n" for i in range(167))
    )
    found = oversize(source, "sample.py")
    assert found == [
        "sample.py:1 function long: 61 lines (limit 60)",
        "sample.py:68 class Big: 501 lines (limit 500)",
    ]
