"""Differentiable torch twins of gymnasium's classic-control envs, as :class:`ContinuousMDP`.

Each reproduces the env's ``step`` (dynamics and reward) to float precision — tested on
random (state, action) pairs against gymnasium itself — but vectorised over particles and
differentiable almost everywhere, so the same MDP serves SVI (pathwise gradients),
importance sampling and MPPI.
"""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import torch
from pyro.distributions import Uniform

from .continuous import ContinuousMDP
from .rollout import rollout
from .validation import check_callable, check_optional_positive_int, check_positive_int

__all__ = ["pendulum", "mountain_car_continuous", "angle_normalize", "evaluate_policy"]


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles to [-π, π) as gymnasium's Pendulum does."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


# Pendulum-v1's constants (gymnasium/envs/classic_control/pendulum.py)
_PENDULUM_MAX_SPEED, _PENDULUM_MAX_TORQUE, _PENDULUM_DT = 8.0, 2.0, 0.05


class _PendulumDynamics:
    """θ̇' = clip(θ̇ + (3g/2l·sin θ + 3/(ml²)·u)·dt, ±8), θ' = θ + θ̇'·dt (u clipped to ±2).

    A small class rather than a closure so that the MDP pickles; ``g`` is its one parameter.
    """

    def __init__(self, g: float = 10.0):
        m, l, dt = 1.0, 1.0, _PENDULUM_DT
        self.g = g
        self.k_sin, self.k_u = 3 * g / (2 * l) * dt, 3.0 / (m * l**2) * dt

    def __call__(self, s, a):
        # written with fused torch.add(…, alpha=) calls: MPPI calls this H times per plan on
        # (K,) tensors, where the per-op overhead, not the arithmetic, is the cost
        th, thdot = s.unbind(-1)
        u = a.squeeze(-1).clamp(-_PENDULUM_MAX_TORQUE, _PENDULUM_MAX_TORQUE)
        newthdot = torch.add(thdot, torch.sin(th), alpha=self.k_sin).add(u, alpha=self.k_u)
        newthdot = newthdot.clamp(-_PENDULUM_MAX_SPEED, _PENDULUM_MAX_SPEED)
        return torch.stack([torch.add(th, newthdot, alpha=_PENDULUM_DT), newthdot], dim=-1)

    def __repr__(self) -> str:
        return f"PendulumDynamics(g={self.g!r})"


def _pendulum_state_reward(s):
    """−(θ_norm² + 0.1·θ̇²): the pendulum's reward without its action term."""
    th, thdot = s[..., 0], s[..., 1]
    return -(angle_normalize(th) ** 2 + 0.1 * thdot**2)


def _pendulum_reward(s, a):
    """−(θ_norm² + 0.1·θ̇² + 0.001·u²), u clipped to ±2."""
    u = a[..., 0].clamp(-_PENDULUM_MAX_TORQUE, _PENDULUM_MAX_TORQUE)
    return _pendulum_state_reward(s) - 0.001 * u**2


def _pendulum_observe(s):
    """(cos θ, sin θ, θ̇), the env's observation."""
    return torch.stack([torch.cos(s[..., 0]), torch.sin(s[..., 0]), s[..., 1]], -1)


def _float64_env_state(s):
    return np.asarray(s, dtype=np.float64)


def _float32_env_state(s):
    return np.asarray(s, dtype=np.float32)


def _state_from_env(unwrapped):
    """The model state (float64) off a classic-control env's ``unwrapped.state``."""
    return torch.as_tensor(np.asarray(unwrapped.state, dtype=np.float64))


def _identity(s):
    return s


def pendulum(
    horizon: int = 200,
    *,
    g: float = 10.0,
    dtype=torch.float64,
    initial=None,
    terminal_reward: bool = False,
) -> ContinuousMDP:
    """Pendulum-v1: state (θ, θ̇), action torque in [-2, 2]; reward
    −(θ_norm² + 0.1·θ̇² + 0.001·u²); θ̇ clipped to ±8, dt = 0.05.

    ``initial`` defaults to gymnasium's reset distribution, θ ~ U(−π, π), θ̇ ~ U(−1, 1), in
    ``dtype`` (which the action bounds, hence :attr:`ContinuousMDP.dtype`, follow).

    ``terminal_reward=True`` adds r_T(s) = −(θ_norm² + 0.1·θ̇²), the state part of the reward
    the env would pay one step past the horizon: the simplest estimate of the value beyond a
    receding horizon (MPPI), so that the plan scores the H states its H actions reach rather
    than s₀…s_{H−1}, of which s₀ is fixed. Leave it off for the episode's own objective.
    """
    if not isinstance(terminal_reward, bool):
        raise TypeError(
            "`terminal_reward` must be True or False (the pendulum's own state reward); for "
            "another r_T use `pendulum(...).replace(terminal_reward=fn)`, got "
            f"{type(terminal_reward).__name__}"
        )
    if initial is None:
        high = torch.tensor([math.pi, 1.0], dtype=dtype)
        initial = Uniform(-high, high).to_event(1)

    return ContinuousMDP(
        _PendulumDynamics(g), _pendulum_reward, initial, horizon,
        -_PENDULUM_MAX_TORQUE, _PENDULUM_MAX_TORQUE,
        name="Pendulum-v1", gym_id="Pendulum-v1",
        env_state=_float64_env_state, observe=_pendulum_observe, state_from_env=_state_from_env,
        terminal_reward=_pendulum_state_reward if terminal_reward else None,
    )  # fmt: skip


# MountainCarContinuous-v0's constants (gymnasium/envs/classic_control/continuous_mountain_car.py)
_CAR_POWER, _CAR_MIN_X, _CAR_MAX_X, _CAR_MAX_SPEED, _CAR_GOAL_X = 0.0015, -1.2, 0.6, 0.07, 0.45


def _mountain_car_dynamics(s, a):
    """ẋ' = clip(ẋ + 0.0015·u − 0.0025·cos 3x, ±0.07), x' = clip(x + ẋ', [−1.2, 0.6]);
    ẋ' = 0 at the left wall."""
    x, v = s[..., 0], s[..., 1]
    force = a[..., 0].clamp(-1.0, 1.0)
    v_new = (v + force * _CAR_POWER - 0.0025 * torch.cos(3 * x)).clamp(
        -_CAR_MAX_SPEED, _CAR_MAX_SPEED
    )
    x_new = (x + v_new).clamp(_CAR_MIN_X, _CAR_MAX_X)
    v_new = torch.where((x_new == _CAR_MIN_X) & (v_new < 0), torch.zeros_like(v_new), v_new)
    return torch.stack([x_new, v_new], dim=-1)


def _mountain_car_reward(s, a):
    """100·𝟙[the step ends at x ≥ 0.45 with ẋ ≥ 0] − 0.1·u² (u unclipped)."""
    force = a[..., 0]  # gymnasium charges the *unclipped* action
    nxt = _mountain_car_dynamics(s, a)
    reached = (nxt[..., 0] >= _CAR_GOAL_X) & (nxt[..., 1] >= 0.0)  # gymnasium's `terminated`
    return 100.0 * reached.to(s.dtype) - 0.1 * force**2


def mountain_car_continuous(horizon: int = 999, *, dtype=torch.float64, initial=None):
    """MountainCarContinuous-v0: state (x, ẋ), force in [-1, 1]; reward −0.1·u² (u unclipped,
    as in gymnasium) plus 100 when the step ends at x ≥ 0.45 with ẋ ≥ 0 (where the env
    terminates; the model just keeps stepping, which only makes arriving earlier worth more
    to a planner).

    ``initial`` defaults to the env's reset distribution, x ~ U(−0.6, −0.4), ẋ = 0.
    """
    if initial is None:
        # ẋ₀ = 0: a velocity interval of width 1e-12 keeps one Uniform over both coordinates
        initial = Uniform(
            torch.tensor([-0.6, 0.0], dtype=dtype), torch.tensor([-0.4, 1e-12], dtype=dtype)
        ).to_event(1)

    return ContinuousMDP(
        _mountain_car_dynamics, _mountain_car_reward, initial, horizon, -1.0, 1.0,
        name="MountainCarContinuous-v0", gym_id="MountainCarContinuous-v0",
        env_state=_float32_env_state, observe=_identity, state_from_env=_state_from_env,
    )  # fmt: skip


_TWINS = {"Pendulum-v1": pendulum, "MountainCarContinuous-v0": mountain_car_continuous}


def evaluate_policy(
    env,
    policy,
    *,
    episodes: int = 10,
    seed: int = 0,
    initial_state=None,
    steps: int | None = None,
) -> np.ndarray:
    """Returns of a continuous policy in the *real* gymnasium env, one per episode.

    A view of :func:`pgm_control.rollout.rollout` with the twin reading the model state:
    each step reads the state off ``env.unwrapped`` (``mdp.state_from_env``) and calls
    ``policy(state, t)`` with a (state_dim,) float64 tensor; a fitted guide's ``act`` fits
    (its deterministic action c + h·tanh(μ)). Episodes start from ``env.reset`` — seeded
    once with ``seed``, so the starts are successive draws of the reset distribution
    (``rollout(..., reset_seeds="first")``) — or, if ``initial_state`` is given, from that
    state written into ``env.unwrapped.state`` after the reset (e.g. the pendulum hanging at
    rest, (π, 0)).

    Args:
        env: a gymnasium id with a twin here ("Pendulum-v1", "MountainCarContinuous-v0") or a
            :class:`ContinuousMDP` with ``gym_id``, ``env_state`` and ``state_from_env``.
        policy: ``policy(state, t) -> action`` (action_dim,), tensor or array; an object with
            an ``act`` method (a fitted continuous guide) is used through ``policy.act``.
        episodes: number of episodes.
        seed: seed of the first reset.
        initial_state: a fixed start state (state_dim,), or None for reset draws.
        steps: episode length; defaults to the env's own time limit (200 for the pendulum).

    Returns:
        (episodes,) numpy array of undiscounted returns Σₜ rₜ as the env reports them.
    """
    if isinstance(env, str):
        if env not in _TWINS:
            raise ValueError(f"no torch twin for env id {env!r}; known: {sorted(_TWINS)}")
        mdp = _TWINS[env]()
    elif isinstance(env, ContinuousMDP):
        mdp = env
        if mdp.gym_id is None or mdp.env_state is None or mdp.state_from_env is None:
            raise ValueError(
                "`env` must carry gym_id, env_state and state_from_env to run in gymnasium"
            )
    else:
        raise TypeError(f"`env` must be a gymnasium id or a ContinuousMDP, got {env!r}")
    policy = check_callable("policy", getattr(policy, "act", policy), "policy(state, t) -> action",
                            optional=False)  # fmt: skip
    episodes = check_positive_int("episodes", episodes)
    steps = check_optional_positive_int("steps", steps)
    gym_env = gymnasium.make(mdp.gym_id, **({} if steps is None else {"max_episode_steps": steps}))
    try:
        result = rollout(
            gym_env, policy, episodes, seed, twin=mdp, initial_state=initial_state,
            dtype=torch.float64, reset_seeds="first",
        )  # fmt: skip
    finally:
        gym_env.close()
    return result.returns
