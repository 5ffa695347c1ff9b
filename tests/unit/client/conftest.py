"""Fixtures for engine tests on the virtual clock (helpers live in ``simkit``)."""

from __future__ import annotations

import pytest
from simkit import MakeClient, client_factory

from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.sim import SimServer


@pytest.fixture
def net() -> SimNetwork:
    return SimNetwork(seed=7)


@pytest.fixture
def server(net: SimNetwork) -> SimServer:
    srv = SimServer(net)
    srv.start()
    return srv


@pytest.fixture
def make_client(net: SimNetwork, server: SimServer) -> MakeClient:
    """Build (and by default start) a client of ``server``; keywords override the config."""
    return client_factory(net, server.uri)
