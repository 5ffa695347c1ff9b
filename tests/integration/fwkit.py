"""Shared helpers of the firmware integration tests (real sockets, real directories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.firmware import DownloadPolicy, FirmwareSettings, FirmwareState, RetrySchedule
from aiolwm2m.client.firmware.events import FirmwareStateChanged
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.runtime.aio import Client

FAST = TransmissionParameters(ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=2)


def firmware_config(
    directory: Path, schedule: RetrySchedule | None = None, **policy: Any
) -> ClientConfig:
    schedule = schedule or RetrySchedule(first_delay=0.2, max_delay=1.0, jitter=0.1, max_retries=30)
    settings = FirmwareSettings(
        directory=str(directory),
        download=DownloadPolicy(schedule=schedule, checkpoint_bytes=8192, **policy),
    )
    return ClientConfig(endpoint="fw-dev", coap=FAST, firmware=settings)


async def wait_state(client: Client, state: FirmwareState, timeout: float = 30.0) -> Any:
    return await client.wait_for(
        FirmwareStateChanged,
        timeout,
        lambda e: (
            isinstance(e, FirmwareStateChanged) and e.object_id == 5 and e.new == state.name.lower()
        ),
    )
