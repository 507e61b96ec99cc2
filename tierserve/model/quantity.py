"""Kubernetes resource quantities (``4``, ``500m``, ``12Gi``, ``1k``, ``1e3``).

Amounts are kept as integer *milli-units* (Kubernetes' ``MilliValue``) so that
sums and comparisons are exact: ``500m`` CPU is 500, ``1`` GPU is 1000 and
``12Gi`` memory is ``12 * 2**30 * 1000``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from tierserve.model.display import shown

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
MAX_MILLI = 2**63 - 1
"""Kubernetes keeps quantities in int64; a larger amount is refused, not wrapped."""
_MAX_TEXT = 64  # longer is no quantity anyone means (and a huge exponent costs CPU)
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)

EXPECTED = "a Kubernetes quantity such as 4, 500m, 12Gi or 1k"


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_milli(value: str | int | float) -> int:
    """Parse a quantity into integer milli-units, rounding up like Kubernetes' MilliValue."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QuantityError(f"{shown(value)} is not {EXPECTED}")
    if isinstance(value, int):
        return _bounded(value * 1000, value)
    if isinstance(value, float):
        value = repr(value)
    text = value.strip()
    match = _QUANTITY.match(text) if len(text) <= _MAX_TEXT else None
    if not match:
        raise QuantityError(f"{shown(value)} is not {EXPECTED}")
    try:
        number = Fraction(Decimal(match.group("num")))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{shown(value)} is not {EXPECTED}") from exc
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        scale = Fraction(_BINARY[suffix])
    elif suffix in _DECIMAL:
        scale = _DECIMAL[suffix]
    else:  # exponent form, e.g. 1e3
        exponent = int(suffix[1:])
        if abs(exponent) > 30:
            raise QuantityError(f"{shown(value)} is out of range: exponents go up to e30")
        scale = Fraction(10) ** exponent
    milli = number * scale * 1000
    # Round away from zero to a whole milli-unit, as Kubernetes does.
    whole = milli.numerator // milli.denominator
    return _bounded(whole if whole == milli else whole + 1, value)


def _bounded(milli: int, value: object) -> int:
    if abs(milli) > MAX_MILLI:
        raise QuantityError(
            f"{shown(value)} is out of range: at most {MAX_MILLI // 1000} (int64 milli-units)"
        )
    return milli


def format_milli(milli: int, binary: bool = False) -> str:
    """Render milli-units canonically: ``500m``, ``4``, ``12Gi`` (``binary``), ``1k``."""
    if milli % 1000:
        return f"{milli}m"
    value = milli // 1000
    if value == 0:
        return "0"
    if binary:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if value % _BINARY[suffix] == 0:
                return f"{value // _BINARY[suffix]}{suffix}"
        return str(value)
    for suffix in ("E", "P", "T", "G", "M", "k"):
        factor = int(_DECIMAL[suffix])
        if value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)
