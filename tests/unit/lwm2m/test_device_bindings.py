"""/3/0/16 says what the client can do, not what one account uses."""

from __future__ import annotations

from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.operations import default_objects
from aiolwm2m.lwm2m.objects import DeviceInfo
from aiolwm2m.lwm2m.path import Path

SUPPORTED = Path.parse("/3/0/16")


def test_udp_and_queue_mode_are_supported_even_when_no_account_uses_queue_mode() -> None:
    config = ClientConfig("ep", (ServerAccount("coap://127.0.0.1:5683", 1, binding="U"),))
    assert default_objects(config).tree.get(SUPPORTED) == "UQ"


def test_an_application_can_narrow_what_it_declares() -> None:
    config = ClientConfig("ep", (ServerAccount("coap://127.0.0.1:5683", 1),))
    ops = default_objects(config, device=DeviceInfo(supported_bindings="U"))
    assert ops.tree.get(SUPPORTED) == "U"
