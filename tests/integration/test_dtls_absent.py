"""Without a TLS stack (pyOpenSSL missing): coap:// works, coaps:// says how to get it.

Each case runs in a child interpreter whose import system refuses ``OpenSSL``,
which is what an install without pyOpenSSL looks like to our code.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent(
    """
    import sys

    class _NoOpenSSL:
        def find_spec(self, name, path=None, target=None):
            if name == "OpenSSL" or name.startswith("OpenSSL."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, _NoOpenSSL())
    """
)


def run_child(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(body), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_child(
        "from aiolwm2m.cli.main import main\nsys.exit(main(sys.argv[1:]))\n",
        *argv,
    )


def test_import_and_help_need_no_tls_stack() -> None:
    done = run_child(
        """
        import aiolwm2m, aiolwm2m.runtime.aio, aiolwm2m.testbed.server, aiolwm2m.dtls
        assert not any(m.startswith("OpenSSL") for m in sys.modules), sorted(sys.modules)
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    for argv in (["--help"], ["client", "--help"], ["server", "--help"]):
        assert cli(*argv).returncode == 0


def test_plain_coap_registration_without_tls_stack() -> None:
    done = run_child(
        """
        import asyncio
        from aiolwm2m.client.config import ClientConfig, ServerAccount
        from aiolwm2m.runtime.aio import Client
        from aiolwm2m.testbed.server import TestbedServer

        async def main():
            server = TestbedServer()
            await server.start()
            config = ClientConfig(endpoint="plain-ep", servers=(ServerAccount(uri=server.uri),))
            async with Client(config):
                await server.wait_registered("plain-ep", timeout=10)
            await server.stop()
            print("registered")

        asyncio.run(main())
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "registered", done.stderr


def test_coaps_fails_with_one_line_naming_the_package() -> None:
    for argv in (
        ["client", "--endpoint", "ep", "--server", "coaps://127.0.0.1:5684"],
        ["server", "--port", "0", "--psk", "ep:00112233"],
    ):
        done = cli(*argv)
        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert "pip install 'pyOpenSSL" in line and "coaps://" in line
