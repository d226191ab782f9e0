"""The shared argument checks: what they accept, what they refuse, and that messages name the
argument."""

import numpy as np
import pytest
import torch

from pgm_control.validation import (
    check_callable,
    check_discount,
    check_int,
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_temperature,
)


@pytest.mark.parametrize("value", [1, 5, np.int64(5), np.int32(2), torch.tensor(3)])
def test_positive_int_accepts_python_numpy_and_tensor_integers(value):
    out = check_positive_int("steps", value)
    assert type(out) is int and out == int(value)


@pytest.mark.parametrize("value", [1.0, 2.5, "3", None, True, np.bool_(True), torch.tensor(2.0)])
def test_positive_int_refuses_other_types_with_a_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match="`steps` must be an int >= 1"):
        check_positive_int("steps", value)


@pytest.mark.parametrize("value", [0, -1, np.int64(-3)])
def test_positive_int_refuses_small_values(value):
    with pytest.raises(ValueError, match="`episodes` must be an int >= 1"):
        check_positive_int("episodes", value)


def test_minimum_and_optional_forms():
    assert check_positive_int("repeats", 2, minimum=2) == 2
    with pytest.raises(ValueError, match=">= 2"):
        check_positive_int("repeats", 1, minimum=2)
    assert check_optional_positive_int("max_steps", None) is None
    assert check_optional_positive_int("max_steps", np.int16(4)) == 4
    assert check_int("seed", np.int64(-7)) == -7
    with pytest.raises(TypeError, match="`seed` must be an int"):
        check_int("seed", 1.5)


@pytest.mark.parametrize("value", [1e-6, 1, 0.5, np.float32(0.1), torch.tensor(2.0)])
def test_temperature_accepts_positive_finite_scalars(value):
    assert check_temperature(value) == pytest.approx(float(value))


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
def test_temperature_refuses_nonpositive_or_nonfinite_values(value):
    with pytest.raises(ValueError, match="`temperature` \\(alpha\\)"):
        check_temperature(value)


@pytest.mark.parametrize("value", ["0.1", None, True, torch.ones(2)])
def test_temperature_refuses_non_numbers(value):
    with pytest.raises(TypeError, match="`temperature`"):
        check_temperature(value)


def test_discount_interval_and_contraction_form():
    assert check_discount(1.0) == 1.0
    assert check_discount(0.95, allow_one=False) == 0.95
    for bad in (0.0, -0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"`discount` \(gamma\) must lie in \(0, 1\]"):
            check_discount(bad)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        check_discount(1.0, allow_one=False)


def test_positive_float_probability_and_callable():
    assert check_positive_float("lr", np.float64(0.01)) == 0.01
    for bad in (0.0, -1e-3, float("inf")):
        with pytest.raises(ValueError, match="`lr` must be a finite number > 0"):
            check_positive_float("lr", bad)
    assert check_probability("slip", 0.0) == 0.0
    with pytest.raises(ValueError, match=r"`slip` must lie in \[0, 1\)"):
        check_probability("slip", 1.0, open_high=True)
    with pytest.raises(ValueError, match=r"`slip` must lie in \[0, 1\]"):
        check_probability("slip", float("nan"))
    assert check_callable("callback", None, "f(step)") is None
    with pytest.raises(TypeError, match=r"`callback` must be callable as f\(step\)"):
        check_callable("callback", 3, "f(step)")
