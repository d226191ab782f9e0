"""What type of inference is planning? The five backups compared by what their policies earn.

Lázaro-Gredilla et al. (2024, "What type of inference is planning?", NeurIPS) read a policy
off the optimality PGM in five ways, all offered by :func:`~pgm_control.soft_value_iteration`:

=============  ==================  ==================================================
type           ``backup=``         over next states s' × over actions a
=============  ==================  ==================================================
marginal       "optimistic"        log Σ P·exp((r+V')/α)  ×  log Σ p(a|s)·exp(Q/α)
MAP            "map"               max log P + (r+V')/α    ×  max log p(a|s) + Q/α
marginal MAP   "marginal_map"      log Σ P·exp((r+V')/α)  ×  max log p(a|s) + Q/α
MaxEnt         "expected"          Σ P·(r+V')/α            ×  log Σ p(a|s)·exp(Q/α)
planning       "planning"          Σ P·(r+V')              ×  max_{p(a|s)>0} Q
=============  ==================  ==================================================

Under deterministic dynamics the sums over s' have one term and every type plans well; once
the dynamics are stochastic, the types that take a log-expectation (or a max) of exp(r/α)
over s' are risk-seeking and only planning maximises the expected return. This module scores
each type by the exact expected (true-reward) return E_π[Σₜ r] of its policy, and builds the
slippery cliff on which the difference shows.
"""

from __future__ import annotations

import numpy as np
import torch

from .backward import soft_value_iteration
from .elbo import elbo_terms
from .mdp import TabularMDP, _check_mdp, _check_temperature
from .validation import check_positive_int, check_probability

__all__ = ["INFERENCE_TYPES", "inference_type_returns", "slippery_cliff_mdp"]

#: backup name → the paper's name for the type of inference
INFERENCE_TYPES = {
    "optimistic": "marginal",
    "map": "MAP",
    "marginal_map": "marginal MAP",
    "expected": "MaxEnt",
    "planning": "planning",
}

# up, right, down, left as (drow, dcol), CliffWalking's order
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))


def slippery_cliff_mdp(
    height: int = 4,
    width: int = 6,
    *,
    slip: float = 0.0,
    horizon: int | None = None,
    step_reward: float = -1.0,
    cliff_reward: float = -20.0,
    dtype=torch.float64,
) -> TabularMDP:
    """CliffWalking with slippery moves: the risky short path runs along the cliff edge.

    A ``height`` × ``width`` grid; start at the bottom-left cell, the goal at the bottom-right,
    the cells between them on the bottom row are the cliff. Actions up/right/down/left move
    one cell (a wall keeps the agent in place); with probability ``slip`` the move goes in one
    of the other three directions instead, each with probability slip/3. Every move costs
    ``step_reward``; stepping into the cliff earns ``cliff_reward`` and ends the episode
    (absorbing, reward 0 afterwards), as does reaching the goal.

    Args:
        height, width: grid size, at least 2 × 3.
        slip: probability in [0, 1) that a move goes astray.
        horizon: T; default 3·(height + width), enough for the long way round.
        step_reward: reward of every move outside the terminal cells (≤ 0).
        cliff_reward: reward of falling off the cliff.
        dtype: floating dtype of the tables.

    Returns:
        A :class:`TabularMDP` with ``grid_shape``, ``desc`` (``S`` start, ``F`` free, ``H``
        cliff, ``G`` goal), ``goal_states`` and ``action_moves`` filled in.
    """
    H = check_positive_int("height", height, minimum=2)
    W = check_positive_int("width", width, minimum=3)
    slip = check_probability("slip", slip, open_high=True)
    T = 3 * (H + W) if horizon is None else check_positive_int("horizon", horizon)
    if not np.isfinite(step_reward) or not np.isfinite(cliff_reward):
        raise ValueError("`step_reward` and `cliff_reward` must be finite numbers")
    S, A = H * W, len(_MOVES)
    desc = np.full((H, W), "F")
    desc[H - 1, 1 : W - 1] = "H"
    desc[H - 1, 0], desc[H - 1, W - 1] = "S", "G"
    absorbing = (desc == "H") | (desc == "G")
    P = np.zeros((S, A, S))
    R = np.zeros((S, A, S))
    for row in range(H):
        for col in range(W):
            s = row * W + col
            if absorbing[row, col]:
                P[s, :, s] = 1.0
                continue
            for a in range(A):
                for b, (dr, dc) in enumerate(_MOVES):
                    prob = 1.0 - slip if b == a else slip / 3.0
                    r2, c2 = min(max(row + dr, 0), H - 1), min(max(col + dc, 0), W - 1)
                    s2 = r2 * W + c2
                    P[s, a, s2] += prob
                    R[s, a, s2] = cliff_reward if desc[r2, c2] == "H" else step_reward
    p0 = np.zeros(S)
    p0[(H - 1) * W] = 1.0
    return TabularMDP(
        P, R, p0, T, dtype=dtype, name=f"slippery cliff {H}x{W} (slip {slip:g})",
        terminal=absorbing.reshape(-1), grid_shape=(H, W), desc=desc,
        goal_states=desc.reshape(-1) == "G", action_names=("up", "right", "down", "left"),
        action_moves=_MOVES,
    )  # fmt: skip


def inference_type_returns(
    mdp: TabularMDP, *, temperature: float = 1.0, backups=tuple(INFERENCE_TYPES)
) -> dict[str, float]:
    """The exact expected return E_π[Σₜ r(sₜ, aₜ, sₜ₊₁)] of each type's policy π.

    ``E_π[Σₜ r] = Σₜ Σ_{s,a} dₜ^π(s)·πₜ(a|s)·r̄(s,a)`` under the true dynamics, from the
    exact occupancy (the reward term of :func:`~pgm_control.elbo_terms` at α = 1).

    Args:
        mdp: a :class:`TabularMDP`.
        temperature: α > 0 of the backups (planning's policy does not depend on it).
        backups: the ``backup=`` names to score; all five by default.

    Returns:
        ``{backup: expected return}`` as Python floats, in reward units.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    out = {}
    for backup in backups:
        policy = soft_value_iteration(mdp, temperature=alpha, backup=backup).policy
        out[backup] = elbo_terms(mdp, policy, temperature=1.0).reward.item()
    return out
