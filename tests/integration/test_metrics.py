"""Prometheus metrics, scraped with a real HTTP GET and parsed with prometheus_client's parser.

In process first (every documented client metric moves), then the CLI as
real processes: ``aiolwm2m server --metrics`` and ``aiolwm2m client --metrics``
side by side, and the one-line error when the extra is missing.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.metrics import ClientMetrics, request_kind, serve_metrics
from aiolwm2m.testbed.server import TestbedServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """GET the endpoint and parse it as Prometheus does."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def ascrape(url: str) -> Samples:
    return await asyncio.get_running_loop().run_in_executor(None, scrape, url)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_request_kinds() -> None:
    assert request_kind("POST", ["rd"]) == "register"
    assert request_kind("POST", ["rd", "abc"]) == "update"
    assert request_kind("DELETE", ["rd", "abc"]) == "deregister"
    assert request_kind("POST", ["bs"]) == "bootstrap_request"
    assert request_kind("POST", ["dp"]) == "send"


async def test_client_metrics_over_http() -> None:
    server = TestbedServer("127.0.0.1", 0)
    await server.start()
    config = ClientConfig(
        endpoint="dev",
        servers=(ServerAccount(uri=server.uri, lifetime=2),),
        coap=TransmissionParameters(ack_timeout=0.3, max_retransmit=1),
    )
    client = Client(config, local_host="127.0.0.1")
    metrics = ClientMetrics()
    metrics.attach(client)
    http = await serve_metrics(metrics.registry, "127.0.0.1", 0)
    url = "http://{}:{}/metrics".format(*http.address)
    try:
        await client.start()
        await client.wait_for(ev.Registered, 10)
        await client.wait_for(ev.Updated, 10)
        observation = await server.observe("dev", "/3/0/13", ContentFormat.TEXT, pmin=0, pmax=1)
        await observation.next(5)
        await observation.next(5)
        await server.stop()  # the next Update fails: an error by code and request
        await client.wait_for(ev.Error, 15)
        samples = await ascrape(url)
    finally:
        await client.stop()
        await http.close()
        await server.stop()
    p = "aiolwm2m_client_"
    assert value(samples, p + "registrations_total", endpoint="dev", ssid="1") == 1
    assert value(samples, p + "updates_total", endpoint="dev", ssid="1") >= 1
    assert value(samples, p + "notifications_sent_total", endpoint="dev", ssid="1") >= 2
    errors = {
        dict(labels)["code"]: v
        for (name, labels), v in samples.items()
        if name == p + "errors_total"
    }
    assert sum(errors.values()) >= 1, samples
    count = value(samples, p + "request_duration_seconds_count", endpoint="dev", request="register")
    assert count == 1
    assert (
        value(
            samples,
            p + "request_duration_seconds_bucket",
            endpoint="dev",
            request="register",
            le="1.0",
        )
        == 1
    ), "a loopback Register answers within 1 s"
    states = {
        dict(labels)["state"]: v
        for (name, labels), v in samples.items()
        if name == p + "server_state"
    }
    assert sum(states.values()) == 1 and states.get("registered") == 0, states
    assert (
        p + "notifications_dropped_total",
        frozenset({("endpoint", "dev"), ("ssid", "1")}),
    ) in samples


async def test_endpoint_answers_only_get_metrics() -> None:
    metrics = ClientMetrics()
    http = await serve_metrics(metrics.registry, "127.0.0.1", 0)
    base = "http://{}:{}".format(*http.address)

    def status(path: str, method: str = "GET") -> int:
        request = urllib.request.Request(base + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, status, "/metrics") == 200
        assert await loop.run_in_executor(None, status, "/nothing") == 404
        assert await loop.run_in_executor(None, status, "/metrics", "POST") == 405
    finally:
        await http.close()


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_server_and_client_serve_metrics() -> None:
    coap, server_http, client_http = (
        _free_port(socket.SOCK_DGRAM),
        _free_port(socket.SOCK_STREAM),
        _free_port(socket.SOCK_STREAM),
    )
    cli = [sys.executable, "-m", "aiolwm2m"]
    server = subprocess.Popen(
        [*cli, "server", "--port", str(coap), "--metrics", f"127.0.0.1:{server_http}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    # The client starts once the server listens: a Register into a closed port
    # would be a network error and a 60 s retry, not what this test is about.
    while "listening on" not in (line := server.stderr.readline()):
        assert line, "the server ended before listening"
    client = subprocess.Popen(
        [
            *(*cli, "client", "--endpoint", "metered", "--server", f"coap://127.0.0.1:{coap}"),
            *("--metrics", f"127.0.0.1:{client_http}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                served = scrape(f"http://127.0.0.1:{server_http}/metrics")
                if value(served, "aiolwm2m_server_registrations") == 1:
                    break
            except (OSError, urllib.error.URLError):
                pass
            assert time.monotonic() < deadline, "the CLI client never registered"
            assert server.poll() is None and client.poll() is None
            time.sleep(0.2)
        assert value(served, "aiolwm2m_server_events_total", kind="registered") == 1
        assert value(served, "aiolwm2m_server_datagrams_received_total") >= 1
        mine = scrape(f"http://127.0.0.1:{client_http}/metrics")
        assert value(mine, "aiolwm2m_client_registrations_total", endpoint="metered", ssid="1") == 1
    finally:
        for proc in (client, server):
            proc.terminate()
            proc.wait(timeout=20)


def test_metrics_without_the_extra_is_one_line_and_exit_2() -> None:
    program = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from aiolwm2m.cli.main import main\n"
        "sys.exit(main(['server', '--port', '0', '--metrics', '127.0.0.1:0']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()[-1:]
    assert "pip install 'aiolwm2m[metrics]'" in line
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("bad", ["nocolon", "127.0.0.1:99999"])
def test_metrics_address_is_checked(bad: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiolwm2m", "client", "--metrics", bad],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--metrics" in done.stderr
