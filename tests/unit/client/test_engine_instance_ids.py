"""Bootstrap keeps the instance ids it was given (issue 12 item 2).

Wakaama's Bootstrap-Server writes the account as /0/1 and /1/1, a Leshan
configuration as /1/2; the client used to register the account as </1/0>, so
every later Read/Write/Execute on /1/2/… got 4.04. The ids must hold in the
Register payload, for server requests, in storage and after a restart, also
for several accounts with sparse ids. Real testbed servers on the virtual
clock, the real on-disk store.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from simkit import operate

from aiolwm2m.accounts import ServerAccount, place_instances
from aiolwm2m.client.bootstrap import Provisioning
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import ServerState
from aiolwm2m.coap.message import Code
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.runtime.storage import Store
from aiolwm2m.testbed.bootstrap import BootstrapConfig, ProvisionedServer
from aiolwm2m.testbed.operations import (
    OperationRequest,
    OperationResult,
    execute_request,
    read_request,
    write_request,
)
from aiolwm2m.testbed.sim import SimBootstrapServer, SimServer

BS_ADDR = ("10.0.0.9", 5683)


class World:
    """LwM2M servers, a Bootstrap-Server provisioning them, and a client of its own."""

    def __init__(self, accounts: dict[int, tuple[int, int]], store: Path | None = None) -> None:
        """``accounts``: ssid -> (Security instance id, Server instance id) to write."""
        self.net = SimNetwork(seed=5)
        self.servers: dict[int, SimServer] = {}
        provisioned = []
        for n, (ssid, (sec, srv)) in enumerate(sorted(accounts.items())):
            server = SimServer(self.net, (f"10.0.0.{20 + n}", 5683))
            server.start()
            self.servers[ssid] = server
            provisioned.append(
                ProvisionedServer(
                    uri=server.uri,
                    ssid=ssid,
                    server={1: 600},
                    security_instance=sec,
                    server_instance=srv,
                )
            )
        self.bs = SimBootstrapServer(self.net, BootstrapConfig(default=tuple(provisioned)), BS_ADDR)
        self.bs.start()
        self.store = store

    def client(self, seed: int = 1) -> SimClient:
        bootstrap = ServerAccount(uri=f"coap://{BS_ADDR[0]}:{BS_ADDR[1]}")
        config = ClientConfig(
            endpoint="dev-1",
            bootstrap=bootstrap,
            storage_path=None if self.store is None else str(self.store),
        )
        client = SimClient(self.net, config, rng=random.Random(seed))
        client.start()
        return client

    def registered(self, client: SimClient) -> bool:
        states = client.engine.server_states()
        return bool(states) and all(
            states.get(ssid) is ServerState.REGISTERED for ssid in self.servers
        )

    def operate(self, ssid: int, request: OperationRequest) -> OperationResult:
        return operate(self.net, self.servers[ssid], request)


def server_links(world: World, ssid: int) -> list[str]:
    links = world.servers[ssid].core.registrations["dev-1"].links.split(",")
    return [link for link in links if link.startswith("</1/")]


@pytest.mark.parametrize("iid", [1, 2], ids=["wakaama-1-1", "leshan-1-2"])
def test_the_account_keeps_the_server_instance_id_the_bootstrap_wrote(iid: int) -> None:
    world = World({7: (iid, iid)})
    client = world.client()
    assert world.net.clock.run_until_true(lambda: world.registered(client), 60)
    assert server_links(world, 7) == [f"</1/{iid}>"]
    read = world.operate(7, read_request(f"/1/{iid}/0", ContentFormat.TEXT))
    assert (read.code, read.payload) == (Code.CONTENT, b"7")
    assert world.operate(7, read_request("/1/0/0", ContentFormat.TEXT)).code == Code.NOT_FOUND
    # A Write of the lifetime reaches the account (and goes out in an Update) ...
    written = world.operate(7, write_request(f"/1/{iid}/1", 900, ContentFormat.TEXT))
    assert written.code == Code.CHANGED
    world.net.clock.run_for(1)
    assert world.servers[7].core.registrations["dev-1"].lifetime == 900
    # ... and an Execute of the Registration Update Trigger too.
    updates = world.servers[7].core.registrations["dev-1"].updates
    assert world.operate(7, execute_request(f"/1/{iid}/8")).code == Code.CHANGED
    world.net.clock.run_for(1)
    assert world.servers[7].core.registrations["dev-1"].updates == updates + 1
    # What a bootstrap starts from next time, and Bootstrap-Discover, show the same ids.
    provisioning = client.engine.provisioning()
    assert sorted(provisioning.server) == [iid]
    assert iid in provisioning.security and provisioning.security[iid][10] == 7


def test_several_accounts_with_sparse_ids_each_keep_theirs() -> None:
    world = World({3: (4, 9), 8: (11, 2)})
    client = world.client()
    assert world.net.clock.run_until_true(lambda: world.registered(client), 60)
    for ssid in (3, 8):
        assert server_links(world, ssid) == ["</1/2>", "</1/9>"]
    # Access Control is on with two servers: each owns its own instance.
    for ssid, iid in ((3, 9), (8, 2)):
        read = world.operate(ssid, read_request(f"/1/{iid}/0", ContentFormat.TEXT))
        assert (read.code, read.payload) == (Code.CONTENT, str(ssid).encode())
    provisioning = client.engine.provisioning()
    assert sorted(provisioning.server) == [2, 9]
    assert {iid: inst[10] for iid, inst in provisioning.security.items() if 10 in inst} == {
        4: 3,
        11: 8,
    }


def test_the_ids_are_stored_and_back_after_a_restart(tmp_path: Path) -> None:
    store_path = tmp_path / "client.db"
    world = World({7: (1, 2)}, store_path)
    first = world.client()
    assert world.net.clock.run_until_true(lambda: world.registered(first), 60)
    first.stop()  # power loss: no De-register
    stored = Store(store_path).load().provisioning
    assert stored is not None
    assert sorted(stored["1"]) == ["2"] and "1" in stored["0"]
    world.bs.stop()  # the restarted client must not need the Bootstrap-Server again
    world.net.clock.run_for(10)
    second = world.client(seed=2)
    assert world.net.clock.run_until_true(lambda: world.registered(second), 60)
    assert not second.named("bootstrap_started")
    assert server_links(world, 7) == ["</1/2>"]
    read = world.operate(7, read_request("/1/2/1", ContentFormat.TEXT))
    assert (read.code, read.payload) == (Code.CONTENT, b"600")
    assert sorted(second.engine.provisioning().server) == [2]


def test_the_bootstrap_account_keeps_its_security_instance_id() -> None:
    """The Bootstrap-Server's own /0 instance stays where it was (Bootstrap-Delete skips it)."""
    world = World({7: (3, 0)})
    client = world.client()
    assert world.net.clock.run_until_true(lambda: world.registered(client), 60)
    provisioning = client.engine.provisioning()
    found = provisioning.bootstrap_instance()
    assert found is not None and found[0] == 0, "factory state: the bootstrap account at /0/0"
    assert sorted(provisioning.security) == [0, 3]


def test_instance_ids_of_a_configuration_are_numbered_in_order() -> None:
    assert place_instances([None, None, None]) == [0, 1, 2]
    assert place_instances([None, 0, None]) == [1, 0, 2]
    assert place_instances([5, None]) == [5, 0]
    with pytest.raises(ConfigError, match="share an instance id"):
        place_instances([3, 3])
    servers = (
        ServerAccount("coap://a", short_server_id=1),
        ServerAccount("coap://b", short_server_id=2, server_instance=0, security_instance=0),
    )
    prov = Provisioning.from_accounts(servers, ServerAccount("coap://bs"))
    assert {iid: inst[0] for iid, inst in prov.server.items()} == {1: 1, 0: 2}
    assert {iid: inst[0] for iid, inst in prov.security.items()} == {
        1: "coap://a",
        0: "coap://b",
        2: "coap://bs",
    }


@pytest.mark.parametrize("bad", [-1, 65535, True, "1"])
def test_an_instance_id_out_of_range_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="server_instance"):
        ServerAccount("coap://a", server_instance=bad)  # type: ignore[arg-type]
