"""The test bed: LwM2M and Bootstrap servers, the fault proxy, scenarios (for tests and demos)."""

__all__: list[str] = []
