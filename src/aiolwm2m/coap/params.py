"""RFC 7252 §4.8 transmission parameters and the §4.8.2 derived times.

They are configuration (a constrained link or a test wants other numbers), but
the derived values must always be computed from the base ones, never set
independently, or the retransmission and deduplication windows stop agreeing.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiolwm2m.errors import ConfigError

__all__ = [
    "TransmissionParameters",
]


@dataclass(frozen=True)
class TransmissionParameters:
    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    nstart: int = 1
    default_leisure: float = 5.0
    probing_rate: float = 1.0
    max_latency: float = 100.0
    # How long a request that was acknowledged with an empty ACK waits for its
    # separate response; RFC 7252 leaves it open, MAX_TRANSMIT_WAIT keeps a
    # lost separate response from stalling recovery for EXCHANGE_LIFETIME.
    separate_response_timeout: float | None = None
    # How long an incoming CON request may wait for the application before the
    # layer sends an empty ACK and answers later with a separate response.
    piggyback_window: float | None = None

    def __post_init__(self) -> None:
        if self.ack_timeout <= 0:
            raise ConfigError("ack_timeout must be > 0")
        if self.ack_random_factor < 1.0:
            raise ConfigError("ack_random_factor must be >= 1.0")
        if self.max_retransmit < 0:
            raise ConfigError("max_retransmit must be >= 0")
        if self.nstart < 1:
            raise ConfigError("nstart must be >= 1")
        if self.max_latency <= 0:
            raise ConfigError("max_latency must be > 0")

    @property
    def max_transmit_span(self) -> float:
        return self.ack_timeout * (2.0**self.max_retransmit - 1) * self.ack_random_factor

    @property
    def max_transmit_wait(self) -> float:
        return self.ack_timeout * (2.0 ** (self.max_retransmit + 1) - 1) * self.ack_random_factor

    @property
    def processing_delay(self) -> float:
        return self.ack_timeout

    @property
    def max_rtt(self) -> float:
        return 2 * self.max_latency + self.processing_delay

    @property
    def exchange_lifetime(self) -> float:
        return self.max_transmit_span + 2 * self.max_latency + self.processing_delay

    @property
    def non_lifetime(self) -> float:
        return self.max_transmit_span + self.max_latency

    @property
    def effective_separate_response_timeout(self) -> float:
        if self.separate_response_timeout is not None:
            return self.separate_response_timeout
        return self.max_transmit_wait

    @property
    def effective_piggyback_window(self) -> float:
        if self.piggyback_window is not None:
            return self.piggyback_window
        return self.ack_timeout / 2
