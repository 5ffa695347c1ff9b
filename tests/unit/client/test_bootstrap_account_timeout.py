"""Bootstrap-Server Account Timeout (Security /0/x/12, Core 1.1.1 §5.2 and Appendix E.1).

The client purges its Bootstrap-Server account that many seconds after the
successful Bootstrap-Finish that left the account in place (Anjay's reading:
the purge is scheduled on each Finish); 0 or absent is never. After the purge
a failure that would bootstrap gives up, as without a bootstrap account, and
the purge (or its pending deadline) survives a restart through the on-disk
store. Real testbed servers on the virtual clock.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from simkit import EXACT_COAP, account, operate

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.bootstrap import SEC_BS_ACCOUNT_TIMEOUT, Provisioning
from aiolwm2m.client.config import ClientConfig, load_config
from aiolwm2m.client.engine import Snapshot
from aiolwm2m.coap.message import Code
from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.runtime.storage import CorruptStore, Store
from aiolwm2m.testbed.bootstrap import BootstrapConfig, ProvisionedServer
from aiolwm2m.testbed.core import FaultKind, FaultRule, Operation
from aiolwm2m.testbed.operations import execute_request
from aiolwm2m.testbed.sim import SimBootstrapServer, SimServer

A_ADDR = ("10.0.0.1", 5683)
B_ADDR = ("10.0.0.5", 5683)
BS_ADDR = ("10.0.0.9", 5683)
BS_URI = f"coap://{BS_ADDR[0]}:{BS_ADDR[1]}"
TIMEOUT = 100


@dataclass
class World:
    net: SimNetwork
    a: SimServer
    b: SimServer
    bs: SimBootstrapServer
    store: Path | None = None

    def client(
        self,
        *,
        servers: tuple[ServerAccount, ...] = (),
        bootstrap: ServerAccount | None = None,
        seed: int = 3,
    ) -> SimClient:
        config = ClientConfig(
            endpoint="dev-1",
            servers=servers,
            bootstrap=bootstrap or ServerAccount(uri=BS_URI),
            coap=EXACT_COAP,
            storage_path=None if self.store is None else str(self.store),
        )
        client = SimClient(self.net, config, rng=random.Random(seed))
        client.start()
        return client

    def bootstrapped(self, client: SimClient) -> float:
        """Run until the client's Finish was accepted; when that was."""
        assert self.net.clock.run_until_true(lambda: bool(client.named("bootstrapped")), 60)
        return client.named("bootstrapped")[-1].time


def make_world(account_timeout: int | None = TIMEOUT, store: Path | None = None) -> World:
    net = SimNetwork(seed=11)
    a, b = SimServer(net, A_ADDR), SimServer(net, B_ADDR)
    a.start()
    b.start()
    config = BootstrapConfig(
        default=(ProvisionedServer(uri=b.uri, ssid=2, server={1: 600}),),
        account_timeout=account_timeout,
    )
    bs = SimBootstrapServer(net, config, BS_ADDR)
    bs.start()
    return World(net, a, b, bs, store)


def purges(client: SimClient) -> list[ev.BootstrapAccountPurged]:
    return [e for e in client.events if isinstance(e, ev.BootstrapAccountPurged)]


def update_reset_then_wait(world: World, client: SimClient) -> None:
    """The failure table's "Update × Reset → bootstrap" cell, on the provisioned server."""
    world.b.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET, count=1))
    client.trigger_update(2)
    world.net.clock.run_for(30)


def test_a_timeout_written_by_the_bootstrap_server_purges_the_account_on_time() -> None:
    world = make_world()
    client = world.client()
    finished = world.bootstrapped(client)
    assert "bs_write" in world.bs.kinds("dev-1")
    # The written value is the account's, and /0 reports it beside /0/x/11.
    assert client.engine.bootstrap_account is not None
    assert client.engine.bootstrap_account.bootstrap_account_timeout == TIMEOUT
    found = client.engine.provisioning().bootstrap_instance()
    assert found is not None and found[1][SEC_BS_ACCOUNT_TIMEOUT] == TIMEOUT
    world.net.clock.run_until(finished + TIMEOUT - 0.001)
    assert purges(client) == [] and client.engine.bootstrap_account is not None
    world.net.clock.run_until(finished + TIMEOUT)
    (purged,) = purges(client)
    assert purged.time == pytest.approx(finished + TIMEOUT, abs=1e-9)
    assert purged.uri == BS_URI
    assert purged.to_dict() == {
        "time": purged.time,
        "event": "bootstrap_account_purged",
        "uri": BS_URI,
    }
    assert client.engine.bootstrap_account is None
    assert client.engine.provisioning().bootstrap_instance() is None
    # The registration it provisioned is untouched.
    assert client.engine.registered(2)


def test_after_the_purge_a_failure_that_would_bootstrap_gives_up() -> None:
    world = make_world()
    client = world.client()
    finished = world.bootstrapped(client)
    world.net.clock.run_until(finished + TIMEOUT)
    assert purges(client)
    started = len(client.named("bootstrap_started"))
    update_reset_then_wait(world, client)
    (error,) = client.errors(ev.ErrorCode.RESET)
    assert error.request == "update"
    assert len(client.named("bootstrap_started")) == started
    assert len(client.named("server_gave_up")) == 1
    assert client.named("all_connections_failed")


def test_after_the_purge_the_bootstrap_request_trigger_is_4_05() -> None:
    # The client is now one without a Bootstrap-Server account, which answers
    # the Execute 4.05 (docs/bootstrap.md); it used to answer 2.04, the Server
    # object having been built from a configuration with an account.
    world = make_world()
    client = world.client()
    finished = world.bootstrapped(client)
    world.net.clock.run_until(finished + TIMEOUT)
    assert purges(client)
    result = operate(world.net, world.b, execute_request("/1/0/9"))
    world.net.clock.run_for(30)
    assert result.code == Code.METHOD_NOT_ALLOWED
    assert b"no Bootstrap-Server account" in result.payload
    assert client.errors(ev.ErrorCode.NOT_ALLOWED) == []  # refused by the Execute
    assert len(client.named("bootstrap_started")) == 1
    assert client.engine.registered(2)


def test_before_the_deadline_the_same_failure_still_bootstraps() -> None:
    world = make_world()
    client = world.client()
    finished = world.bootstrapped(client)
    world.net.clock.run_until(finished + 10)
    update_reset_then_wait(world, client)
    assert len(client.named("bootstrap_started")) == 2
    assert purges(client) == []


def test_a_negative_timeout_written_by_the_bootstrap_server_is_refused_at_finish() -> None:
    # Core 1.1.1, Bootstrap and Configuration Consistency: an unusable value is
    # reported in the answer to Finish (4.06), and the account keeps the values
    # it had (§5.2 step 3); it used to be answered 2.04.
    world = make_world(account_timeout=-5)
    client = world.client()
    world.net.clock.run_for(30)
    assert "finish_rejected" in world.bs.kinds()
    assert client.named("bootstrapped") == []
    assert client.engine.bootstrap_account is not None
    assert client.engine.bootstrap_account.bootstrap_account_timeout == 0


@pytest.mark.parametrize("written", [None, 0], ids=["absent", "zero"])
def test_an_absent_or_zero_timeout_never_purges(written: int | None) -> None:
    world = make_world(account_timeout=written)
    client = world.client()
    world.bootstrapped(client)
    world.net.clock.run_for(7 * 86_400)
    assert purges(client) == []
    assert client.engine.bootstrap_account is not None
    assert client.engine.snapshot().bootstrap_purge_at is None
    found = client.engine.provisioning().bootstrap_instance()
    assert found is not None and SEC_BS_ACCOUNT_TIMEOUT not in found[1]


def test_a_zero_written_by_a_later_bootstrap_cancels_the_deadline() -> None:
    world = make_world()
    client = world.client()
    finished = world.bootstrapped(client)
    world.bs.core.config.account_timeout = 0
    world.net.clock.run_until(finished + 10)
    update_reset_then_wait(world, client)
    assert len(client.named("bootstrapped")) == 2
    world.net.clock.run_until(finished + 5 * TIMEOUT)
    assert purges(client) == []
    assert client.engine.bootstrap_account is not None


def test_a_configured_timeout_starts_at_the_first_successful_finish() -> None:
    world = make_world(account_timeout=None)
    bootstrap = ServerAccount(uri=BS_URI, bootstrap_account_timeout=50)
    # Registered with its factory server: no bootstrap, so no timer.
    client = world.client(servers=(account(world.a.uri),), bootstrap=bootstrap)
    world.net.clock.run_for(500)
    assert client.engine.registered(1)
    assert purges(client) == [] and client.engine.bootstrap_account is not None
    # A bootstrap that leaves the account untouched starts the configured timeout.
    world.a.core.add_rule(FaultRule(Operation.UPDATE, FaultKind.RESET))
    client.trigger_update(1)
    finished = world.bootstrapped(client)
    world.net.clock.run_until(finished + 50)
    (purged,) = purges(client)
    assert purged.time == pytest.approx(finished + 50, abs=1e-9)


# -- restarts with the on-disk store -----------------------------------------------------


def test_a_restart_before_the_deadline_keeps_it(tmp_path: Path) -> None:
    world = make_world(store=tmp_path / "client.db")
    first = world.client()
    finished = world.bootstrapped(first)
    world.net.clock.run_until(finished + 30)
    first.stop()  # power loss
    world.net.clock.run_until(finished + 40)
    second = world.client(seed=4)
    assert second.engine.bootstrap_account is not None
    world.net.clock.run_until(finished + TIMEOUT - 0.001)
    assert purges(second) == []
    assert second.named("bootstrap_started") == []  # resumed, not bootstrapped again
    world.net.clock.run_until(finished + TIMEOUT)
    (purged,) = purges(second)
    assert purged.time == pytest.approx(finished + TIMEOUT, abs=1e-6)
    assert Store(tmp_path / "client.db").load().bootstrap_purged


def test_a_restart_after_the_deadline_purges_at_start(tmp_path: Path) -> None:
    world = make_world(store=tmp_path / "client.db")
    first = world.client()
    finished = world.bootstrapped(first)
    world.net.clock.run_until(finished + 30)
    first.stop()
    world.net.clock.run_until(finished + 3 * TIMEOUT)
    second = world.client(seed=4)
    (purged,) = purges(second)
    assert purged.time == world.net.clock.now
    assert second.engine.bootstrap_account is None
    world.net.clock.run_for(10)
    update_reset_then_wait(world, second)
    assert second.named("bootstrap_started") == []
    assert second.named("server_gave_up")


def test_a_purge_survives_a_restart(tmp_path: Path) -> None:
    world = make_world(store=tmp_path / "client.db")
    first = world.client()
    finished = world.bootstrapped(first)
    world.net.clock.run_until(finished + TIMEOUT + 5)
    assert purges(first)
    first.stop()
    second = world.client(seed=4)
    world.net.clock.run_for(10)
    assert purges(second) == []  # reported once, when it happened
    # The configured account stays gone too.
    assert second.engine.bootstrap_account is None
    assert operate(world.net, world.b, execute_request("/1/0/9")).code == Code.METHOD_NOT_ALLOWED
    update_reset_then_wait(world, second)
    assert second.named("bootstrap_started") == []


def test_the_store_keeps_the_deadline_on_its_clock(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    assert store.load() == Snapshot()  # no row, as in a store of the previous version
    store.save(Snapshot(bootstrap_purge_at=10.0), time_offset=1000.0)
    assert Store(path).load().bootstrap_purge_at == 1010.0
    store.save(Snapshot(bootstrap_purged=True), time_offset=1000.0)
    assert Store(path).load() == Snapshot(bootstrap_purged=True)
    store.save(Snapshot(), time_offset=1000.0)
    assert Store(path).load() == Snapshot()
    assert Snapshot(bootstrap_purge_at=10.0).shifted(5).bootstrap_purge_at == 15.0


@pytest.mark.parametrize("row", ['{"at": "soon"}', '{"purged": false}', "[]", "not json"])
def test_a_malformed_purge_row_is_a_corrupt_store(tmp_path: Path, row: str) -> None:
    path = tmp_path / "state.db"
    Store(path).save(Snapshot(bootstrap_purged=True))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'bootstrap_purge'", (row,))
    with pytest.raises(CorruptStore, match="bootstrap_purge"):
        Store(path).load()


# -- configuration ------------------------------------------------------------------------


def test_the_configured_timeout_is_validated_and_reported_in_resource_12() -> None:
    with pytest.raises(ConfigError, match="bootstrap_account_timeout"):
        ServerAccount(uri=BS_URI, bootstrap_account_timeout=-1)
    config = load_config(
        {"endpoint": "dev-1", "bootstrap": {"uri": BS_URI, "bootstrap_account_timeout": 3600}}
    )
    assert config.bootstrap is not None
    assert config.bootstrap.bootstrap_account_timeout == 3600
    found = Provisioning.from_config(config).bootstrap_instance()
    assert found is not None and found[1][SEC_BS_ACCOUNT_TIMEOUT] == 3600
    assert json.dumps(Provisioning.from_config(config).to_dict())  # stays storable


def test_a_negative_timeout_in_the_config_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(
        'endpoint = "dev-1"\n[bootstrap]\nuri = "coap://bs.example:5683"\n'
        "bootstrap_account_timeout = -5\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "[bootstrap]" in message and "bootstrap_account_timeout must be" in message
