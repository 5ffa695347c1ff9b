"""The ``aiolwm2m`` command (:mod:`aiolwm2m.cli.main`); internal: its modules are no API."""

__all__: list[str] = []
