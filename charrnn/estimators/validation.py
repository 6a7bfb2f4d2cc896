"""Parameter checks shared by the estimators: a ValueError that names the parameter."""

from __future__ import annotations

import math
import numbers


def check_int(name: str, value, low: int, none_ok: bool = False) -> None:
    """``value`` must be an integer >= ``low`` (bools refused), or None when ``none_ok``."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        extra = " or None" if none_ok else ""
        raise ValueError(f"{name} must be an integer >= {low}{extra}, got {value!r}")


def check_real(
    name: str, value, low: float, high: float = math.inf, low_open=False, none_ok=False
) -> None:
    """``value`` must be a finite real in ``[low, high)`` (``(low, high)`` when ``low_open``)."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value >= high:
        lo = "(" if low_open else "["
        raise ValueError(f"{name} must be in {lo}{low}, {high}), got {value!r}")
