"""Request building and answer decoding of the testbed's LwM2M operations (sans-IO)."""

from __future__ import annotations

import pytest

from aiolwm2m.coap.message import Code, Message, OptionNumber, encode_uint
from aiolwm2m.lwm2m import formats, linkformat
from aiolwm2m.lwm2m.ddf import load_builtin
from aiolwm2m.lwm2m.formats import ContentFormat, senml_cbor, senml_json, tlv
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record
from aiolwm2m.testbed import operations as ops
from aiolwm2m.testbed.operations import Op, OperationError

TYPES = load_builtin().type_of
P = Path.parse


def answer(code: int, payload: bytes = b"", fmt: int | None = None, **extra: int) -> Message:
    msg = Message(code=code, payload=payload)
    if fmt is not None:
        msg.add(OptionNumber.CONTENT_FORMAT, encode_uint(fmt))
    if "observe" in extra:
        msg.add(OptionNumber.OBSERVE, encode_uint(extra["observe"]))
    return msg


# -- request shapes -----------------------------------------------------------------------


def test_read_is_get_with_optional_accept() -> None:
    plain = ops.read_request("/3/0")
    assert plain.message.code == Code.GET
    assert plain.message.uri_path == ["3", "0"]
    assert plain.message.accept is None
    with_fmt = ops.read_request(P("/3/0/0"), ContentFormat.SENML_JSON)
    assert with_fmt.message.accept == ContentFormat.SENML_JSON
    assert with_fmt.base == P("/3/0/0")


def test_discover_accepts_link_format() -> None:
    req = ops.discover_request("/3")
    assert (req.op, req.message.code, req.message.accept) == (Op.DISCOVER, Code.GET, 40)


@pytest.mark.parametrize("replace,code", [(True, Code.PUT), (False, Code.POST)])
def test_write_replace_is_put_partial_update_is_post(replace: bool, code: Code) -> None:
    req = ops.write_request("/1/0", {"/1/0/1": 300, "/1/0/3": 10}, replace=replace)
    assert req.message.code == code
    assert req.message.content_format == ContentFormat.TLV
    decoded = tlv.decode(req.message.payload, P("/1/0"), TYPES)
    assert decoded == [Record(P("/1/0/1"), 300), Record(P("/1/0/3"), 10)]


def test_write_single_value_in_text() -> None:
    req = ops.write_request("/1/0/1", 300, ContentFormat.TEXT)
    assert req.message.payload == b"300"
    assert req.message.content_format == 0


def test_write_rejects_what_cannot_be_encoded() -> None:
    with pytest.raises(OperationError):
        ops.write_request("/1/0", {"/1/0/1": 1, "/1/0/3": 2}, ContentFormat.TEXT)
    with pytest.raises(OperationError):
        ops.write_request("/1", {"/1/0/1": 1})  # Write needs an instance or resource
    with pytest.raises(OperationError):
        ops.write_request("/1/0/x", 1)


def test_write_attributes_are_uri_queries_and_none_removes() -> None:
    req = ops.write_attributes_request("/3303/0/5700", {"pmin": 1, "gt": 20.5, "pmax": None})
    assert req.message.code == Code.PUT
    assert req.message.uri_query == ["pmin=1", "gt=20.5", "pmax"]
    assert req.message.payload == b""
    assert not req.message.has(OptionNumber.CONTENT_FORMAT)
    with pytest.raises(OperationError):
        ops.write_attributes_request("/3", {})


def test_execute_with_and_without_arguments() -> None:
    bare = ops.execute_request("/3/0/4")
    assert (bare.message.code, bare.message.payload) == (Code.POST, b"")
    assert not bare.message.has(OptionNumber.CONTENT_FORMAT)
    args = ops.execute_request("/3/0/4", "0='x',1")
    assert args.message.payload == b"0='x',1"
    assert args.message.content_format == ContentFormat.TEXT
    with pytest.raises(OperationError):
        ops.execute_request("/3/0")


def test_create_with_and_without_instance_id() -> None:
    named = ops.create_request(3303, {5700: 21.5, 5701: "Cel"}, instance_id=4)
    assert named.message.code == Code.POST
    assert named.message.uri_path == ["3303"]
    items = tlv.parse(named.message.payload)
    assert [(i.kind, i.id) for i in items] == [(tlv.Kind.OBJECT_INSTANCE, 4)]
    assert tlv.decode(named.message.payload, P("/3303"), TYPES) == [
        Record(P("/3303/4/5700"), 21.5),
        Record(P("/3303/4/5701"), "Cel"),
    ]
    anonymous = ops.create_request(3303, {5700: 21.5})
    items = tlv.parse(anonymous.message.payload)
    assert [(i.kind, i.id) for i in items] == [(tlv.Kind.RESOURCE, 5700)]
    with pytest.raises(OperationError):
        ops.create_request(3303, {5700: 1.0}, ContentFormat.SENML_JSON)  # needs an id
    senml = ops.create_request(3303, {5700: 1.5}, ContentFormat.SENML_JSON, instance_id=1)
    assert senml_json.decode(senml.message.payload, P("/3303"), TYPES) == [
        Record(P("/3303/1/5700"), 1.5)
    ]
    with pytest.raises(OperationError):
        ops.create_request(3303, {"/3/0/1": "x"}, instance_id=0)


def test_delete_is_delete() -> None:
    req = ops.delete_request("/3303/0")
    assert (req.message.code, req.message.uri_path) == (Code.DELETE, ["3303", "0"])


def test_read_composite_is_fetch_on_root_with_senml_path_list() -> None:
    req = ops.read_composite_request(["/3/0/0", "/1/0"], ContentFormat.SENML_JSON)
    msg = req.message
    assert (msg.code, msg.uri_path) == (Code.FETCH, [])
    assert msg.content_format == msg.accept == ContentFormat.SENML_JSON
    assert senml_json.decode_paths(msg.payload) == [P("/3/0/0"), P("/1/0")]
    assert req.paths == (P("/3/0/0"), P("/1/0"))
    # LwM2M CBOR answers: the path list itself goes as SenML CBOR.
    cbor = ops.read_composite_request(["/3/0/0"], ContentFormat.LWM2M_CBOR)
    assert cbor.message.content_format == ContentFormat.SENML_CBOR
    assert cbor.message.accept == ContentFormat.LWM2M_CBOR
    assert senml_cbor.decode_paths(cbor.message.payload) == [P("/3/0/0")]
    with pytest.raises(OperationError):
        ops.read_composite_request([])
    with pytest.raises(OperationError):
        ops.read_composite_request(["/3"], request_fmt=ContentFormat.TLV)


def test_write_composite_is_ipatch_on_root() -> None:
    req = ops.write_composite_request({"/1/0/1": 60, "/3/0/14": "+02"})
    assert (req.message.code, req.message.uri_path) == (Code.IPATCH, [])
    assert req.message.content_format == ContentFormat.SENML_CBOR
    assert formats.decode(ContentFormat.SENML_CBOR, req.message.payload, Path(), TYPES) == [
        Record(P("/1/0/1"), 60),
        Record(P("/3/0/14"), "+02"),
    ]
    with pytest.raises(OperationError):
        ops.write_composite_request({})


def test_observe_and_its_active_cancel_share_token_and_path() -> None:
    obs = ops.observe_request("/3303/0/5700", ContentFormat.TEXT)
    assert obs.message.observe == 0 and obs.op.observes
    obs.message.token = b"\x01\x02"
    cancel = ops.cancel_observe_request(obs)
    assert cancel.op is Op.CANCEL_OBSERVE
    assert cancel.message.observe == 1
    assert cancel.message.token == b"\x01\x02"
    assert cancel.message.uri_path == obs.message.uri_path
    assert cancel.message.accept == ContentFormat.TEXT
    assert obs.message.observe == 0  # the original is untouched
    with pytest.raises(OperationError):
        ops.cancel_observe_request(ops.read_request("/3"))


def test_observe_composite_is_fetch_with_observe() -> None:
    req = ops.observe_composite_request(["/3303/0/5700", "/3/0/13"])
    assert (req.message.code, req.message.observe) == (Code.FETCH, 0)
    cancel = ops.cancel_observe_request(req)
    assert cancel.message.code == Code.FETCH and cancel.message.observe == 1
    assert cancel.message.payload == req.message.payload


def test_format_numbers_by_name_or_number() -> None:
    assert ops.format_number("tlv") == 11542
    assert ops.format_number("SenML-CBOR") == 112
    assert ops.format_number("42") == 42
    assert ops.format_number(110) == 110
    with pytest.raises(OperationError):
        ops.format_number("xml")


# -- answers ------------------------------------------------------------------------------


def test_read_answer_in_tlv_is_typed_records() -> None:
    records = [Record(P("/3/0/0"), "ACME"), Record(P("/3/0/9"), 87)]
    body = tlv.encode(records, P("/3/0"))
    result = ops.decode_result(
        ops.read_request("/3/0"), answer(Code.CONTENT, body, ContentFormat.TLV), TYPES
    )
    assert result.ok and result.code_text == "2.05 Content"
    assert result.records == records
    assert result.value("/3/0/9") == 87
    assert result.lines()[0].startswith("read -> 2.05 Content [tlv,")
    assert result.to_dict()["values"] == {"/3/0/0": "ACME", "/3/0/9": 87}


def test_read_answer_in_text_uses_the_request_path() -> None:
    req = ops.read_request("/3303/0/5700")
    result = ops.decode_result(req, answer(Code.CONTENT, b"21.5", 0), TYPES)
    assert result.values == {P("/3303/0/5700"): 21.5}


def test_error_codes_are_results_not_exceptions() -> None:
    req = ops.read_request("/9/9")
    result = ops.decode_result(req, answer(Code.NOT_FOUND, b"no such object"), TYPES)
    assert not result.ok
    assert result.code == Code.NOT_FOUND
    assert result.code_text == "4.04 Not Found"
    assert result.records == []
    assert "  diagnostic: no such object" in result.lines()


def test_undecodable_answer_is_reported_not_raised() -> None:
    req = ops.read_request("/3/0")
    result = ops.decode_result(req, answer(Code.CONTENT, b"\xff\xff", ContentFormat.TLV), TYPES)
    assert result.code == Code.CONTENT
    assert not result.ok
    assert result.decode_error is not None and result.decode_error.startswith("TlvError")
    missing_cf = ops.decode_result(req, answer(Code.CONTENT, b"x"), TYPES)
    assert missing_cf.decode_error is not None


def test_discover_answer_is_links() -> None:
    body = b"</3/0>;pmin=10,</3/0/1>,</3/0/7>;dim=2"
    result = ops.decode_result(ops.discover_request("/3/0"), answer(Code.CONTENT, body, 40), TYPES)
    assert [link.target for link in result.links] == ["/3/0", "/3/0/1", "/3/0/7"]
    assert result.links[2].get("dim") == "2"
    assert result.links == linkformat.decode(body)


def test_create_answer_gives_the_location() -> None:
    resp = answer(Code.CREATED)
    resp.add(OptionNumber.LOCATION_PATH, b"3303").add(OptionNumber.LOCATION_PATH, b"7")
    result = ops.decode_result(ops.create_request(3303, {5700: 1.0}), resp, TYPES)
    assert result.location == P("/3303/7")
    bad = answer(Code.CREATED)
    bad.add(OptionNumber.LOCATION_PATH, b"x")
    assert ops.decode_result(ops.create_request(3303, {5700: 1.0}), bad).decode_error


def test_composite_answer_decodes_against_root() -> None:
    records = [Record(P("/3/0/0"), "ACME"), Record(P("/3303/0/5700"), 20.0)]
    body = formats.encode(ContentFormat.SENML_CBOR, records, Path())
    req = ops.read_composite_request(["/3/0/0", "/3303/0/5700"])
    result = ops.decode_result(req, answer(Code.CONTENT, body, ContentFormat.SENML_CBOR), TYPES)
    assert result.records == records


def test_notification_keeps_the_observe_sequence() -> None:
    req = ops.observe_request("/3303/0/5700")
    result = ops.decode_result(req, answer(Code.CONTENT, b"22", 0, observe=5), TYPES)
    assert (result.observe, result.values) == (5, {P("/3303/0/5700"): 22.0})
    assert "observe=5" in result.lines()[0]


def test_write_answer_has_no_values() -> None:
    req = ops.write_request("/1/0/1", 30, ContentFormat.TEXT)
    result = ops.decode_result(req, answer(Code.CHANGED), TYPES)
    assert (
        result.ok
        and result.records == []
        and result.to_dict()
        == {
            "op": "write",
            "code": "2.04",
        }
    )
