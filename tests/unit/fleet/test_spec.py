"""Fleet definitions: device names and keys from patterns or a CSV, TOML, shards, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiolwm2m.errors import ConfigError
from aiolwm2m.fleet.spec import FleetSpec, Generator, Outage, OutageKind, ValueSpec, load_spec


def test_endpoints_and_psks_from_patterns() -> None:
    spec = FleetSpec(
        server="coaps://127.0.0.1:5684",
        devices=3,
        first=10,
        endpoint="dev-{n:03d}",
        psk_identity="id-{endpoint}",
        psk_key="hex:{n:032x}",
    )
    devices = list(spec.identities())
    assert [d.endpoint for d in devices] == ["dev-010", "dev-011", "dev-012"]
    assert devices[1].psk_identity == b"id-dev-011"
    assert devices[1].psk_key == bytes.fromhex(f"{11:032x}")
    config = spec.device_config(spec.base_config(), devices[2])
    assert config.endpoint == "dev-012"
    assert config.servers[0].psk_identity == b"id-dev-012"
    assert config.registration.update_jitter == spec.update_jitter


def test_psks_from_a_csv_relative_to_the_fleet_file(tmp_path: Path) -> None:
    (tmp_path / "keys.csv").write_text(
        "# endpoint,identity,key\nd0,alice,hex:0011\nd1,bob,secret\n"
    )
    (tmp_path / "fleet.toml").write_text(
        '[fleet]\nserver = "coaps://127.0.0.1:5684"\ndevices = 2\nendpoint = "d{n}"\n'
        'psk_csv = "keys.csv"\n'
    )
    spec = load_spec(tmp_path / "fleet.toml")
    assert [(d.psk_identity, d.psk_key) for d in spec.identities()] == [
        (b"alice", b"\x00\x11"),
        (b"bob", b"secret"),
    ]
    with pytest.raises(ConfigError, match="no line for 'd2'"):
        list(load_spec(tmp_path / "fleet.toml", devices=3).identities())


def test_toml_values_outages_and_flag_overrides(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text(
        "[fleet]\ndevices = 50\nrate = 5\n"
        '[[value]]\npath = "/3303/0/5700"\ngenerator = "random_walk"\nlow = 15\nhigh = 25\n'
        "[[outage]]\nat = 120\nduration = 60\n"
        '[[outage]]\nat = 600\nduration = 30\nkind = "blackhole"\n'
    )
    spec = load_spec(tmp_path / "fleet.toml", devices=7, rate=None)
    assert spec.devices == 7 and spec.rate == 5
    assert spec.values == (ValueSpec("/3303/0/5700", Generator.RANDOM_WALK, low=15, high=25),)
    assert spec.outages == (Outage(120, 60), Outage(600, 30, OutageKind.BLACKHOLE))


def test_shards_cover_every_device_once() -> None:
    spec = FleetSpec(devices=10)
    assert spec.shards(3) == [(0, 3), (3, 6), (6, 10)]
    assert spec.shards(50) == [(i, i + 1) for i in range(10)]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"fleet": {"devices": 0}}, "devices"),
        ({"fleet": {"colour": "red"}}, "unknown key"),
        ({"fleet": {"endpoint": "{m}"}}, "endpoint pattern"),
        ({"fleet": {"server": "http://x"}}, "fleet"),
        ({"fleet": {"server": "coaps://127.0.0.1"}}, "needs PSKs"),
        ({"fleet": {"psk_key": "x"}}, "go together"),
        ({"value": [{"path": "/3303/0"}]}, "must name a resource"),
        ({"value": [{"path": "/3303/0/5700", "generator": "noise"}]}, "generator"),
        ({"outage": [{"at": 1, "duration": 0}]}, "duration"),
        ({"outage": [{"at": 1, "duration": 5, "kind": "flood"}]}, "kind"),
        ({"fleets": {}}, "unknown table"),
    ],
)
def test_bad_definitions_are_refused_naming_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_spec(table)


def test_value_generators_stay_in_range() -> None:
    import random

    rng = random.Random(1)
    walk = ValueSpec("/3303/0/5700", Generator.RANDOM_WALK, low=10, high=20)
    value = None
    for t in range(500):
        value = walk.value(float(t), 0.3, value, rng)
        assert 10 <= value <= 20
    sine = ValueSpec("/3303/0/5700", Generator.SINE, low=0, high=10, period=100)
    assert {round(sine.value(t, 0.0, None, rng)) for t in (0, 25, 50, 75)} == {5, 10, 0}
    counter = ValueSpec("/3/0/13", Generator.COUNTER, low=5)
    assert counter.value(0, 0, None, rng) == 5 and counter.value(1, 0, 5, rng) == 6
