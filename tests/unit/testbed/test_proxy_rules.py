"""FaultProxy building blocks that need no socket: rule matching, replies, fault settings."""

from __future__ import annotations

import pytest

from aiolwm2m.coap.message import Code, Message, MessageType, make_options
from aiolwm2m.errors import ConfigError
from aiolwm2m.testbed.proxy import CoapRule, LinkFaults, RuleAction, directions, parse_code


def request(code: int, path: list[str], mtype: MessageType = MessageType.CON) -> Message:
    return Message(type=mtype, code=code, mid=7, token=b"tk", options=make_options(path=path))


@pytest.mark.parametrize(
    ("match", "msg", "expected"),
    [
        ("POST /rd", request(Code.POST, ["rd"]), True),
        ("POST /rd", request(Code.POST, ["rd", "5"]), False),
        ("POST /rd/*", request(Code.POST, ["rd", "5"]), True),
        ("DELETE /rd/*", request(Code.POST, ["rd", "5"]), False),
        ("2.05", Message(type=MessageType.CON, code=Code.CONTENT, mid=1), True),
        ("*", request(Code.GET, ["3", "0"]), True),
        ("*", Message(type=MessageType.CON, code=Code.EMPTY, mid=1), False),
    ],
)
def test_rule_matching(match: str, msg: Message, expected: bool) -> None:
    assert CoapRule(match).matches(msg) is expected


def test_path_with_bad_utf8_does_not_match_instead_of_raising() -> None:
    msg = Message(type=MessageType.CON, code=Code.POST, options=[(11, b"\xff")])
    assert not CoapRule("POST /rd").matches(msg)


def test_respond_reply_is_piggybacked_with_max_age_and_non_gets_non() -> None:
    rule = CoapRule("POST /rd", code="4.29", max_age=30)
    ack = rule.reply(request(Code.POST, ["rd"]))
    assert ack is not None
    assert (ack.type, ack.code, ack.mid, ack.token, ack.max_age) == (
        MessageType.ACK,
        Code.TOO_MANY_REQUESTS,
        7,
        b"tk",
        30,
    )
    non = rule.reply(request(Code.POST, ["rd"], MessageType.NON))
    assert non is not None and non.type == MessageType.NON


def test_reset_and_drop_replies() -> None:
    rst = CoapRule("POST /rd", action=RuleAction.RESET).reply(request(Code.POST, ["rd"]))
    assert rst is not None and (rst.type, rst.code, rst.mid) == (MessageType.RST, Code.EMPTY, 7)
    assert (
        CoapRule("*", action=RuleAction.RESET).reply(request(Code.POST, ["rd"], MessageType.NON))
        is None
    )
    assert CoapRule("*", action=RuleAction.DROP).reply(request(Code.POST, ["rd"])) is None


def test_count_exhausts_the_rule() -> None:
    rule = CoapRule("*", count=1)
    rule.applied = 1
    assert rule.exhausted and not rule.matches(request(Code.GET, []))


@pytest.mark.parametrize("bad", ["4", "4.x", "8.00", "4.32", "nonsense"])
def test_bad_codes_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_code(bad)


@pytest.mark.parametrize(
    "kwargs", [{"match": "FLY /rd"}, {"match": "*", "count": 0}, {"match": "*", "max_age": -1}]
)
def test_bad_rules_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CoapRule(**kwargs)  # type: ignore[arg-type]


def test_fault_settings_are_validated() -> None:
    with pytest.raises(ConfigError):
        LinkFaults(drop=1.5)
    with pytest.raises(ConfigError):
        LinkFaults(delay=-1)
    assert not LinkFaults().active and LinkFaults(blackhole=True).active


def test_directions() -> None:
    assert [d.value for d in directions("both")] == ["up", "down"]
    with pytest.raises(ConfigError):
        directions("sideways")
