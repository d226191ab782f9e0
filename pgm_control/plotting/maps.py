"""Pictures on the MDP's own state layout: value maps with policy arrows, marginals.

States are drawn as the cells of ``mdp.grid_shape`` when it holds one cell per observation
(copy states that ``from_gymnasium`` adds are folded back onto their cell), otherwise as a
strip wrapped every 25 states. Goal cells, action names and arrow directions come from the
MDP's metadata (``goal_states``, ``action_names``, ``action_moves``), never from its name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..backward import SoftValues
from ..mdp import TabularMDP, _check_mdp
from ._inputs import _new_axes, _to_numpy

__all__ = ["plot_values", "plot_marginals", "plot_marginals_on_grid", "action_labels"]

_STRIP_WIDTH = 25  # states per row when an MDP has no grid of its own
_MIN_ARROW_PROB = 0.03  # arrows shorter than this are not drawn


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
    """Short text per state: the map letters of ``mdp.desc`` (FrozenLake's S/F/H/G), else S
    for start states, T for terminal states and G for goal states on a grid, else the state
    index on a strip."""
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
        if mdp.goal_states is not None:
            goal = np.flatnonzero(mdp.goal_states.cpu().numpy()[:S])
            labels.update({int(s): "G" for s in goal})
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


def _action_arrows(mdp: TabularMDP, action_arrows) -> np.ndarray | None:
    """(A, 2) arrow directions (dx, dy), y pointing down: given, or from ``mdp.action_moves``
    (drow, dcol) → (dcol, drow); None when neither says where the actions go."""
    if action_arrows is not None:
        arrows = np.asarray(action_arrows, dtype=np.float64)
        if arrows.shape != (mdp.num_actions, 2):
            raise ValueError(
                f"`action_arrows` must have shape (A, 2) = ({mdp.num_actions}, 2) with one "
                f"(dx, dy) per action, got {arrows.shape}"
            )
        return arrows
    if mdp.action_moves is None:
        return None
    return np.asarray(mdp.action_moves, dtype=np.float64)[:, ::-1]


def action_labels(mdp: TabularMDP) -> tuple[str, ...]:
    """The name of each action: ``mdp.action_names``, or ``("a0", "a1", ...)`` without them.

    Args:
        mdp: a :class:`~pgm_control.TabularMDP`.

    Returns:
        A strings.
    """
    mdp = _check_mdp(mdp)
    if mdp.action_names is not None:
        return mdp.action_names
    return tuple(f"a{a}" for a in range(mdp.num_actions))


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
    label: str = "V(s)",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> Axes:
    """Heatmap of V(s) on the MDP's grid, with the policy π(a|s) drawn as arrows.

    The grid is ``mdp.grid_shape`` when it holds exactly S cells (FrozenLake, CliffWalking,
    chains); otherwise states are laid out as a strip (wrapped every 25 states). The map
    letters of ``mdp.desc`` (FrozenLake's S/F/H/G) mark the cells; without a map, S marks
    start states, T terminal states and G ``mdp.goal_states``. Each action with π(a|s) ≥ 0.03
    gets an arrow out of the cell centre whose length is proportional to its probability;
    terminal states get none.
    The arrow directions come from ``mdp.action_moves``; where they are unknown (e.g. Taxi,
    random MDPs) the most likely action (its ``action_names`` entry, or a0..) and its
    probability are written in the cell instead (up to 100 cells).

    Args:
        mdp: the :class:`~pgm_control.TabularMDP` whose states are drawn.
        values: V(s), shape (S,); or a :class:`~pgm_control.SoftValues`, whose V₀ and π₀
            are used (``policy`` overrides π₀).
        policy: π(a|s), shape (S, A), e.g. ``soft_values.policy[t]``; None draws no arrows.
        ax: Axes to draw on; a new figure if None.
        title: Axes title; defaults to the MDP's name.
        action_arrows: (A, 2) unit moves (dx, dy) per action, x to the right and y pointing
            down; by default ``mdp.action_moves`` (drow, dcol) as (dcol, drow).
        cmap: matplotlib colormap of the heatmap.
        annotate_values: write V(s) in each cell (default: when S ≤ 64).
        label: what ``values`` is, for the colour bar (e.g. "expected visits"); the same
            plot then shows any per-state quantity.
        vmin, vmax: the colour scale (default: the values' range); give the same to several
            panels that share one colour bar.
        colorbar: draw this panel's colour bar (False when the figure draws a shared one,
            ``fig.colorbar(ax.images[0], ax=axes)``).

    The arrow scale is written under the grid: an arrow is 0.35 cell × π(a|s) long, so a
    certain action's arrow spans 0.35 cell.

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
    im = ax.imshow(image, cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
    if colorbar:  # fraction ∝ aspect ratio keeps the colorbar as tall as a wide grid
        ax.figure.colorbar(im, ax=ax, fraction=0.046 * min(1.0, rows / cols) + 0.004, label=label)
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
            ax.set_xlabel("arrow length ∝ π(a|s) (0.35 cell at π = 1)", fontsize=8)
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
            names = action_labels(mdp)
            for s, rr, cc in zip(live, r, c):
                best = int(pi[s].argmax())
                ax.text(cc, rr, f"{names[best]}\n{pi[s, best]:.2f}", ha="center", va="center",
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
        ncols: panels per row (default: one row up to 8 panels, else rows of equal length
            with at most 6 panels, so no panel sits alone on a last row).
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
    if ncols is None:
        n_rows = 1 if len(times) <= 8 else math.ceil(len(times) / 6)
        ncols = math.ceil(len(times) / n_rows)
    ncols = int(ncols)
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
