"""Floats as decimal text, the way LwM2M carries a Float outside binary formats.

The Write-Attributes values gt, lt and st are Float attributes written as
decimal numbers (Core 1.1.1 §5.1.2). Whatever our own writer produces for a
finite float, the reader here takes back, so one module holds both.
"""

from __future__ import annotations

import math
import re

__all__ = ["MAX_DECIMAL_TEXT", "parse_decimal"]

#: The longest decimal text read as a float. A finite double needs at most 327
#: characters as a plain decimal ("-0." and 324 digits near the bottom of the
#: range, as -2.2250738585072014e-308; the largest double has 309 integer
#: digits), so this refuses nothing a correct writer sends, while a hostile
#: request cannot make us convert an arbitrarily long number before it is
#: refused.
MAX_DECIMAL_TEXT = 400

# Core §5.1.2's 1*DIGIT ["." 1*DIGIT], with a leading minus: a negative gt/lt
# is a meaningful threshold (OMA_LwM2M_for_Developers issue 563).
_PLAIN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def parse_decimal(text: str) -> float:
    """The finite float a plain decimal (``-12.5``, ``100000000000000000000``) stands for.

    Raises :class:`ValueError` for anything else: exponents, blanks, ``inf``
    or ``nan`` (all of which ``float()`` would take), text longer than
    :data:`MAX_DECIMAL_TEXT`, or a number beyond the float range.
    """
    if len(text) > MAX_DECIMAL_TEXT or _PLAIN.fullmatch(text) is None:
        raise ValueError(f"not a decimal number: {text[:40]!r}")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"beyond the float range: {text[:40]!r}")
    return number
