"""``python -m aiolwm2m``: the ``aiolwm2m`` command, for when the script is not on PATH."""

import sys

from aiolwm2m.cli.main import main

__all__: list[str] = []

sys.exit(main())
