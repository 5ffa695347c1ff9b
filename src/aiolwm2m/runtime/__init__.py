"""Runtimes around the sans-IO engine: asyncio (:mod:`.aio`) and the virtual clock (:mod:`.sim`)."""

__all__: list[str] = []
