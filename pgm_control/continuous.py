"""Continuous-state, continuous-action MDPs given by vectorised torch functions.

A :class:`ContinuousMDP` is what the sampling-based routes (SVI with continuous guides,
importance sampling, MPPI) work on: ``dynamics(s, a)`` and ``reward(s, a)`` act on batches
(..., state_dim) × (..., action_dim), so thousands of particles advance in one call.
``dynamics`` returns the next state (deterministic) or a torch ``Distribution`` over it (a
learned stochastic model). Actions are boxes [action_low, action_high]; the dynamics clip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Distribution

from .validation import check_positive_int

__all__ = ["ContinuousMDP"]


def _initial_dtype(initial: Distribution) -> torch.dtype:
    """The floating dtype of p0's parameters, read off its mean (float64 where p0 has none)."""
    try:
        mean = initial.mean
    except NotImplementedError:
        return torch.float64
    floating = isinstance(mean, torch.Tensor) and mean.is_floating_point()
    return mean.dtype if floating else torch.float64


def _vector(name, value, dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        dtype = value.dtype  # a tensor bound keeps its own dtype
    t = torch.as_tensor(value, dtype=dtype)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1:
        raise ValueError(f"`{name}` must be a scalar or a 1-D vector, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"`{name}` must be finite, got {t.tolist()}")
    return t


@dataclasses.dataclass(frozen=True, eq=False)
class ContinuousMDP:
    """A finite-horizon MDP with continuous states and actions.

    Args:
        dynamics: ``f(s, a) -> s'`` (tensor) or a ``Distribution`` over s', vectorised over
            leading batch dims; s is (..., state_dim), a is (..., action_dim).
        reward: ``r(s, a) -> (...)``, vectorised the same way.
        initial: a torch ``Distribution`` over s₀ with event shape (state_dim,).
        horizon: T >= 1.
        action_low, action_high: bounds of the action box (scalars or (action_dim,)). Stored
            as tensors in the MDP's dtype (:attr:`dtype`): a floating tensor keeps its own,
            anything else takes the dtype of ``initial``'s mean (float64 if it has none).
        name: a label.
        gym_id: the gymnasium id whose ``step`` these functions reproduce, if any.
        env_state: ``g(state) -> env.unwrapped.state`` to start the real env from a state.
        observe: ``o(state) -> observation`` as the gymnasium env would return it.
        state_from_env: reads a model state off a gymnasium env's ``unwrapped``.
        terminal_reward: ``r_T(s) -> (...)`` on the final state s_T, or None (no terminal term).
            The model then adds one more optimality factor, p(O_T | s_T) = exp(r_T(s_T)/α). In a
            receding-horizon planner it stands for the backward message the truncated horizon
            drops, exp(V(s_H)/α): any estimate of the value beyond the horizon plugs in here.

    Every field must pickle for the MDP to be saved (``pickle``, ``torch.save``): give
    module-level functions or instances of small callable classes, not lambdas or closures
    (the built-in twins of :mod:`pgm_control.envs` do so).
    """

    dynamics: Callable
    reward: Callable
    initial: Distribution
    horizon: int
    action_low: Any
    action_high: Any
    name: str = "continuous-mdp"
    gym_id: str | None = None
    env_state: Callable | None = None
    observe: Callable | None = None
    state_from_env: Callable | None = None
    terminal_reward: Callable | None = None

    def __post_init__(self):
        for field in ("dynamics", "reward"):
            if not callable(getattr(self, field)):
                raise TypeError(f"`{field}` must be a callable f(s, a) on torch tensors")
        if self.terminal_reward is not None and not callable(self.terminal_reward):
            raise TypeError(
                "`terminal_reward` must be None or a callable r_T(s) on torch tensors, got "
                f"{type(self.terminal_reward).__name__}"
            )
        if not isinstance(self.initial, Distribution):
            raise TypeError(
                "`initial` must be a torch Distribution over s0 with event shape (state_dim,), "
                f"e.g. Uniform(low, high).to_event(1); got {type(self.initial).__name__}"
            )
        if len(self.initial.event_shape) != 1:
            raise ValueError(
                "`initial` must have event shape (state_dim,), got "
                f"{tuple(self.initial.event_shape)}; use `.to_event(1)`"
            )
        object.__setattr__(self, "horizon", check_positive_int("horizon", self.horizon))
        dtype = _initial_dtype(self.initial)
        low = _vector("action_low", self.action_low, dtype)
        high = _vector("action_high", self.action_high, dtype)
        if low.shape != high.shape:
            raise ValueError(
                f"`action_low` {tuple(low.shape)} and `action_high` {tuple(high.shape)} must match"
            )
        if not (low < high).all():
            raise ValueError("`action_low` must be < `action_high` in every dimension")
        object.__setattr__(self, "action_low", low)
        object.__setattr__(self, "action_high", high)

    @property
    def state_dim(self) -> int:
        return self.initial.event_shape[0]

    @property
    def action_dim(self) -> int:
        return self.action_low.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        """The MDP's floating dtype: that of the action bounds (see ``action_low``)."""
        return self.action_low.dtype

    @property
    def stochastic(self) -> bool:
        """Whether ``dynamics`` returns a Distribution over s' (a learned stochastic model)
        rather than s' itself. A dynamics callable may declare it with a boolean
        ``stochastic`` attribute (the learned models of :mod:`pgm_control.learning` do, so
        that nothing runs on the wrong device); otherwise it is found by calling the dynamics
        once, without gradients, on the zero state and the centre of the action box. Planners
        read it once, when they are built."""
        declared = getattr(self.dynamics, "stochastic", None)
        if isinstance(declared, bool):
            return declared
        state = torch.zeros(self.state_dim, dtype=self.dtype, device=self.action_low.device)
        action = (self.action_low + self.action_high) / 2
        with torch.no_grad():
            return isinstance(self.dynamics(state, action), Distribution)

    def replace(self, **changes) -> ContinuousMDP:
        """A copy with some fields changed, e.g. ``mdp.replace(horizon=30)``."""
        return dataclasses.replace(self, **changes)

    def step(self, state: torch.Tensor, action: torch.Tensor):
        """(s', r) for a batch; s' is sampled when the dynamics are stochastic."""
        nxt = self.dynamics(state, action)
        if isinstance(nxt, Distribution):
            nxt = nxt.sample()
        return nxt, self.reward(state, action)

    def __repr__(self) -> str:
        return (
            f"ContinuousMDP(name={self.name!r}, state_dim={self.state_dim}, "
            f"action_dim={self.action_dim}, T={self.horizon})"
        )


def _check_continuous(mdp, where: str = "mdp") -> ContinuousMDP:
    if not isinstance(mdp, ContinuousMDP):
        hint = ""
        if hasattr(mdp, "transition"):
            hint = " Tabular MDPs have exact routines (soft_value_iteration, log_evidence)."
        raise TypeError(f"`{where}` must be a ContinuousMDP, got {type(mdp).__name__}.{hint}")
    return mdp
