"""A procedural gridworld with sparse dynamics, from a few cells up to 1000 × 1000.

Each cell is a state (row-major, s = row·width + col). Four actions move up, right, down, left;
with probability ``slip`` the move slips to one of the two perpendicular directions (slip/2
each), so every (s, a) has at most 3 successors. A move into a wall or off the grid stays put.
Entering a goal pays +1, entering a hazard pays −1; both are absorbing with zero reward
afterwards (like FrozenLake's G and H). The start is the top-left cell. The tables are built
vectorised in numpy and stored as a sparse :class:`~pgm_control.TabularMDP` (≤ 12·S non-zeros).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .mdp import TabularMDP
from .validation import check_int, check_positive_int, check_probability

__all__ = ["gridworld"]

# up, right, down, left (the (drow, dcol) of each action) and each action's two perpendiculars
_MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])
_PERPENDICULAR = np.array([(3, 1), (0, 2), (1, 3), (2, 0)])
_NAMES = ("up", "right", "down", "left")


def _cells(name: str, value, height: int, width: int, rng: np.random.Generator, free):
    """A bool mask (H, W) from a mask, a list of (row, col) cells, or a fraction to draw."""
    if value is None:
        return np.zeros((height, width), dtype=bool)
    if isinstance(value, float):
        frac = check_probability(name, value, open_high=True)
        return free & (rng.random((height, width)) < frac)
    if isinstance(value, int) and not isinstance(value, bool):
        n = check_int(name, value)
        idx = np.flatnonzero(free)
        if not 0 <= n <= idx.size:
            raise ValueError(f"`{name}` asks for {n} random cells but only {idx.size} are free")
        mask = np.zeros(height * width, dtype=bool)
        mask[rng.choice(idx, size=n, replace=False)] = True
        return mask.reshape(height, width)
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        if arr.shape != (height, width):
            raise ValueError(
                f"`{name}` as a bool mask must have shape (height, width) = {(height, width)}, "
                f"got {arr.shape}"
            )
        return arr.copy()
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"`{name}` must be a bool mask (height, width), a list of (row, col) cells, a "
            f"number of random cells (int) or a fraction of cells (float); got {value!r}"
        )
    bad = (arr[:, 0] < 0) | (arr[:, 0] >= height) | (arr[:, 1] < 0) | (arr[:, 1] >= width)
    if bad.any():
        raise ValueError(
            f"`{name}` cell {tuple(arr[bad][0].tolist())} lies outside the {height} x {width} grid"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[arr[:, 0], arr[:, 1]] = True
    return mask


def gridworld(
    height: int,
    width: int,
    *,
    slip: float = 0.1,
    walls=0.1,
    goals=None,
    hazards=0.0,
    seed: int = 0,
    horizon: int = 100,
    dtype=torch.float64,
) -> TabularMDP:
    """A seeded sparse gridworld MDP with walls, goals and hazards.

    P(s'|s,a) = 1 − slip toward the intended neighbour and slip/2 toward each perpendicular
    one (a blocked move stays in s); r(s,a,s') = +1 on entering a goal, −1 on entering a
    hazard; goals and hazards are absorbing.

    Args:
        height, width: the grid (1 ≤ each ≤ 1000 is the tested range; S = height·width).
        slip: probability in [0, 1) that a move goes perpendicular.
        walls, hazards: cells as a bool mask (height, width), a list of (row, col), an int
            (that many random free cells) or a float (each free cell with that probability).
            The start cell (0, 0) is never a wall, hazard or goal.
        goals: the same forms; None puts one goal in the bottom-right cell.
        seed: seeds a local numpy Generator for the random cells (global RNGs untouched).
        horizon: T ≥ 1.
        dtype: storage dtype.

    Returns:
        A sparse :class:`~pgm_control.TabularMDP` with ``grid_shape``, a FrozenLake-style
        ``desc`` map (S start, F free, W wall, H hazard, G goal), ``goal_states``,
        ``terminal``, ``action_names`` and ``action_moves`` for the plotting functions.

    Raises:
        ValueError: an argument out of range, or ``goals`` none of which the start can reach.
    """
    H = check_positive_int("height", height)
    W = check_positive_int("width", width)
    slip = check_probability("slip", slip, open_high=True)
    horizon = check_positive_int("horizon", horizon)
    rng = np.random.default_rng(check_int("seed", seed))
    free = np.ones((H, W), dtype=bool)
    free[0, 0] = False  # the start stays open
    if goals is None:
        goal = np.zeros((H, W), dtype=bool)
        goal[H - 1, W - 1] = H * W > 1
    else:
        goal = _cells("goals", goals, H, W, rng, free)
    goal[0, 0] = False
    wall = _cells("walls", walls, H, W, rng, free & ~goal) & ~goal
    hazard = _cells("hazards", hazards, H, W, rng, free & ~goal & ~wall) & ~goal & ~wall
    wall[0, 0] = hazard[0, 0] = False
    if not goal.any():
        raise ValueError("`goals` is empty: the gridworld needs at least one goal cell")
    # reachable: 4-connected through cells that are neither walls nor hazards
    labels, _ = ndimage.label(~wall & ~hazard)
    if not (goal & (labels == labels[0, 0])).any():
        raise ValueError(
            "`goals`: no goal can be reached from the start (0, 0) — `walls` or `hazards` cut "
            "every path; use fewer walls/hazards, other goal cells or another `seed`"
        )
    return _build(H, W, slip, wall, goal, hazard, horizon, dtype)


def _build(H, W, slip, wall, goal, hazard, horizon, dtype) -> TabularMDP:
    S, A = H * W, 4
    rows, cols = np.divmod(np.arange(S), W)
    terminal = (goal | hazard | wall).reshape(-1)  # walls: unreachable, kept absorbing
    # outcome o of action a: the intended move (o = 0) or a perpendicular slip (o = 1, 2)
    direction = np.concatenate([np.arange(A)[:, None], _PERPENDICULAR], axis=1)  # (A, 3)
    prob = np.array([1 - slip, slip / 2, slip / 2])
    r_to = rows[:, None, None] + _MOVES[direction][None, :, :, 0]  # (S, A, 3)
    c_to = cols[:, None, None] + _MOVES[direction][None, :, :, 1]
    inside = (r_to >= 0) & (r_to < H) & (c_to >= 0) & (c_to < W)
    target = np.where(inside, r_to.clip(0, H - 1) * W + c_to.clip(0, W - 1), -1)
    flat_wall = wall.reshape(-1)
    blocked = (target < 0) | flat_wall[target.clip(0)]
    s_idx = np.broadcast_to(np.arange(S)[:, None, None], target.shape)
    target = np.where(blocked, s_idx, target)
    target = np.where(terminal[:, None, None], s_idx, target)  # absorbing
    p = np.broadcast_to(np.where(terminal[:, None, None], [1.0, 0.0, 0.0], prob), target.shape)
    order = np.argsort(target, axis=-1, kind="stable")  # successors sorted within each row
    target = np.take_along_axis(target, order, -1).reshape(-1)
    p = np.take_along_axis(np.ascontiguousarray(p), order, -1).reshape(-1)
    s_flat = s_idx.reshape(-1)
    a_flat = np.broadcast_to(np.arange(A)[None, :, None], (S, A, 3)).reshape(-1)
    keys = (s_flat * A + a_flat) * S + target
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])  # merge repeated s'
    p = np.add.reduceat(p, starts)
    keep = p > 0
    s_flat, a_flat, target = (x[starts][keep] for x in (s_flat, a_flat, target))
    p = p[keep]
    enters = ~terminal[s_flat]
    reward = np.where(enters & goal.reshape(-1)[target], 1.0, 0.0)
    reward = np.where(enters & hazard.reshape(-1)[target], -1.0, reward)
    indices = torch.as_tensor(np.stack([s_flat, a_flat, target]))
    shape = (S, A, S)
    transition = torch.sparse_coo_tensor(
        indices, torch.as_tensor(p), shape, is_coalesced=True, check_invariants=False
    )
    rewards = torch.sparse_coo_tensor(
        indices, torch.as_tensor(reward), shape, is_coalesced=True, check_invariants=False
    )
    initial = torch.zeros(S, dtype=torch.float64)
    initial[0] = 1.0
    desc = np.full((H, W), "F")
    desc[wall], desc[hazard], desc[goal] = "W", "H", "G"
    desc[0, 0] = "S"
    return TabularMDP(
        transition, rewards, initial, horizon, dtype=dtype,
        name=f"gridworld({H}x{W}, slip={slip:g})", terminal=terminal, grid_shape=(H, W),
        desc=desc, goal_states=goal.reshape(-1), action_names=_NAMES,
        action_moves=tuple(map(tuple, _MOVES.tolist())),
    )  # fmt: skip
