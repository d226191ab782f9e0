"""The exact tabular tables of a gymnasium toy-text env, read from its ``P`` table.

:meth:`pgm_control.TabularMDP.from_gymnasium` is the public door; this module holds the table
building (copy states for outcomes that share s' with different rewards, absorbing terminal
states, goal and action metadata) and the rule for when the tables are stored sparse.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.toy_text.cliffwalking import CliffWalkingEnv
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv
from gymnasium.envs.toy_text.taxi import TaxiEnv

from .gym_options import check_make_kwargs

__all__ = ["gymnasium_tables"]

# "sparse=None" stores P and r sparse when the dense (S, A, S) table would exceed this many
# entries (16 MiB in float64) and the non-zeros are at least 8x fewer. Below it the dense
# matmuls are as fast as the gathers, and the Pyro models and guides (which read dense
# tables) keep working on the classic toy-text envs (FrozenLake, CliffWalking, Taxi: <= 1.5M).
SPARSE_MIN_ENTRIES = 2**21
SPARSE_MIN_RATIO = 8


def gymnasium_tables(env_or_id, make_kwargs: dict, sparse: bool | None = None) -> dict:
    """Keyword arguments of :class:`~pgm_control.TabularMDP` (all but horizon and dtype).

    Args:
        env_or_id: a gymnasium env instance or an id such as ``"FrozenLake-v1"``.
        make_kwargs: passed to ``gymnasium.make`` when an id is given.
        sparse: True: ``transition`` and ``reward`` as sparse COO (S, A, S) tensors; False:
            dense arrays; None: sparse when the dense table has more than
            ``SPARSE_MIN_ENTRIES`` entries and at least ``SPARSE_MIN_RATIO`` times the non-zeros.
    """
    if sparse not in (None, True, False):
        raise TypeError(f"`sparse` must be True, False or None (automatic), got {sparse!r}")
    if isinstance(env_or_id, str):
        check_make_kwargs(env_or_id, make_kwargs)  # one-line errors, not gymnasium's
        env = gym.make(env_or_id, **make_kwargs)
    elif make_kwargs:
        raise TypeError("`make_kwargs` are only accepted together with an env id string")
    else:
        env = env_or_id
    if not hasattr(env, "unwrapped"):
        raise TypeError(
            f"`env_or_id` must be a gymnasium env or an env id string, got {type(env).__name__}"
        )
    u = env.unwrapped
    spaces = gym.spaces
    if not isinstance(env.observation_space, spaces.Discrete) or not isinstance(
        env.action_space, spaces.Discrete
    ):
        raise ValueError(
            f"`env_or_id` must have Discrete observation and action spaces for a tabular MDP; "
            f"got {env.observation_space} and {env.action_space}. Continuous envs need "
            "a ContinuousMDP and a sampling-based method (SVI with a continuous guide, MPPI)."
        )
    table = getattr(u, "P", None)
    if not isinstance(table, dict):
        raise ValueError(
            f"`env_or_id` ({u.__class__.__name__}) has no transition table `unwrapped.P`; "
            "exact tabular inference needs P[s][a] = [(prob, next_state, reward, done), ...]"
        )
    n_obs, A = int(env.observation_space.n), int(env.action_space.n)
    # Outcomes that share s' but pay different rewards (slippery CliffWalking: falling off
    # the cliff and bumping a wall both land on the start cell) cannot be merged without
    # changing the exact posterior, which weighs them by exp(r/α). Each extra
    # (s', reward) pair becomes a copy of s' with identical outgoing rows, appended after
    # the env's states; `state_to_obs` maps every state back to the env's observation.
    copies: dict[tuple[int, float], int] = {}
    rows = {}
    for s in range(n_obs):
        for a in range(A):
            first_reward: dict[int, float] = {}  # per row: the reward s' is first paid
            for prob, s_next, rew, done in table[s][a]:
                s_next, rew = int(s_next), float(rew)
                if prob <= 0:
                    continue
                first_reward.setdefault(s_next, rew)
                if rew != first_reward[s_next] and (s_next, rew) not in copies:
                    copies[(s_next, rew)] = n_obs + len(copies)
                rows.setdefault((s, a), []).append((prob, s_next, rew, done))
    S = n_obs + len(copies)
    state_to_obs = np.arange(S)
    for (s_next, _), c in copies.items():
        state_to_obs[c] = s_next
    P = np.zeros((S, A, S))
    R = np.zeros((S, A, S))
    terminal = np.zeros(S, dtype=bool)
    for (s, a), outcomes in rows.items():
        paid = {}
        for prob, s_next, rew, done in outcomes:
            paid.setdefault(s_next, rew)
            target = s_next if rew == paid[s_next] else copies[(s_next, rew)]
            P[s, a, target] += prob  # duplicates with equal rewards are summed
            R[s, a, target] = rew
            terminal[target] |= bool(done)
    for c in range(n_obs, S):  # a copy behaves exactly like the state it copies
        P[c], R[c] = P[state_to_obs[c]], R[state_to_obs[c]]
        terminal[c] = terminal[state_to_obs[c]]
    for s in np.flatnonzero(terminal):
        P[s] = 0.0
        P[s, :, s] = 1.0
        R[s] = 0.0
    initial = np.zeros(S)
    distrib = getattr(u, "initial_state_distrib", None)
    if distrib is not None and np.shape(distrib) == (n_obs,):
        initial[:n_obs] = distrib
    else:
        initial[int(env.reset(seed=0)[0])] = 1.0
    grid_shape, desc = None, None
    # states are grid cells only when the grid has exactly one cell per observation
    # (FrozenLake's `desc`, CliffWalking's `shape`); Taxi's map is not its state space
    if getattr(u, "desc", None) is not None and np.asarray(u.desc).size == n_obs:
        desc = np.asarray(u.desc).astype(str)
        grid_shape = desc.shape
    elif len(getattr(u, "shape", ())) == 2 and int(np.prod(u.shape)) == n_obs:
        grid_shape = tuple(int(x) for x in u.shape)
    names, moves = None, None
    for env_class, (class_names, class_moves) in _GYMNASIUM_ACTIONS.items():
        if isinstance(u, env_class) and len(class_names) == A:
            names, moves = class_names, class_moves
    spec = getattr(env, "spec", None)
    name = spec.id if spec is not None else u.__class__.__name__
    kw = getattr(spec, "kwargs", {}) or {}
    if "map_name" in kw:
        name += f" {kw['map_name']}"
    if not bool((P.max(-1) == 1).all()):
        name += " slippery"
    goal = _gymnasium_goal(P, R, terminal, desc, state_to_obs)
    nnz = int((P > 0).sum())
    if sparse is None:
        sparse = P.size > SPARSE_MIN_ENTRIES and nnz * SPARSE_MIN_RATIO <= P.size
    transition, reward = P, R
    if sparse:
        idx = np.nonzero(P > 0)
        indices = torch.as_tensor(np.stack(idx))
        shape = P.shape
        transition = torch.sparse_coo_tensor(
            indices, torch.as_tensor(P[idx]), shape, check_invariants=False
        )
        reward = torch.sparse_coo_tensor(
            indices, torch.as_tensor(R[idx]), shape, check_invariants=False
        )
    return dict(
        transition=transition, reward=reward, initial=initial, name=name,
        terminal=terminal, grid_shape=grid_shape, desc=desc,
        state_to_obs=None if S == n_obs else state_to_obs,
        goal_states=goal, action_names=names, action_moves=moves,
    )  # fmt: skip


# Actions of gymnasium's toy-text grids, in gymnasium's own order (the `## Action Space` of
# each env's docstring; frozen_lake.LEFT..UP = 0..3, cliffwalking.UP..LEFT = 0..3): the name
# and the (drow, dcol) move of each action. Taxi's state is not a grid cell: names only.
_GYMNASIUM_ACTIONS: dict[type, tuple[tuple[str, ...], tuple | None]] = {
    FrozenLakeEnv: (("left", "down", "right", "up"), ((0, -1), (1, 0), (0, 1), (-1, 0))),
    CliffWalkingEnv: (("up", "right", "down", "left"), ((-1, 0), (0, 1), (1, 0), (0, -1))),
    TaxiEnv: (("south", "north", "east", "west", "pickup", "dropoff"), None),
}


def _gymnasium_goal(P, R, terminal, desc, state_to_obs) -> np.ndarray | None:
    """Goal mask (S,) of a toy-text env from its tables.

    The ``G`` cells of a map (FrozenLake); otherwise the terminal states entered with the
    highest reward (CliffWalking's goal cell, Taxi's successful drop-offs); None without
    terminal states.
    """
    if desc is not None and (desc == "G").any():
        return desc.reshape(-1)[state_to_obs] == "G"
    if not terminal.any():
        return None
    # the reward paid on entering each state from another one, max over the (s, a) reaching it
    S = P.shape[0]
    enters = (P > 0) & ~np.eye(S, dtype=bool)[:, None, :]
    entry = np.where(enters, R, -np.inf).max(axis=(0, 1))
    best = entry[terminal].max()
    if best == -np.inf:
        return None
    return terminal & (entry == best)
