"""learning_curve draws what each learner records, beside the exact answer."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pgm_control.algorithm import LearningHistory  # noqa: E402
from pgm_control.plotting import learning_curve  # noqa: E402
from pgm_control.plotting.learning import curve_points  # noqa: E402


class _Result:
    def __init__(self, returns):
        self.returns = returns


def test_curve_points_of_each_input():
    h = LearningHistory()
    h.episode_returns, h.episode_end_steps = [1.0, 2.0], [5, 9]
    x, y, _ = curve_points(h)
    assert x.tolist() == [5, 9] and y.tolist() == [1, 2]
    h.eval_steps, h.eval_mean = [10], [3.0]
    assert curve_points(h)[1].tolist() == [3.0]
    h.log("error", 4, 0.5)
    assert curve_points(h, key="error")[0].tolist() == [4]
    with pytest.raises(ValueError, match="key"):
        curve_points(h, key="nope")
    assert curve_points(_Result(np.array([1.0, 2.0])))[2] == "iteration"
    assert curve_points([(1, 2.0), (3, 4.0)])[0].tolist() == [1, 3]
    with pytest.raises(ValueError, match="shape"):
        curve_points(np.zeros((2, 3)))


def test_learning_curve_draws_curve_and_reference():
    ax = learning_curve(np.arange(10.0), reference=7.0, label="x", smooth=3)
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.arange(1.0, 9.0))
    assert ax.lines[1].get_ydata()[0] == 7.0
    with pytest.raises(ValueError, match="smooth"):
        learning_curve(np.arange(3.0), smooth=0)
