"""Objects 5 and 10252 in the data model: streamed Block1 Package writes, refusals, reads."""

from __future__ import annotations

from typing import Any

from aiolwm2m.client.firmware import NotAllowedInState
from aiolwm2m.client.operations import OperationHandler
from aiolwm2m.coap.message import Block, Code, Message, OptionNumber, encode_uint
from aiolwm2m.lwm2m import ContentFormat
from aiolwm2m.lwm2m.objects.firmware import FirmwareInstance, ManifestInstance
from aiolwm2m.lwm2m.tree import ObjectTree


class Control:
    """Records what the instances ask; refuses Update like an Idle firmware object."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, bytes, bool]] = []
        self.calls: list[tuple[str, Any]] = []

    def write_uri(self, uri: str) -> None:
        self.calls.append(("uri", uri))

    def write_package(self, data: bytes) -> None:
        self.calls.append(("package", data))

    def write_package_block(self, offset: int, data: bytes, more: bool) -> None:
        self.blocks.append((offset, data, more))

    def execute_update(self) -> None:
        raise NotAllowedInState("update is not allowed in state idle")

    def cancel(self) -> None:
        self.calls.append(("cancel", None))

    def write_manifest(self, data: bytes) -> None:
        self.calls.append(("manifest", data))

    def manual_trigger(self) -> None:
        self.calls.append(("trigger", None))

    def set_value(self, name: str, value: Any) -> None:
        self.calls.append((name, value))


def model() -> tuple[OperationHandler, Control, FirmwareInstance]:
    tree = ObjectTree()
    control = Control()
    inst = FirmwareInstance(control, {1: "", 3: 0, 5: 0, 9: 2})
    tree.add_instance(5, 0, inst)
    tree.add_instance(
        10252, 0, ManifestInstance(control, {2: 1, 3: 0, 4: b"", 5: b"", 6: 0, 7: 0, 8: ""})
    )
    return OperationHandler(tree), control, inst


def put(
    path: str,
    payload: bytes,
    block: Block | None = None,
    cf: int = ContentFormat.OPAQUE,
    mid: int = 1,
) -> Message:
    msg = Message(code=Code.PUT, mid=mid, token=b"t", payload=payload)
    for seg in path.strip("/").split("/"):
        msg.add(OptionNumber.URI_PATH, seg.encode())
    msg.add(OptionNumber.CONTENT_FORMAT, encode_uint(cf))
    if block is not None:
        msg.add(OptionNumber.BLOCK1, block.encode())
    return msg


def test_block1_package_write_is_streamed_block_by_block() -> None:
    ops, control, _ = model()
    image = bytes(range(256)) * 9  # 2304 bytes: two full 1024-byte blocks and a tail
    answers = []
    for num, start in enumerate(range(0, len(image), 1024)):
        chunk = image[start : start + 1024]
        more = start + 1024 < len(image)
        reply = ops.handle_request(1, put("/5/0/0", chunk, Block(num, more, 6)), float(num))
        assert reply is not None
        answers.append((reply.code, reply.block1))
    assert answers == [
        (Code.CONTINUE, Block(0, True, 6)),
        (Code.CONTINUE, Block(1, True, 6)),
        (Code.CHANGED, Block(2, False, 6)),
    ]
    assert [(o, len(d), m) for o, d, m in control.blocks] == [
        (0, 1024, True),
        (1024, 1024, True),
        (2048, 256, False),
    ]
    assert b"".join(d for _, d, _ in control.blocks) == image
    assert ops._transfers.block1().pending() == 0  # nothing assembled in memory


def test_stream_gaps_get_4_08_and_a_repeated_block_the_same_answer() -> None:
    ops, control, _ = model()
    first = ops.handle_request(1, put("/5/0/0", b"a" * 64, Block(0, True, 2)), 0.0)
    assert first is not None and first.code == Code.CONTINUE
    again = ops.handle_request(1, put("/5/0/0", b"a" * 64, Block(0, True, 2), mid=2), 0.1)
    assert again is not None and again.code == Code.CONTINUE
    gap = ops.handle_request(1, put("/5/0/0", b"c" * 64, Block(3, True, 2), mid=3), 0.2)
    assert gap is not None and gap.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert len(control.blocks) == 1  # the repeat of block 0 was answered, not written again
    short = ops.handle_request(1, put("/5/0/0", b"b" * 10, Block(1, True, 2), mid=4), 0.3)
    assert short is not None and short.code == Code.BAD_REQUEST


def test_plain_writes_and_executes_reach_the_control() -> None:
    ops, control, _ = model()
    reply = ops.handle_request(1, put("/5/0/1", b"coap://h/fw", cf=ContentFormat.TEXT), 0.0)
    assert reply is not None and reply.code == Code.CHANGED
    reply = ops.handle_request(1, put("/5/0/0", b"\x00"), 0.0)
    assert reply is not None and reply.code == Code.CHANGED
    assert control.calls == [("uri", "coap://h/fw"), ("package", b"\x00")]
    execute = Message(code=Code.POST, mid=9, token=b"x")
    for seg in ("5", "0", "2"):
        execute.add(OptionNumber.URI_PATH, seg.encode())
    reply = ops.handle_request(1, execute, 0.0)
    assert reply is not None and reply.code == Code.METHOD_NOT_ALLOWED


def test_text_plain_opaque_is_base64_both_ways() -> None:
    # Core 1.1.1 Appendix C, Table C.2: an Opaque value in text/plain is base64.
    ops, control, _ = model()
    reply = ops.handle_request(1, put("/10252/0/1", b"AQIDBAU=", cf=ContentFormat.TEXT), 0.0)
    assert reply is not None and reply.code == Code.CHANGED
    assert control.calls == [("manifest", b"\x01\x02\x03\x04\x05")]
    for bad in (b"AQIDBAU", b"AQIDBAV=", b"AQID BAU=", b"AQIDBAU=\n"):
        reply = ops.handle_request(1, put("/10252/0/1", bad, cf=ContentFormat.TEXT, mid=2), 0.0)
        assert reply is not None and reply.code == Code.BAD_REQUEST, bad
    assert len(control.calls) == 1
    ops.tree.instance(10252, 0).set(5, b"\xfb\xff")
    read = Message(code=Code.GET, mid=3, token=b"r")
    for seg in ("10252", "0", "5"):
        read.add(OptionNumber.URI_PATH, seg.encode())
    read.add(OptionNumber.ACCEPT, encode_uint(ContentFormat.TEXT))
    reply = ops.handle_request(1, read, 0.0)
    assert reply is not None and reply.code == Code.CONTENT and reply.payload == b"+/8="


def test_show_notifies_changed_values_only() -> None:
    ops, _, inst = model()
    ops.tree.take_changes()
    inst.show({1: "", 3: 1, 5: 0, 9: 2})
    assert [str(p) for p in ops.tree.take_changes()] == ["/5/0/3"]
    read = Message(code=Code.GET, mid=3, token=b"r")
    for seg in ("5", "0", "0"):
        read.add(OptionNumber.URI_PATH, seg.encode())
    reply = ops.handle_request(1, read, 0.0)
    assert reply is not None and reply.code in (Code.METHOD_NOT_ALLOWED, Code.NOT_FOUND)
