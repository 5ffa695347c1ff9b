"""The layering rules of ARCHITECTURE.md, checked on the source (part of ``make test``).

The sans-IO core (``coap/``, ``lwm2m/``, ``client/``) must not reach IO —
no asyncio, sockets, SQLite or clocks — and every package imports only the
layers below it: accounts < coap < lwm2m < client < runtime < testbed < fleet < cli (``dtls/``
beside the runtime; the client may use only its pure timing policy). A
violation anywhere in a file counts: inside a function, under
``TYPE_CHECKING``, or through ``importlib.import_module("...")``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "aiolwm2m"

#: Standard-library modules that mean IO (or a wall clock) in a sans-IO package.
IO_MODULES = ("asyncio", "socket", "sqlite3", "time")
SANS_IO = ("coap", "lwm2m", "client", "accounts.py")

#: ``package: packages (and modules) it must not import``.
LAYERS: dict[str, tuple[str, ...]] = {
    # The account types are a leaf: lwm2m/ and client/ both build on them.
    "accounts.py": ("coap", "lwm2m", "client", "dtls", "runtime", "testbed", "fleet", "cli"),
    "coap": ("lwm2m", "client", "dtls", "runtime", "testbed", "fleet", "cli"),
    "lwm2m": ("client", "dtls", "runtime", "testbed", "fleet", "cli"),
    "client": ("dtls", "runtime", "testbed", "fleet", "cli"),
    "runtime": ("testbed", "fleet", "cli"),
    "testbed": ("fleet", "cli"),
    # Fleets run clients against servers (simulated ones from the testbed); the CLI drives them.
    "fleet": ("cli",),
    "dtls": ("coap", "lwm2m", "client", "runtime", "testbed", "fleet", "cli"),
}
#: Modules of a forbidden package a layer may still use (pure data, no IO).
ALLOWED: dict[str, tuple[str, ...]] = {"client": ("aiolwm2m.dtls.policy",)}


@dataclass(frozen=True)
class Import:
    file: str  # relative to the package folder, e.g. "coap/layer.py"
    line: int
    module: str  # absolute dotted name

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.module}"


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    name, is_package = _module_name(path, root)
    package = name if is_package else name.rpartition(".")[0]
    rel = path.relative_to(root).as_posix()
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(Import(rel, node.lineno, base))
            # ``from aiolwm2m.client import config`` imports the submodule too.
            found += [Import(rel, node.lineno, f"{base}.{a.name}") for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(rel, node.lineno, node.args[0].value))
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path) -> list[tuple[str, Import]]:
    """(rule, import) for every import that breaks a layering rule under ``root``."""
    out: list[tuple[str, Import]] = []
    for path in sorted(root.rglob("*.py")):
        layer = path.relative_to(root).parts[0]
        for imp in imports_of(path, root):
            if layer in SANS_IO:
                out += [
                    (f"{layer} is sans-IO: no {m}", imp)
                    for m in IO_MODULES
                    if _within(imp.module, m)
                ]
            allowed = ALLOWED.get(layer, ())
            for above in LAYERS.get(layer, ()):
                if _within(imp.module, f"{root.name}.{above}") and not any(
                    _within(imp.module, a) for a in allowed
                ):
                    out.append((f"{layer} must not import {above}", imp))
    # ``from aiolwm2m.client import config`` reports the package and the submodule: keep one.
    seen: set[tuple[str, str, int]] = set()
    unique = []
    for rule, imp in out:
        if (rule, imp.file, imp.line) not in seen:
            seen.add((rule, imp.file, imp.line))
            unique.append((rule, imp))
    return unique


def test_layers_hold() -> None:
    broken = [f"{rule}: {imp}" for rule, imp in violations(SRC / PACKAGE)]
    assert not broken, "layering rules broken:\n" + "\n".join(broken)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def test_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "coap/__init__.py": "",
            "coap/layer.py": "def f():\n    import asyncio.events\n",
            "lwm2m/__init__.py": "",
            "lwm2m/objects/__init__.py": "",
            "lwm2m/objects/x.py": "from ...client import engine\nfrom time import monotonic\n",
            "client/__init__.py": "",
            "client/a.py": (
                "import importlib\nimportlib.import_module('sqlite3')\n"
                "from aiolwm2m.dtls.policy import HandshakeTiming\n"
                "from aiolwm2m.dtls import aio\n"
            ),
            "runtime/__init__.py": "",
            "runtime/sim.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from aiolwm2m.testbed.core import ServerCore\n",
            "testbed/ok.py": "import asyncio, socket\nfrom aiolwm2m.runtime import sim\n",
        },
    )
    found = {(rule, str(imp)) for rule, imp in violations(root)}
    assert found == {
        ("coap is sans-IO: no asyncio", "coap/layer.py:2 imports asyncio.events"),
        ("lwm2m must not import client", "lwm2m/objects/x.py:1 imports aiolwm2m.client"),
        ("lwm2m is sans-IO: no time", "lwm2m/objects/x.py:2 imports time"),
        ("client is sans-IO: no sqlite3", "client/a.py:2 imports sqlite3"),
        ("client must not import dtls", "client/a.py:4 imports aiolwm2m.dtls"),
        ("runtime must not import testbed", "runtime/sim.py:3 imports aiolwm2m.testbed.core"),
    }


def test_relative_imports_resolve_from_packages_and_modules(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "lwm2m/__init__.py": "from .objects import server\n",
            "lwm2m/objects/__init__.py": "from . import device\nfrom ..formats import tlv\n",
        },
    )
    init = imports_of(root / "lwm2m/__init__.py", root)
    objects = imports_of(root / "lwm2m/objects/__init__.py", root)
    assert [i.module for i in init] == ["aiolwm2m.lwm2m.objects", "aiolwm2m.lwm2m.objects.server"]
    assert [i.module for i in objects] == [
        "aiolwm2m.lwm2m.objects",
        "aiolwm2m.lwm2m.objects.device",
        "aiolwm2m.lwm2m.formats",
        "aiolwm2m.lwm2m.formats.tlv",
    ]
