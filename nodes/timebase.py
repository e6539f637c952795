"""Frame rates as exact fractions: one rule for the whole pack (stories, encoder, interpolation)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_RATE_TEXT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+)\s*)?")


def _from_decimal(value: float) -> Fraction:
    # 23.976 / 29.97 / 59.94 mean the NTSC rates n*1000/1001: the only non-integer rates people type.
    if value.is_integer():
        return Fraction(int(value))
    ntsc = round(value * 1.001)
    if ntsc >= 10 and abs(value - ntsc * 1000 / 1001) < 0.005:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(value).limit_denominator(1001)


def parse_fps(value: Fraction | int | float | str, *, minimum: float = 0.0, maximum: float = 1000.0) -> Fraction:
    """An exact frame rate from what a user, a story or a node gives; ValueError says why not.

    Fraction, int and "N/D" strings are exact. Decimals (float or text) within 0.005 of an NTSC rate
    become n*1000/1001 (23.976 -> 24000/1001, 29.97 -> 30000/1001, 59.94 -> 60000/1001); other
    decimals take the nearest fraction with a denominator up to 1001 (12.5 -> 25/2). The rate must
    be above ``minimum`` (or equal, when ``minimum`` > 0) and at most ``maximum``.
    """
    hint = "give a number such as 24 or a fraction such as '24000/1001'"
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a frame rate; {hint}")
    if isinstance(value, Fraction):
        rate = value
    elif isinstance(value, int):
        rate = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a frame rate; {hint}")
        rate = _from_decimal(value)
    elif isinstance(value, str):
        match = _RATE_TEXT.fullmatch(value)
        if not match:
            raise ValueError(f"'{value}' is not a number or a fraction such as '24000/1001'")
        if match.group(2) is None:
            rate = _from_decimal(float(match.group(1)))
        elif int(match.group(2)) == 0:
            raise ValueError(f"'{value}' divides by zero; give a fraction such as '24000/1001'")
        else:
            rate = Fraction(match.group(1)) / int(match.group(2))
    else:
        raise ValueError(f"{value!r} ({type(value).__name__}) is not a frame rate; {hint}")
    too_low = rate < minimum if minimum > 0 else rate <= 0
    if too_low or rate > maximum:
        low = f"{minimum:g}" if minimum > 0 else "0 (exclusive)"
        raise ValueError(f"{float(rate):g} fps is outside {low} to {maximum:g}")
    return rate
