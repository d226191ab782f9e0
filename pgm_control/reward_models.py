"""Learned rewards r_ψ(s, a, s') of the sample-based inverse-RL routines, and the env wrapper
that pays them.

Guided cost learning and adversarial IRL never see the env's reward: they learn r_ψ from
demonstrations and ``env.step``. A reward model is any ``torch.nn.Module`` called as
``model(states, actions, next_states)`` on integer tensors of one shape that returns the
per-step rewards of that shape (floating). :class:`TabularReward` is the free table over what the
reward may depend on:

* ``"state_action"``: r_ψ(s, a) — expressive enough for the optimistic posterior of
  guided cost learning (and for AIRL's f, whose optimum is the expert's α·log π(a|s));
* ``"next_state"``: r_ψ(s') — paid for *entering* s', the state-only form that transfers
  across dynamics (FrozenLake's own reward is of this form: 1 for entering the goal);
* ``"state"``: r_ψ(s) — paid for leaving s.

:class:`LinearReward` is r_ψ = ψᵀ·f for fixed features (S, F), (S, A, F) or (S, A, S, F).
:func:`reward_table` evaluates any reward model on every (s, a, s') for exact evaluation, and
:class:`RewardWrapper` is the gymnasium wrapper that replaces the env's reward by the model's
(what the soft learners are trained on).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .validation import check_positive_int

__all__ = ["TabularReward", "LinearReward", "RewardWrapper", "reward_table", "REWARD_INPUTS"]

REWARD_INPUTS = ("state_action", "next_state", "state")


class TabularReward(nn.Module):
    """A free reward table r_ψ, initialised to 0 (the uniform-policy reward).

    Args:
        num_states: S.
        num_actions: A.
        inputs: what r_ψ depends on: "state_action" (ψ of shape (S, A)), "next_state" or
            "state" (ψ of shape (S,)); see the module doc.
        dtype: the parameters' floating dtype.
        device: where they live.
    """

    def __init__(
        self,
        num_states: int,
        num_actions: int,
        *,
        inputs: str = "state_action",
        dtype: torch.dtype = torch.float64,
        device=None,
    ):
        super().__init__()
        S = check_positive_int("num_states", num_states)
        A = check_positive_int("num_actions", num_actions)
        if inputs not in REWARD_INPUTS:
            raise ValueError(f"`inputs` must be one of {REWARD_INPUTS}, got {inputs!r}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"`dtype` must be a floating torch dtype, got {dtype!r}")
        self.num_states, self.num_actions, self.inputs = S, A, inputs
        shape = (S, A) if inputs == "state_action" else (S,)
        self.table = nn.Parameter(torch.zeros(shape, dtype=dtype, device=device))

    def forward(self, states, actions, next_states) -> torch.Tensor:
        """r_ψ(sₜ, aₜ, sₜ₊₁) for integer tensors of one shape; the same shape, floating."""
        if self.inputs == "state_action":
            return self.table[states, actions]
        return self.table[next_states if self.inputs == "next_state" else states]

    def extra_repr(self) -> str:
        return f"S={self.num_states}, A={self.num_actions}, inputs={self.inputs!r}"


class LinearReward(nn.Module):
    """r_ψ(s, a, s') = ψᵀ·f(·) for fixed features, ψ initialised to 0.

    Args:
        features: (S, F) state features f(s), (S, A, F) f(s, a) or (S, A, S, F) f(s, a, s'),
            finite; its dtype and device are the parameters'.
    """

    def __init__(self, features: torch.Tensor):
        super().__init__()
        if not isinstance(features, torch.Tensor) or not features.is_floating_point():
            raise TypeError(
                "`features` must be a floating torch tensor (S, F), (S, A, F) or (S, A, S, F)"
            )
        if features.ndim not in (2, 3, 4):
            raise ValueError(
                "`features` must have shape (S, F), (S, A, F) or (S, A, S, F), got "
                f"{tuple(features.shape)}"
            )
        if not torch.isfinite(features).all():
            raise ValueError("`features` contain NaN or inf; every feature must be finite")
        self.register_buffer("features", features.detach().clone())
        self.weights = nn.Parameter(torch.zeros(features.shape[-1], dtype=features.dtype,
                                                device=features.device))  # fmt: skip

    def forward(self, states, actions, next_states) -> torch.Tensor:
        """ψᵀ·f at (sₜ, aₜ, sₜ₊₁) for integer tensors of one shape; the same shape."""
        f = self.features
        index = (states,) if f.ndim == 2 else (states, actions)
        if f.ndim == 4:
            index = (states, actions, next_states)
        return f[index] @ self.weights


def reward_table(model: nn.Module, num_states: int, num_actions: int) -> torch.Tensor:
    """The model's reward on every transition, indexed as r[s, a, s'], shape (S, A, S).

    Differentiable in the model's parameters (autograd through it gives the exact
    forward–backward gradient of :func:`pgm_control.log_evidence`).
    """
    S = check_positive_int("num_states", num_states)
    A = check_positive_int("num_actions", num_actions)
    device = next(iter(model.parameters())).device
    s, a, s1 = torch.meshgrid(
        torch.arange(S, device=device),
        torch.arange(A, device=device),
        torch.arange(S, device=device),
        indexing="ij",
    )
    return model(s, a, s1)


class RewardWrapper(gym.Wrapper):
    """A gymnasium wrapper whose ``step`` pays ``scale·model(s, a, s')`` instead of the reward.

    The model is read at every step (through a table of all (s, a, s') that is recomputed
    whenever a parameter has been changed in place, e.g. by an optimiser step), so a learner
    trained on the wrapper sees the current r_ψ as the reward step changes it. The env's own
    reward stays in ``info["env_reward"]``.

    Args:
        env: a gymnasium env with Discrete observation and action spaces.
        model: a reward model (see the module doc).
        scale: a constant factor (e.g. 1/α).
    """

    def __init__(self, env: gym.Env, model: nn.Module, scale: float = 1.0):
        super().__init__(env)
        for space in (env.observation_space, env.action_space):
            if not isinstance(space, gym.spaces.Discrete):
                raise ValueError(
                    f"`env` must have Discrete spaces for a tabular reward, got {space}"
                )
        self.model = model
        self.scale = float(scale)
        self._obs = None
        self._table, self._key = None, None

    def _reward_table(self) -> np.ndarray:
        # every in-place change of a tensor bumps its `_version`: a cheap staleness check
        tensors = [*self.model.parameters(), *self.model.buffers()]
        key = tuple((id(p), p._version) for p in tensors)
        if key != self._key:
            S, A = int(self.observation_space.n), int(self.action_space.n)
            with torch.no_grad():
                table = reward_table(self.model, S, A)
            self._table = self.scale * table.detach().cpu().double().numpy()
            self._key = key
        return self._table

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        reward = float(self._reward_table()[int(self._obs), int(action), int(obs)])
        self._obs = obs
        info = dict(info, env_reward=env_reward)
        return obs, reward, terminated, truncated, info
