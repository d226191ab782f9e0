"""Learning curves of the algorithms that learn from samples, against the exact optimum."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

from ._inputs import _new_axes, _to_numpy

__all__ = ["learning_curve", "curve_points"]


def curve_points(history_or_result, *, key: str | None = None) -> tuple:
    """(x, y, x label) of the curve :func:`learning_curve` draws.

    Accepts, in this order of preference:

    * anything with a ``history`` attribute (an algorithm, a result) — its history is used;
    * a :class:`~pgm_control.algorithm.LearningHistory`: ``losses[key]`` when ``key`` is given,
      else the deterministic evaluations (``eval_steps``, ``eval_mean``) when there are any,
      else the training episodes' returns against the step at which each ended;
    * anything with ``returns`` (e.g. :func:`~pgm_control.kl_regularised_policy_iteration`'s
      result): the return of each iterate against its index;
    * a 1-D array of values (x = 0, 1, …) or a sequence of (step, value) pairs.
    """
    h = getattr(history_or_result, "history", history_or_result)
    if hasattr(h, "eval_mean") and hasattr(h, "losses"):
        if key is not None:
            if key not in h.losses:
                raise ValueError(f"`key` {key!r} is not in the history's losses {sorted(h.losses)}")
            pairs = np.asarray(h.losses[key], dtype=np.float64).reshape(-1, 2)
            return pairs[:, 0], pairs[:, 1], "env steps"
        if h.eval_mean:
            return np.asarray(h.eval_steps, float), np.asarray(h.eval_mean, float), "env steps"
        return (
            np.asarray(h.episode_end_steps, float),
            np.asarray(h.episode_returns, float),
            "env steps",
        )
    if hasattr(h, "returns") and not isinstance(h, np.ndarray):
        y = _to_numpy("history_or_result.returns", h.returns, ndim=1)
        return np.arange(len(y), dtype=float), y, "iteration"
    arr = _to_numpy("history_or_result", h, ndim=(1, 2))
    if arr.ndim == 2:
        if arr.shape[1] != 2:
            raise ValueError(
                f"`history_or_result` as pairs must have shape (N, 2), got {arr.shape}"
            )
        return arr[:, 0], arr[:, 1], "step"
    return np.arange(len(arr), dtype=float), arr, "step"


def learning_curve(
    history_or_result,
    *,
    reference=None,
    ax: Axes | None = None,
    label: str | None = None,
    key: str | None = None,
    smooth: int = 1,
) -> Axes:
    """A learning curve, with the exact answer it approximates as a dashed line.

    Args:
        history_or_result: a learner, its ``LearningHistory``, a result with ``history`` or
            ``returns``, an array or (step, value) pairs (see :func:`curve_points`).
        reference: the exact value (e.g. the soft-optimal return, or 0 for an error), drawn
            dashed; None draws nothing.
        ax: Axes to draw on; a new figure if None.
        label: legend label of the curve.
        key: plot ``history.losses[key]`` instead of the returns.
        smooth: running mean over this many points (1: none).

    Returns:
        The Axes.
    """
    x, y, xlabel = curve_points(history_or_result, key=key)
    if not (isinstance(smooth, int) and smooth >= 1):
        raise ValueError(f"`smooth` must be an int >= 1, got {smooth!r}")
    ax = _new_axes(ax)
    if smooth > 1 and len(y) >= smooth:
        kernel = np.ones(smooth) / smooth
        y = np.convolve(y, kernel, mode="valid")
        x = x[smooth - 1 :]
    ax.plot(x, y, label=label)
    if reference is not None:
        ref = float(_to_numpy("reference", reference, ndim=0))
        ax.axhline(ref, color="k", ls="--", lw=1, label="exact")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(key if key is not None else "return")
    if label is not None or reference is not None:
        ax.legend()
    return ax
