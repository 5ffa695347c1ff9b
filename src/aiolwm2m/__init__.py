"""aiolwm2m: an asyncio LwM2M client that recovers on its own from every kind of failure."""

__version__ = "0.1.0"
