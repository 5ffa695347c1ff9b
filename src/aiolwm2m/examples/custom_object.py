"""Expose your own object: a temperature sensor (IPSO 3303) next to the default objects.

Run it against any LwM2M server (Leshan's demo server, or the bundled testbed):

    aiolwm2m server --port 5683 &      # or any LwM2M 1.1 server
    python -m aiolwm2m.examples.custom_object coap://127.0.0.1:5683 --seconds 30

The server can then Read /3303/0, Observe /3303/0/5700 (the value changes
every second), Execute /3303/0/5605 (reset min/max) and Write-Attributes.
Every ``--send-every`` seconds the client also pushes the temperature with
LwM2M Send (POST /dp, SenML CBOR), unless the server muted Send (/1/0/23).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time

from aiolwm2m import (
    Client,
    ClientConfig,
    ExecuteArguments,
    Instance,
    NotAllowedError,
    ServerAccount,
    default_objects,
)

__all__ = ["Thermometer", "main"]

SENSOR_VALUE = 5700
MIN_MEASURED = 5601
MAX_MEASURED = 5602
UNITS = 5701
RESET_MIN_MAX = 5605


class Thermometer(Instance):
    """Application object as a class: values are set with ``self.set`` when they change."""

    def __init__(self) -> None:
        super().__init__(
            {UNITS: "Cel", SENSOR_VALUE: 20.0, MIN_MEASURED: 20.0, MAX_MEASURED: 20.0},
            on_execute={RESET_MIN_MAX: self.reset},
        )

    def measure(self) -> None:
        """Pretend to read hardware; every ``set`` notifies observers of that resource."""
        value = round(20.0 + 5.0 * math.sin(time.monotonic() / 10.0), 2)
        self.set(SENSOR_VALUE, value)
        low = self.values[MIN_MEASURED]
        high = self.values[MAX_MEASURED]
        if isinstance(low, float) and value < low:
            self.set(MIN_MEASURED, value)
        if isinstance(high, float) and value > high:
            self.set(MAX_MEASURED, value)

    def reset(self, arguments: ExecuteArguments) -> None:
        current = self.values[SENSOR_VALUE]
        self.set(MIN_MEASURED, current)
        self.set(MAX_MEASURED, current)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("uri", nargs="?", default="coap://127.0.0.1:5683")
    parser.add_argument("--endpoint", default="custom-object-example")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--send-every", type=float, default=10.0)
    args = parser.parse_args()

    config = ClientConfig(args.endpoint, (ServerAccount(args.uri, lifetime=60),))
    objects = default_objects(config, on_reboot=lambda arguments: print("server asked: reboot"))
    thermometer = Thermometer()
    objects.tree.add_instance(3303, 0, thermometer)

    async with Client(config, objects) as client:
        client.subscribe(lambda event: print(f"{event.name}: {event}"))
        deadline = time.monotonic() + args.seconds
        next_send = time.monotonic() + args.send_every
        while time.monotonic() < deadline:
            thermometer.measure()
            if time.monotonic() >= next_send:
                next_send += args.send_every
                try:
                    outcome = await client.send([f"/3303/0/{SENSOR_VALUE}"], timeout=30)
                    print(f"send: success={outcome.success} {outcome.coap_code or outcome.reason}")
                except NotAllowedError as exc:  # e.g. the server set Mute Send
                    print(f"send refused: {exc}")
            await asyncio.sleep(1.0)


if __name__ == "__main__":
    asyncio.run(main())
