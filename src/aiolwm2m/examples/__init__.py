"""Examples that ship with the package, so they work after ``pip install aiolwm2m``.

* ``python -m aiolwm2m.examples.custom_object [URI]`` — a client exposing your
  own object, an IPSO temperature sensor (/3303) whose value changes every
  second; the testbed console's ``/3303`` examples run against it.
* ``bootstrap.toml`` — the testbed Bootstrap-Server's configuration, which
  ``aiolwm2m bootstrap-server`` uses when no ``--config`` is given.
"""

from pathlib import Path

__all__ = ["EXAMPLES"]

#: The folder holding the example files.
EXAMPLES = Path(__file__).parent
