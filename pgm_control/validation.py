"""Argument checks shared by every public routine: one place for each rule.

Each check raises a ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, bad
value) whose message names the argument and says what would be accepted, so a bad input never
turns into a silent NaN further down. Every check returns the value in its canonical Python
form (``int``, ``float``), which lets numpy scalars such as ``np.int64(5)`` through.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = [
    "check_positive_int",
    "check_optional_positive_int",
    "check_int",
    "check_temperature",
    "check_discount",
    "check_positive_float",
    "check_probability",
    "check_callable",
]


def _scalar(value):
    """A 0-d / one-element tensor or array as a Python number; anything else unchanged."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        size = value.numel() if isinstance(value, torch.Tensor) else value.size
        if size == 1:
            return value.item()
    return value


def check_int(name: str, value) -> int:
    """Any integer (Python or numpy, not bool) as ``int``."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    """An integer ≥ ``minimum`` (default 1) as ``int``; numpy integers are accepted."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an int >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value}")
    return int(value)


def check_optional_positive_int(name: str, value, *, minimum: int = 1) -> int | None:
    """None, or an integer ≥ ``minimum``."""
    return None if value is None else check_positive_int(name, value, minimum=minimum)


def _real(name: str, value, what: str) -> float:
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be {what}, got {value!r} ({type(value).__name__})")
    return float(value)


def check_positive_float(name: str, value) -> float:
    """A finite real number > 0 as ``float``."""
    x = _real(name, value, "a finite number > 0")
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"`{name}` must be a finite number > 0, got {x}")
    return x


def check_temperature(temperature, name: str = "temperature") -> float:
    """The temperature α of p(O=1|s,a,s') = exp(r/α): a finite float > 0."""
    x = _real(name, temperature, "a positive float (the temperature α)")
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"`{name}` (alpha) must be a finite number > 0, got {x}")
    return x


def check_discount(discount, name: str = "discount", *, allow_one: bool = True) -> float:
    """A discount γ in (0, 1] (or (0, 1) when ``allow_one=False``, for a contraction)."""
    x = _real(name, discount, "a float in (0, 1]")
    high_ok = x <= 1 if allow_one else x < 1
    if not (x > 0 and high_ok):
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(f"`{name}` (gamma) must lie in {interval}, got {x}")
    return x


def check_probability(name: str, value, *, open_low=False, open_high=False) -> float:
    """A probability in [0, 1] (ends excluded where asked) as ``float``."""
    x = _real(name, value, "a probability")
    low_ok = x > 0 if open_low else x >= 0
    high_ok = x < 1 if open_high else x <= 1
    if not (low_ok and high_ok and math.isfinite(x)):
        interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        raise ValueError(f"`{name}` must lie in {interval}, got {x}")
    return x


def check_callable(name: str, value, signature: str, *, optional: bool = True):
    """``value`` if it is callable (or None when ``optional``); the message shows ``signature``."""
    if value is None and optional:
        return None
    if not callable(value):
        raise TypeError(f"`{name}` must be callable as {signature}, got {value!r}")
    return value
