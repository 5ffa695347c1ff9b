"""docs/firmware.md shows the state machines and failure table the code runs (not stale)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def drawer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "draw_firmware_states", ROOT / "scripts" / "draw_firmware_states.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_firmware_md_is_generated_from_the_transition_tables() -> None:
    draw = drawer()
    current = (ROOT / "docs" / "firmware.md").read_text(encoding="utf-8")
    assert draw.render(current) == current, "run: python scripts/draw_firmware_states.py"


def test_the_check_notices_a_stale_diagram() -> None:
    draw = drawer()
    current = (ROOT / "docs" / "firmware.md").read_text(encoding="utf-8")
    stale = current.replace("downloading --> downloaded: downloaded [0]", "downloading --> idle")
    assert stale != current
    assert draw.render(stale) == current
    assert "| `integrity` | no | 5 integrity_failure | 12 asset_integrity_failed |" in current
