"""CoAP (RFC 7252, 7641, 7959, 8516): the codec and the sans-IO message layer."""

__all__: list[str] = []
