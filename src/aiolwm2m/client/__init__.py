"""The sans-IO client: engine, policy, states, events, data model (no asyncio, no sockets).

Applications import what they need from the package root (:mod:`aiolwm2m`).
"""

__all__: list[str] = []
