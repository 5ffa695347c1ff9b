"""The built wheel, installed into a fresh venv, works the way a package-index user meets it.

One test on purpose (it costs about a minute): build the wheel from this
checkout, install it without DTLS (its dependencies but pyOpenSSL), then,
from a directory outside the checkout so nothing comes from ``src/``:
``aiolwm2m --version``, ``python -m aiolwm2m --help``, a shipped scenario by
name, the shipped example module's ``--help``, ``import aiolwm2m`` and the
asyncio runtime with no TLS stack, and ``completion bash``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from aiolwm2m import __version__

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _requirements(wheel: Path) -> list[str]:
    """The wheel's own Requires-Dist without extras: what `pip install` would bring."""
    name = f"aiolwm2m-{__version__}.dist-info/METADATA"
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(name).decode()
    return [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_installs_and_runs_without_dtls(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], ROOT
    )
    [wheel] = dist.glob("aiolwm2m-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert f"aiolwm2m-{__version__}.dist-info/licenses/LICENSE" in names
    assert "aiolwm2m/scenarios/blackhole.toml" in names
    assert "aiolwm2m/examples/bootstrap.toml" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, script = env_dir / "bin" / "python", env_dir / "bin" / "aiolwm2m"
    deps = [r for r in _requirements(wheel) if not r.lower().startswith("pyopenssl")]
    assert len(deps) == len(_requirements(wheel)) - 1, "pyOpenSSL is a dependency to leave out"
    _run([str(python), "-m", "pip", "install", "-q", *deps], tmp_path)
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    assert _run([str(script), "--version"], outside).stdout.strip() == f"aiolwm2m {__version__}"
    assert "scenario" in _run([str(python), "-m", "aiolwm2m", "--help"], outside).stdout
    listing = _run([str(script), "scenario", "--list"], outside).stdout
    assert "server_restart" in listing and "impossible" in listing
    verdict = _run([str(script), "scenario", "notify_reset", "-q"], outside).stdout
    assert "VERDICT: PASS (notify-reset)" in verdict
    example = _run([str(python), "-m", "aiolwm2m.examples.custom_object", "--help"], outside)
    assert "3303" in example.stdout or "temperature" in example.stdout
    probe = _run(
        [
            str(python),
            "-c",
            "import importlib.util, aiolwm2m, aiolwm2m.runtime.aio, aiolwm2m.testbed.server;"
            "print(importlib.util.find_spec('OpenSSL') is None, aiolwm2m.__file__)",
        ],
        outside,
    ).stdout.split()
    assert probe[0] == "True", "pyOpenSSL must be absent for this check"
    assert probe[1].startswith(str(env_dir)), "the installed package, not src/, was imported"
    assert (
        "complete -o default -F _aiolwm2m"
        in _run([str(script), "completion", "bash"], outside).stdout
    )
