"""Figures for the objects of the lecture: value maps, posterior marginals, ELBO curves.

* :func:`plot_values` — V(s) as a heatmap on the MDP's grid, with the policy drawn as arrows
  whose length is the action's probability.
* :func:`plot_marginals` — p(sₜ | O) as a states × time heatmap.
* :func:`plot_marginals_on_grid` — the same marginals as small multiples on the grid.
* :func:`plot_elbo` — an ELBO trace with the exact optimum (and log p(O)) as reference lines.
* :func:`plot_weights` — a histogram of importance weights, with the effective sample size.
* :func:`plot_pendulum` — pendulum angle against time.

Every function draws on the ``ax`` it is given (or on a new figure), returns the Axes (the
Figure for multi-panel plots) and never calls ``plt.show``, so it works under the Agg backend
in scripts and tests as well as inline in notebooks. Inputs may be torch tensors or numpy
arrays; a wrong shape raises a ``ValueError`` that names the argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .backward import SoftValues
from .mdp import TabularMDP, _check_mdp

__all__ = [
    "plot_values",
    "plot_marginals",
    "plot_marginals_on_grid",
    "plot_elbo",
    "plot_weights",
    "plot_pendulum",
    "ACTION_ARROWS",
]

# Unit moves (dx, dy) of each action in image coordinates (y grows downwards), keyed by the
# prefix of ``mdp.name``. The two gymnasium grids number their actions differently.
ACTION_ARROWS: dict[str, tuple[tuple[float, float], ...]] = {
    "FrozenLake": ((-1, 0), (0, 1), (1, 0), (0, -1)),  # left, down, right, up
    "CliffWalking": ((0, -1), (1, 0), (0, 1), (-1, 0)),  # up, right, down, left
    "chain": ((-1, 0), (1, 0)),  # left, right
}

_STRIP_WIDTH = 25  # states per row when an MDP has no grid of its own
_MIN_ARROW_PROB = 0.03  # arrows shorter than this are not drawn


# --------------------------------------------------------------------------- input checks
def _to_numpy(name: str, x, *, ndim: int | Sequence[int] | None = None) -> np.ndarray:
    """float64 numpy copy of a tensor / array / list, with a rank check naming ``name``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be numeric array-like, got {type(x).__name__}") from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            ranks = " or ".join(str(n) for n in allowed)
            raise ValueError(f"`{name}` must have rank {ranks}, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"`{name}` contains NaN")
    return arr


def _new_axes(ax: Axes | None, figsize=(6, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    elif not isinstance(ax, Axes):
        raise TypeError(f"`ax` must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


# --------------------------------------------------------------------------- grid layout
def _num_cells(mdp: TabularMDP) -> int:
    """Cells to draw: the env's observations. ``from_gymnasium`` may append copy states
    (same observation, different entry reward) after them; they are folded back."""
    return int(getattr(mdp, "num_observations", mdp.num_states))


def _layout(mdp: TabularMDP) -> tuple[int, int, bool]:
    """(rows, cols, is_grid): the MDP's own grid when it holds exactly one cell per
    observation, otherwise a strip of states (wrapped every ``_STRIP_WIDTH`` states)."""
    n = _num_cells(mdp)
    shape = mdp.grid_shape
    if shape is not None and len(shape) == 2 and int(shape[0]) * int(shape[1]) == n:
        return int(shape[0]), int(shape[1]), True
    cols = min(n, _STRIP_WIDTH)
    return math.ceil(n / cols), cols, False


def _per_cell(mdp: TabularMDP, per_state: np.ndarray, *, fold: str) -> np.ndarray:
    """Map a (S, ...) array onto the cells: copy states are dropped (``fold="first"``; they
    share the dynamics, hence values and policies, of their original) or added onto their
    original (``fold="sum"``, for probabilities)."""
    n = _num_cells(mdp)
    if n == mdp.num_states:
        return per_state
    if fold == "first":
        return per_state[:n]
    obs = mdp.state_to_obs.cpu().numpy()
    out = np.zeros((n,) + per_state.shape[1:])
    np.add.at(out, obs, per_state)
    return out


def _on_grid(mdp: TabularMDP, per_cell: np.ndarray) -> np.ndarray:
    """Lay a (cells,) vector out as a (rows, cols) image; padding cells are NaN (blank)."""
    rows, cols, _ = _layout(mdp)
    image = np.full(rows * cols, np.nan)
    image[: per_cell.shape[0]] = per_cell
    return image.reshape(rows, cols)


def _cell_labels(mdp: TabularMDP) -> dict[int, str]:
    """Short text per state: FrozenLake's S/F/H/G map letters, else S for start states and
    T for terminal states on a grid, else the state index on a strip."""
    rows, cols, is_grid = _layout(mdp)
    S = _num_cells(mdp)
    desc = None if mdp.desc is None else np.asarray(mdp.desc).astype(str)
    if is_grid and desc is not None and desc.shape == (rows, cols):
        return {s: desc.flat[s] for s in range(S)}
    if is_grid:
        start = np.flatnonzero(mdp.initial.cpu().numpy()[:S] > 0)
        labels = {int(s): "S" for s in start}
        if mdp.terminal is not None:
            end = np.flatnonzero(mdp.terminal.cpu().numpy()[:S])
            labels.update({int(s): "T" for s in end})
        return labels
    return {s: str(s) for s in range(S)} if S <= 2 * _STRIP_WIDTH else {}


def _annotate_cells(ax: Axes, mdp: TabularMDP, fontsize: float = 9) -> None:
    cols = _layout(mdp)[1]
    for s, text in _cell_labels(mdp).items():
        r, c = divmod(s, cols)
        ax.text(
            c - 0.42, r - 0.42, text, ha="left", va="top", fontsize=fontsize,
            fontweight="bold", color="white",
            bbox=dict(boxstyle="round,pad=0.1", fc="black", alpha=0.45, lw=0),
        )  # fmt: skip


def _style_grid_axes(ax: Axes, rows: int, cols: int) -> None:
    ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)


def _action_arrows(mdp: TabularMDP, action_arrows):
    if action_arrows is not None:
        arrows = np.asarray(action_arrows, dtype=np.float64)
        if arrows.shape != (mdp.num_actions, 2):
            raise ValueError(
                f"`action_arrows` must have shape (A, 2) = ({mdp.num_actions}, 2) with one "
                f"(dx, dy) per action, got {arrows.shape}"
            )
        return arrows
    for prefix, moves in ACTION_ARROWS.items():
        if mdp.name.startswith(prefix) and len(moves) == mdp.num_actions:
            return np.asarray(moves, dtype=np.float64)
    return None


# --------------------------------------------------------------------------- values
def plot_values(
    mdp: TabularMDP,
    values,
    policy=None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    action_arrows=None,
    cmap: str = "viridis",
    annotate_values: bool | None = None,
) -> Axes:
    """Heatmap of V(s) on the MDP's grid, with the policy π(a|s) drawn as arrows.

    The grid is ``mdp.grid_shape`` when it holds exactly S cells (FrozenLake, CliffWalking,
    chains); otherwise states are laid out as a strip (wrapped every 25 states). FrozenLake's
    map letters S/F/H/G mark the cells. Each action with π(a|s) ≥ 0.03 gets an arrow out of the
    cell centre whose length is proportional to its probability; terminal states get none.
    Where the action directions are unknown (e.g. Taxi, random MDPs) the most likely action
    and its probability are written in the cell instead (up to 100 cells).

    Args:
        mdp: the :class:`~pgm_control.TabularMDP` whose states are drawn.
        values: V(s), shape (S,); or a :class:`~pgm_control.SoftValues`, whose V₀ and π₀
            are used (``policy`` overrides π₀).
        policy: π(a|s), shape (S, A), e.g. ``soft_values.policy[t]``; None draws no arrows.
        ax: Axes to draw on; a new figure if None.
        title: Axes title; defaults to the MDP's name.
        action_arrows: (A, 2) unit moves (dx, dy) per action, y pointing down; by default
            looked up in :data:`ACTION_ARROWS` by the MDP's name (FrozenLake: 0=left, 1=down,
            2=right, 3=up; CliffWalking: 0=up, 1=right, 2=down, 3=left).
        cmap: matplotlib colormap of the heatmap.
        annotate_values: write V(s) in each cell (default: when S ≤ 64).

    Returns:
        The Axes.
    """
    mdp = _check_mdp(mdp)
    S, A = mdp.num_states, mdp.num_actions
    if isinstance(values, SoftValues):
        policy = values.policy[0] if policy is None else policy
        values = values.v[0]
    v = _to_numpy("values", values, ndim=1)
    if v.shape != (S,):
        raise ValueError(
            f"`values` must have shape (S,) = ({S},), got {v.shape}; for soft values pass "
            "`soft_values.v[t]` (or the SoftValues itself)"
        )
    pi = None
    if policy is not None:
        pi = _to_numpy("policy", policy, ndim=2)
        if pi.shape != (S, A):
            raise ValueError(
                f"`policy` must have shape (S, A) = ({S}, {A}), got {pi.shape}; for a "
                "time-varying policy pass one step, e.g. `policy[0]`"
            )
        if (pi < 0).any() or np.abs(pi.sum(-1) - 1).max() > 1e-6:
            raise ValueError("`policy` rows must be probability distributions over actions")
    arrows = _action_arrows(mdp, action_arrows)

    ax = _new_axes(ax)
    rows, cols, _ = _layout(mdp)
    n = _num_cells(mdp)
    v = _per_cell(mdp, v, fold="first")
    image = np.ma.masked_invalid(_on_grid(mdp, v))
    im = ax.imshow(image, cmap=cmap, interpolation="nearest")
    # fraction ∝ aspect ratio keeps the colorbar as tall as a wide grid
    ax.figure.colorbar(im, ax=ax, fraction=0.046 * min(1.0, rows / cols) + 0.004, label="V(s)")
    _style_grid_axes(ax, rows, cols)
    _annotate_cells(ax, mdp)
    if annotate_values is None:
        annotate_values = n <= 64
    if annotate_values:
        for s in range(n):
            r, c = divmod(s, cols)
            ax.text(c + 0.45, r + 0.45, f"{v[s]:.2g}", ha="right", va="bottom", fontsize=6.5,
                    color="white", alpha=0.9)  # fmt: skip

    if pi is not None:
        pi = _per_cell(mdp, pi, fold="first")
        terminal = np.zeros(n, bool)
        if mdp.terminal is not None:
            terminal = _per_cell(mdp, mdp.terminal.cpu().numpy().astype(bool), fold="first")
        live = np.flatnonzero(~terminal)
        r, c = np.divmod(live, cols)
        if arrows is not None:
            # arrows start a little off the cell centre (so a uniform policy reads as a star)
            # and are 0.35 · π(a|s) cells long, in data units: the same on every grid size
            for s, rr, cc in zip(live, r, c):
                for a in np.flatnonzero(pi[s] >= _MIN_ARROW_PROB):
                    (dx, dy), length = arrows[a], 0.35 * pi[s, a]
                    head = min(0.13, 0.6 * length)
                    ax.arrow(
                        cc + 0.08 * dx, rr + 0.08 * dy, dx * length, dy * length,
                        width=0.03, head_width=2.2 * head, head_length=head,
                        length_includes_head=True, fc="white", ec="black", lw=0.4,
                    )  # fmt: skip
        elif n <= 100:  # beyond that the labels would be unreadable
            for s, rr, cc in zip(live, r, c):
                best = int(pi[s].argmax())
                ax.text(cc, rr, f"a{best}\n{pi[s, best]:.2f}", ha="center", va="center",
                        fontsize=6.5, color="white")  # fmt: skip
    ax.set_title(mdp.name if title is None else title)
    return ax


# --------------------------------------------------------------------------- marginals
def _check_marginals(marginals, num_states: int | None = None) -> np.ndarray:
    m = _to_numpy("marginals", marginals, ndim=2)
    if num_states is not None and m.shape[1] != num_states:
        raise ValueError(
            f"`marginals` must have shape (T, S) with S = {num_states} (indexed as "
            f"marginals[t, s]), got {m.shape}"
        )
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError("`marginals` must be finite and non-negative probabilities")
    return m


def plot_marginals(
    marginals,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "magma",
    label: str = "p(sₜ | O)",
) -> Axes:
    """States × time heatmap of marginals such as p(sₜ | O) = αₜ(s)·βₜ(s) / p(O).

    Args:
        marginals: indexed as [t, s], shape (T, S) or (T + 1, S), e.g. from
            :func:`~pgm_control.state_marginals`; finite and non-negative.
        ax: Axes to draw on; a new figure if None.
        title: Axes title.
        cmap: matplotlib colormap.
        label: colorbar label.

    Returns:
        The Axes, with time on the x-axis and the state index on the y-axis.
    """
    m = _check_marginals(marginals)
    ax = _new_axes(ax, figsize=(7, 4))
    im = ax.imshow(m.T, aspect="auto", cmap=cmap, interpolation="nearest", vmin=0.0)
    ax.figure.colorbar(im, ax=ax, label=label)
    ax.set_xlabel("time t")
    ax.set_ylabel("state s")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_marginals_on_grid(
    mdp: TabularMDP,
    marginals,
    times: Sequence[int] | None = None,
    *,
    ncols: int | None = None,
    cmap: str = "magma",
    title: str | None = None,
) -> Figure:
    """Small multiples of state marginals on the MDP's grid, one panel per time step.

    Args:
        mdp: the :class:`~pgm_control.TabularMDP` (its grid lays the states out).
        marginals: indexed as [t, s], shape (T, S) or (T + 1, S).
        times: the time steps to draw (negative counts from the end); by default up to six,
            evenly spaced from the first to the last row.
        ncols: panels per row (default: all in one row, at most 6).
        cmap: matplotlib colormap; all panels share one colour scale.
        title: figure title.

    Returns:
        The Figure.
    """
    mdp = _check_mdp(mdp)
    m = _check_marginals(marginals, mdp.num_states)
    m = _per_cell(mdp, m.T, fold="sum").T  # fold copy states onto their observation
    n_rows_m = m.shape[0]
    if times is None:
        times = sorted(set(np.linspace(0, n_rows_m - 1, min(6, n_rows_m)).round().astype(int)))
    times = [int(t) for t in times]
    if not times:
        raise ValueError("`times` must name at least one time step")
    bad = [t for t in times if not -n_rows_m <= t < n_rows_m]
    if bad:
        raise ValueError(f"`times` must lie in [0, {n_rows_m}) for marginals of shape {m.shape}")
    times = [t % n_rows_m for t in times]
    ncols = min(len(times), 6) if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"`ncols` must be >= 1, got {ncols}")
    nrows = math.ceil(len(times) / ncols)
    rows, cols, _ = _layout(mdp)
    panel = 2.2 * min(1.0, 6 / max(rows, cols)) * max(1.0, cols / max(rows, 1)) ** 0.5
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel * ncols + 1.0, panel * nrows * rows / cols + 0.8),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    vmax = max(float(m[times].max()), 1e-12)
    for ax, t in zip(axes.flat, times):
        im = ax.imshow(
            np.ma.masked_invalid(_on_grid(mdp, m[t])), cmap=cmap, vmin=0.0, vmax=vmax,
            interpolation="nearest",
        )  # fmt: skip
        _style_grid_axes(ax, rows, cols)
        _annotate_cells(ax, mdp, fontsize=7)
        ax.set_title(f"t = {t}", fontsize=10)
    for ax in list(axes.flat)[len(times) :]:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes, shrink=0.8, label="probability")
    if title is not None:
        fig.suptitle(title)
    return fig


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
