"""The package root is the supported surface: every exported name loads, cheaply.

Also checks the rule of COMMON/ARCHITECTURE that every module declares ``__all__``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import aiolwm2m

SRC = Path(__file__).resolve().parents[2] / "src" / "aiolwm2m"


def test_every_exported_name_resolves() -> None:
    for name in aiolwm2m.__all__:
        assert getattr(aiolwm2m, name) is not None, name
    assert aiolwm2m.events.Registered.name == "registered"
    assert sorted(dir(aiolwm2m)) == sorted(aiolwm2m.__all__)


def test_a_first_program_needs_one_import_line() -> None:
    from aiolwm2m import Client, ClientConfig, ServerAccount  # noqa: F401 (the README's line)


def test_importing_the_root_loads_no_runtime_nor_extras() -> None:
    code = (
        "import sys, aiolwm2m\n"
        "heavy = [m for m in sys.modules if m.startswith(("
        "'aiolwm2m.runtime', 'aiolwm2m.client', 'asyncio', 'OpenSSL', 'prometheus_client',"
        " 'aiohttp', 'pyroute2', 'rich'))]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_module_declares_all() -> None:
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }
        if "__all__" not in names:
            missing.append(str(path.relative_to(SRC)))
    assert not missing, missing
