"""Floats as decimal text, the way LwM2M carries a Float outside binary formats.

Core 1.1.1 writes a Float as a plain decimal, never in exponent notation: in
text/plain (Appendix C, Table C.2: 6.667e-11 is "0.00000000006667") and as the
gt, lt and st attributes of Write-Attributes and Discover (§5.1.2). One writer
serves both, and whatever it produces the reader here takes back, so the two
live together.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = ["MAX_DECIMAL_TEXT", "parse_decimal", "plain_decimal"]

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
# Also a plus, "5." or ".5" and an exponent. Table C.2 shows plain decimals but
# gives no grammar ("an ASCII signed numeric representation"), and some writers
# use exponents (Java's Float.toString, as older Leshan clients did: "1.0E-5").
_WITH_EXPONENT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")


def plain_decimal(value: float) -> str:
    """Finite ``value`` as a plain decimal: ``1e-05`` is ``0.00001``, ``1e+20`` is 1 and 20 zeros.

    The digits are those of ``repr`` (the shortest that read back to the same
    float), so ``1.2345e30`` is ``12345`` and zeros, not ``int()``'s binary
    expansion. ``repr`` is already plain between 1e-4 and 1e16, the values
    usually sent, which then skip the :class:`~decimal.Decimal` step.
    """
    text = repr(value)
    return text if "e" not in text else format(Decimal(text), "f")


def parse_decimal(text: str, *, exponent: bool = False) -> float:
    """The finite float a plain decimal (``-12.5``, ``100000000000000000000``) stands for.

    With ``exponent`` (text/plain), also ``+1``, ``5.``, ``.5`` and ``1.5e3``.
    Raises :class:`ValueError` for anything else: blanks, ``inf`` or ``nan``
    (all of which ``float()`` would take), text longer than
    :data:`MAX_DECIMAL_TEXT`, or a number beyond the float range.
    """
    grammar = _WITH_EXPONENT if exponent else _PLAIN
    if len(text) > MAX_DECIMAL_TEXT or grammar.fullmatch(text) is None:
        raise ValueError(f"not a decimal number: {text[:40]!r}")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"beyond the float range: {text[:40]!r}")
    return number
