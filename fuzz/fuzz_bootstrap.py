"""atheris target: Bootstrap-Server writes (Security / Server objects in any content format)."""

from __future__ import annotations

import atheris
from _harness import fuzz

with atheris.instrument_imports(include=["aiolwm2m"]):
    from aiolwm2m.client.bootstrap import BootstrapHandler, Provisioning
    from aiolwm2m.client.config import load_config
    from aiolwm2m.coap.message import Code, Message, MessageType, make_options


PROVISIONING = Provisioning.from_config(
    load_config(
        {
            "endpoint": "fuzz",
            "server": [{"uri": "coap://127.0.0.1:5683"}],
            "bootstrap": {"uri": "coap://127.0.0.1:5693"},
        }
    )
)
FORMATS = (0, 42, 110, 112, 11542, 11543, 11544)
PATHS = (["0"], ["0", "1"], ["1"], ["1", "0"], ["1", "0", "1"], ["0", "0", "3"])


def target(data: bytes) -> None:
    if len(data) < 2:
        return
    cf, path = FORMATS[data[0] % len(FORMATS)], PATHS[data[1] % len(PATHS)]
    request = Message(
        type=MessageType.CON,
        code=Code.PUT,
        mid=1,
        options=make_options(path=path, content_format=cf),
        payload=data[2:],
    )
    handler = BootstrapHandler(PROVISIONING)
    handler.handle(request)
    handler.handle(
        Message(type=MessageType.CON, code=Code.POST, mid=2, options=make_options(path=["bs"]))
    )


if __name__ == "__main__":
    fuzz(target)
