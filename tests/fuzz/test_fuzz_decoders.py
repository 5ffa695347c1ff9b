"""Hypothesis fuzzing of every decoder that reads bytes (or files) from the outside world.

The contract (ARCHITECTURE.md): malformed input raises the decoder's typed
error — a :class:`~aiolwm2m.errors.DecodeError` subclass, or
:class:`~aiolwm2m.errors.ConfigError` for configuration — and nothing else.
Any other exception is a bug. Inputs mix pure noise with mutations of valid
messages, which reach much deeper into the parsers than noise alone. The
atheris targets in ``fuzz/`` run the same checks coverage-guided for longer
(``make fuzz``).
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiolwm2m.client.bootstrap import BootstrapHandler, Provisioning
from aiolwm2m.client.config import load_config
from aiolwm2m.coap.message import Code, Message, MessageType, decode, encode, make_options
from aiolwm2m.errors import ConfigError, DecodeError
from aiolwm2m.lwm2m import formats, linkformat
from aiolwm2m.lwm2m.attributes import parse_query
from aiolwm2m.lwm2m.ddf import load_builtin
from aiolwm2m.lwm2m.formats import senml_cbor, senml_json
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.testbed.scenario import load_scenario

# Sized for `make test` (about 15 s in all); `make fuzz` runs the atheris targets for long.
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TYPES = load_builtin().type_of
BASES = [Path.parse(p) for p in ("/", "/3", "/3/0", "/3/0/0", "/1/0", "/0/1/3", "/3/0/7/1")]

# A few valid payloads per format: mutations of them get past the first checks.
SEEDS: dict[int, list[bytes]] = {
    formats.ContentFormat.TEXT: [b"42", b"hello", b"1.5", b"true"],
    formats.ContentFormat.OPAQUE: [b"\x00\x01\x02"],
    formats.ContentFormat.CBOR: [
        bytes.fromhex("1857"),
        bytes.fromhex("c11a5182428f"),
        b"\xf9\x4d\x60",
    ],
    formats.ContentFormat.TLV: [
        bytes.fromhex("c800144f70656e204d6f62696c6520416c6c69616e6365"),
        bytes.fromhex("08000ec10055c101c8c102c103"),
        bytes.fromhex("88070842000ed842011388"),
    ],
    formats.ContentFormat.SENML_JSON: [
        b'[{"bn":"/3/0/","n":"0","vs":"Acme"},{"n":"9","v":95}]',
        b'[{"n":"/3/0/1","vs":"x"},{"n":"/3/0/13","v":1e9}]',
    ],
    formats.ContentFormat.SENML_CBOR: [
        bytes.fromhex("82a321652f332f302f00613061036441636d65a200613902185f"),
    ],
    formats.ContentFormat.OMA_JSON: [
        b'{"bn":"/3/0/","e":[{"n":"0","sv":"Acme"},{"n":"9","v":95}]}',
    ],
    formats.ContentFormat.LWM2M_CBOR: [bytes.fromhex("a103a100a1006441636d65")],
}


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Noise, or a seed with bytes flipped, cut, or spliced in."""

    @st.composite
    def mutate(draw: Any) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            if op == "flip":
                data[i] = draw(st.integers(0, 255))
            elif op == "cut":
                del data[i : i + draw(st.integers(1, 8))]
            elif op == "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[i:]
        return bytes(data)

    return st.one_of(st.binary(max_size=300), mutate())


def only_typed(call: Callable[[], object], allowed: type[Exception] = DecodeError) -> None:
    """Run ``call``; the typed error may escape it, anything else fails the test."""
    with contextlib.suppress(allowed):
        call()


# -- CoAP ---------------------------------------------------------------------------------

COAP_SEEDS = [
    encode(
        Message(
            type=MessageType.CON,
            code=Code.POST,
            mid=7,
            token=b"\x01\x02",
            options=make_options(path=["rd"], query=["ep=x", "lt=60"], content_format=40),
            payload=b"</3/0>",
        )
    ),
    encode(
        Message(
            type=MessageType.ACK,
            code=Code.CONTENT,
            mid=9,
            token=b"t",
            options=make_options(observe=3, content_format=11542),
            payload=b"\xc8\x00\x01A",
        )
    ),
]


@FUZZ
@given(mutated(COAP_SEEDS))
def test_coap_decode_and_option_accessors(data: bytes) -> None:
    try:
        msg = decode(data)
    except DecodeError:
        return
    for accessor in (
        "uri_path",
        "uri_query",
        "location_path",
        "content_format",
        "accept",
        "observe",
        "max_age",
        "block1",
        "block2",
    ):
        only_typed(lambda a=accessor: getattr(msg, a))  # type: ignore[misc]
    only_typed(msg.describe)


# -- LwM2M formats -------------------------------------------------------------------------


@FUZZ
@pytest.mark.parametrize("content_format", sorted(SEEDS))
@given(data=st.data())
def test_content_format_decoders(content_format: int, data: st.DataObject) -> None:
    payload = data.draw(mutated(SEEDS[content_format]))
    base = data.draw(st.sampled_from(BASES))
    types = data.draw(st.sampled_from([None, TYPES]))
    only_typed(lambda: formats.decode(content_format, payload, base, types))


@FUZZ
@given(mutated([b'[{"n":"/3/0/1"},{"n":"/3/0/2"}]']))
def test_senml_json_paths(payload: bytes) -> None:
    only_typed(lambda: senml_json.decode_paths(payload))


@FUZZ
@given(mutated([bytes.fromhex("82a100662f332f302f31a100662f332f302f32")]))
def test_senml_cbor_paths(payload: bytes) -> None:
    only_typed(lambda: senml_cbor.decode_paths(payload))


@FUZZ
@given(mutated([b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3>;ver=1.1,</3/0>;pmin=10']))
def test_linkformat(payload: bytes) -> None:
    only_typed(lambda: linkformat.decode(payload))
    only_typed(lambda: linkformat.parse_registration(linkformat.decode(payload)))


@FUZZ
@given(st.lists(st.text(max_size=20), max_size=6))
def test_attribute_queries(query: list[str]) -> None:
    only_typed(lambda: parse_query(query))


@FUZZ
@given(st.text(max_size=30))
def test_path_parse(text: str) -> None:
    only_typed(lambda: Path.parse(text))


# -- configuration ------------------------------------------------------------------------

KEYS = [
    "endpoint",
    "server",
    "bootstrap",
    "coap",
    "reconnect",
    "registration",
    "storage",
    "uri",
    "lifetime",
    "binding",
    "short_server_id",
    "ack_timeout",
    "max_retransmit",
    "first_delay_min",
    "max_delay",
    "timeout",
    "retry_procedure",
    "psk_identity",
    "psk_key",
    "security_mode",
    "ca_certificates",
    "communication_retry_count",
    "path",
    "notification_limit",
]
SCALARS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["coap://127.0.0.1", "coaps://h:1?aid=x", "hex:00zz", "psk", "lwm2m-1.1"]),
)
TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=20,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), TOML_VALUES, max_size=7))
def test_load_config_on_random_tables(data: dict[str, Any]) -> None:
    only_typed(lambda: load_config(data), ConfigError)


@FUZZ
@given(st.binary(max_size=200))
def test_load_config_on_random_files(tmp_path_factory: Any, raw: bytes) -> None:
    path = FsPath(tmp_path_factory.mktemp("cfg")) / "c.toml"
    path.write_bytes(raw)
    only_typed(lambda: load_config(path), ConfigError)


SCENARIO_KEYS = [
    "scenario",
    "client",
    "notify",
    "step",
    "name",
    "duration",
    "clients",
    "bound",
    "time_scale",
    "at",
    "fault",
    "match",
    "code",
    "max_age",
    "count",
    "expect",
    "every",
    "direction",
    "probability",
    "server",
    "coap",
]


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(SCENARIO_KEYS),
        st.recursive(
            st.one_of(SCALARS, st.sampled_from(["blackhole", "respond", "4.29", "POST /rd"])),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3),
                st.dictionaries(st.sampled_from(SCENARIO_KEYS), inner, max_size=5),
            ),
            max_leaves=20,
        ),
        max_size=5,
    )
)
def test_load_scenario_on_random_tables(data: dict[str, Any]) -> None:
    only_typed(lambda: load_scenario(data), ConfigError)


def test_config_fuzz_reaches_valid_configs() -> None:
    """The strategies above are not all rejects: a valid config loads."""
    data = tomllib.loads('endpoint = "x"\n[[server]]\nuri = "coap://127.0.0.1"\n')
    assert load_config(data).servers[0].uri == "coap://127.0.0.1"


# -- bootstrap writes -------------------------------------------------------------------------

BOOTSTRAP = Provisioning.from_config(
    load_config(
        {
            "endpoint": "fuzz",
            "server": [{"uri": "coap://127.0.0.1:5683"}],
            "bootstrap": {"uri": "coap://127.0.0.1:5693"},
        }
    )
)


@st.composite
def bootstrap_requests(draw: Any) -> Message:
    cf = draw(st.sampled_from(sorted(SEEDS)))
    payload = draw(mutated(SEEDS[cf]))
    path = draw(
        st.sampled_from(
            [["0"], ["0", "1"], ["1"], ["1", "0"], ["1", "0", "1"], ["0", "0", "0"], ["bs"], []]
        )
    )
    code = draw(st.sampled_from([Code.PUT, Code.GET, Code.DELETE, Code.POST]))
    options = make_options(path=path, content_format=draw(st.sampled_from([cf, None])))
    return Message(type=MessageType.CON, code=code, mid=1, options=options, payload=payload)


@settings(FUZZ, max_examples=40)
@given(st.lists(bootstrap_requests(), min_size=1, max_size=4))
def test_bootstrap_handler_never_raises(requests: list[Message]) -> None:
    """Bootstrap-Server requests: every malformed one becomes a 4.xx answer."""
    handler = BootstrapHandler(BOOTSTRAP)  # it works on a copy
    for request in requests:
        reply = handler.handle(request)
        assert reply.response.code != Code.EMPTY
