"""Curves against time or steps: ELBO traces, importance weights, control trajectories."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes

from ._inputs import _new_axes, _to_numpy

__all__ = ["plot_elbo", "plot_weights", "plot_pendulum", "plot_mountain_car"]


# --------------------------------------------------------------------------- ELBO
def plot_elbo(
    history,
    optimum=None,
    *,
    ax: Axes | None = None,
    log_evidence=None,
    title: str | None = None,
    label: str = "ELBO",
) -> Axes:
    """ELBO per optimisation step, with the exact optimum as a horizontal line.

    Args:
        history: ELBO values (nats), shape (N,) — e.g. the negated losses of an SVI run.
        optimum: the exact best ELBO of the guide family (e.g. :func:`~pgm_control.
            optimal_elbo`), drawn dashed; None draws nothing.
        ax: Axes to draw on; a new figure if None.
        log_evidence: log p(O), drawn dotted above the optimum when given; the distance
            between the two lines is the optimism gap no structured guide can close.
        title: Axes title.
        label: legend label of the curve.

    Returns:
        The Axes.
    """
    h = _to_numpy("history", history, ndim=1)
    if h.size == 0:
        raise ValueError("`history` is empty")
    ax = _new_axes(ax)
    ax.plot(np.arange(h.size), h, lw=1.2, label=label)
    for value, name, style, color in (
        (optimum, "optimum", "--", "C3"),
        (log_evidence, "log_evidence", ":", "k"),
    ):
        if value is None:
            continue
        y = _to_numpy(name, value, ndim=0)
        if not np.isfinite(y):
            raise ValueError(f"`{name}` must be finite, got {float(y)}")
        text = "exact optimum ELBO*" if name == "optimum" else "log p(O)"
        ax.axhline(float(y), ls=style, color=color, lw=1.2, label=f"{text} = {float(y):.4g}")
    ax.set_xlabel("step")
    ax.set_ylabel("nats")
    ax.legend(loc="lower right")
    if title is not None:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- weights
def _effective_sample_size(log_w: np.ndarray) -> float:
    """ESS = (Σ w)² / Σ w² = 1 / Σ w̄², computed from log-weights."""
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (w**2).sum())


def plot_weights(
    log_weights, *, ax: Axes | None = None, bins: int = 40, title: str | None = None
) -> Axes:
    """Histogram of self-normalised importance weights, with the effective sample size.

    Plots log w̄ᵢ = log wᵢ − log Σⱼ wⱼ (a log axis, because weights of the form
    exp(Σ r/α) are heavy-tailed), marks the uniform weight log(1/N), and puts
    ESS = 1 / Σ w̄ᵢ² in the title.

    Args:
        log_weights: log wᵢ, shape (N,); -inf (zero weight) is allowed, NaN and +inf are not,
            and at least one weight must be positive.
        ax: Axes to draw on; a new figure if None.
        bins: histogram bins.
        title: a prefix for the title.

    Returns:
        The Axes.
    """
    log_w = _to_numpy("log_weights", log_weights, ndim=1)
    if log_w.size == 0:
        raise ValueError("`log_weights` is empty")
    if np.isposinf(log_w).any():
        raise ValueError("`log_weights` contains +inf")
    if not np.isfinite(log_w).any():
        raise ValueError("`log_weights` are all -inf: every weight is zero")
    n = log_w.size
    finite = log_w[np.isfinite(log_w)]
    log_norm = finite - (finite.max() + np.log(np.exp(finite - finite.max()).sum()))
    ess = _effective_sample_size(finite)
    ax = _new_axes(ax)
    ax.hist(log_norm, bins=bins, color="C0", alpha=0.8)
    ax.axvline(-np.log(n), color="k", ls="--", lw=1, label="uniform weight 1/N")
    ax.set_xlabel("log normalised weight")
    ax.set_ylabel("count")
    ax.legend(loc="upper left")
    head = f"{title}: " if title else ""
    ax.set_title(f"{head}ESS = {ess:.1f} of N = {n} ({100 * ess / n:.1f}%)")
    return ax


# --------------------------------------------------------------------------- pendulum
def _pendulum_angles(states: np.ndarray) -> np.ndarray:
    """Angles (…, T) from angles (…, T), states [θ, θ̇] (…, T, 2) or obs [cos θ, sin θ, θ̇]."""
    if states.ndim == 1:
        return states[None]
    if states.ndim == 2 and states.shape[-1] not in (2, 3):
        raise ValueError(
            "`states` of rank 2 must be (T, 2) states [θ, θ̇] or (T, 3) observations "
            f"[cos θ, sin θ, θ̇]; got shape {states.shape}. Pass a batch of angles as (N, T, 1)"
        )
    if states.ndim == 2:
        states = states[None]
    if states.shape[-1] == 1:
        return states[..., 0]
    if states.shape[-1] == 2:
        return states[..., 0]
    if states.shape[-1] == 3:
        return np.arctan2(states[..., 1], states[..., 0])
    raise ValueError(
        f"`states` must end in 1, 2 or 3 features (θ; [θ, θ̇]; [cos θ, sin θ, θ̇]), got shape "
        f"{states.shape}"
    )


def plot_pendulum(
    states, dt: float = 0.05, *, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Pendulum angle against time; θ = 0 is upright (gymnasium's Pendulum convention).

    Angles are wrapped to (−π, π] and the line is broken where it wraps, so a full swing does
    not draw a vertical bar.

    Args:
        states: angles θ (T,); states [θ, θ̇] (T, 2); observations [cos θ, sin θ, θ̇] (T, 3);
            or a batch of any of these with a leading N (N, T, 1|2|3).
        dt: seconds per step (> 0).
        ax: Axes to draw on; a new figure if None.
        title: Axes title.

    Returns:
        The Axes.
    """
    x = _to_numpy("states", states, ndim=(1, 2, 3))
    if not np.isfinite(x).all():
        raise ValueError("`states` must be finite")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"`dt` must be a positive number of seconds, got {dt!r}")
    theta = _pendulum_angles(x)
    if theta.shape[-1] == 0:
        raise ValueError("`states` has no time steps")
    wrapped = np.mod(theta + np.pi, 2 * np.pi) - np.pi
    t = dt * np.arange(theta.shape[-1])
    ax = _new_axes(ax)
    for i, th in enumerate(wrapped):
        y = th.copy()
        y[1:][np.abs(np.diff(th)) > np.pi] = np.nan  # break the line at a wrap
        ax.plot(t, y, lw=1.2, color="C0", alpha=1.0 if len(wrapped) == 1 else 0.5,
                label="θ" if i == 0 else None)  # fmt: skip
    ax.axhline(0.0, color="k", lw=0.8, ls="--", label="upright")
    ax.set_ylim(-np.pi - 0.2, np.pi + 0.2)
    ax.set_yticks([-np.pi, -np.pi / 2, 0, np.pi / 2, np.pi], ["−π", "−π/2", "0", "π/2", "π"])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("angle θ (rad)")
    ax.legend(loc="upper right")
    if title is not None:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- mountain car
def plot_mountain_car(
    states, *, goal_position: float = 0.45, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """The car's position x against the step, with the goal line (MountainCarContinuous-v0).

    Args:
        states: positions x (T,) or states [x, ẋ] (T, 2).
        goal_position: where gymnasium's episode ends (x ≥ 0.45 by default), drawn dashed.
        ax: Axes to draw on; a new figure if None.
        title: Axes title.

    Returns:
        The Axes.
    """
    x = _to_numpy("states", states, ndim=(1, 2))
    if x.ndim == 2:
        if x.shape[-1] != 2:
            raise ValueError(f"`states` must be (T,) positions or (T, 2) [x, ẋ], got {x.shape}")
        x = x[:, 0]
    if not np.isfinite(x).all() or x.size == 0:
        raise ValueError("`states` must be finite, with at least one step")
    ax = _new_axes(ax)
    ax.plot(np.arange(x.size), x, lw=1.2, label="x")
    ax.axhline(goal_position, color="k", ls="--", lw=0.8, label=f"goal x = {goal_position:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("position x")
    ax.legend(loc="lower right")
    if title is not None:
        ax.set_title(title)
    return ax
