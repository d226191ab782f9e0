"""Differentiable torch twins of gymnasium's classic-control envs, as :class:`ContinuousMDP`.

Each reproduces the env's ``step`` (dynamics and reward) to float precision — tested on
random (state, action) pairs against gymnasium itself — but vectorised over particles and
differentiable almost everywhere, so the same MDP serves SVI (pathwise gradients),
importance sampling and MPPI.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pyro.distributions import Uniform

from .continuous import ContinuousMDP

__all__ = ["pendulum", "mountain_car_continuous", "angle_normalize", "evaluate_policy"]


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles to [-π, π) as gymnasium's Pendulum does."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


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

    ``initial`` defaults to gymnasium's reset distribution, θ ~ U(−π, π), θ̇ ~ U(−1, 1).

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
    max_speed, max_torque, dt, m, l = 8.0, 2.0, 0.05, 1.0, 1.0

    k_sin, k_u = 3 * g / (2 * l) * dt, 3.0 / (m * l**2) * dt

    def dynamics(s, a):
        # θ̇' = clip(θ̇ + (3g/2l·sin θ + 3/(ml²)·u)·dt), θ' = θ + θ̇'·dt, written with fused
        # torch.add(…, alpha=) calls: MPPI calls this H times per plan on (K,) tensors, where
        # the per-op overhead, not the arithmetic, is the cost
        th, thdot = s.unbind(-1)
        u = a.squeeze(-1).clamp(-max_torque, max_torque)
        newthdot = torch.add(thdot, torch.sin(th), alpha=k_sin).add(u, alpha=k_u)
        newthdot = newthdot.clamp(-max_speed, max_speed)
        return torch.stack([torch.add(th, newthdot, alpha=dt), newthdot], dim=-1)

    def state_reward(s):
        th, thdot = s[..., 0], s[..., 1]
        return -(angle_normalize(th) ** 2 + 0.1 * thdot**2)

    def reward(s, a):
        u = a[..., 0].clamp(-max_torque, max_torque)
        return state_reward(s) - 0.001 * u**2

    if initial is None:
        high = torch.tensor([math.pi, 1.0], dtype=dtype)
        initial = Uniform(-high, high).to_event(1)

    return ContinuousMDP(
        dynamics, reward, initial, horizon, -max_torque, max_torque,
        name="Pendulum-v1", gym_id="Pendulum-v1",
        env_state=lambda s: np.asarray(s, dtype=np.float64),
        observe=lambda s: torch.stack([torch.cos(s[..., 0]), torch.sin(s[..., 0]), s[..., 1]], -1),
        state_from_env=lambda u: torch.as_tensor(np.asarray(u.state, dtype=np.float64)),
        terminal_reward=state_reward if terminal_reward else None,
    )  # fmt: skip


def mountain_car_continuous(horizon: int = 999, *, dtype=torch.float64, initial=None):
    """MountainCarContinuous-v0: state (x, ẋ), force in [-1, 1]; reward −0.1·u² (u unclipped,
    as in gymnasium) plus 100 when the step ends at x ≥ 0.45 with ẋ ≥ 0 (where the env
    terminates; the model just keeps stepping, which only makes arriving earlier worth more
    to a planner).

    ``initial`` defaults to the env's reset distribution, x ~ U(−0.6, −0.4), ẋ = 0.
    """
    power, min_x, max_x, max_speed, goal_x = 0.0015, -1.2, 0.6, 0.07, 0.45

    def dynamics(s, a):
        x, v = s[..., 0], s[..., 1]
        force = a[..., 0].clamp(-1.0, 1.0)
        v_new = (v + force * power - 0.0025 * torch.cos(3 * x)).clamp(-max_speed, max_speed)
        x_new = (x + v_new).clamp(min_x, max_x)
        v_new = torch.where((x_new == min_x) & (v_new < 0), torch.zeros_like(v_new), v_new)
        return torch.stack([x_new, v_new], dim=-1)

    def reward(s, a):
        force = a[..., 0]  # gymnasium charges the *unclipped* action
        nxt = dynamics(s, a)
        reached = (nxt[..., 0] >= goal_x) & (nxt[..., 1] >= 0.0)  # gymnasium's `terminated`
        return 100.0 * reached.to(s.dtype) - 0.1 * force**2

    if initial is None:
        # ẋ₀ = 0: a velocity interval of width 1e-12 keeps one Uniform over both coordinates
        initial = Uniform(
            torch.tensor([-0.6, 0.0], dtype=dtype), torch.tensor([-0.4, 1e-12], dtype=dtype)
        ).to_event(1)

    return ContinuousMDP(
        dynamics, reward, initial, horizon, -1.0, 1.0,
        name="MountainCarContinuous-v0", gym_id="MountainCarContinuous-v0",
        env_state=lambda s: np.asarray(s, dtype=np.float32),
        observe=lambda s: s,
        state_from_env=lambda u: torch.as_tensor(np.asarray(u.state, dtype=np.float64)),
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

    Each step reads the model state off ``env.unwrapped`` (``mdp.state_from_env``) and calls
    ``policy(state, t)`` with a (state_dim,) float64 tensor; a fitted guide's ``act`` fits
    (its deterministic action c + h·tanh(μ)). Episodes start from ``env.reset`` — seeded
    once with ``seed``, so the starts are successive draws of the reset distribution — or,
    if ``initial_state`` is given, from that state written into ``env.unwrapped.state``
    after the reset (e.g. the pendulum hanging at rest, (π, 0)).

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
    import gymnasium

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
    policy = getattr(policy, "act", policy)
    if not callable(policy):
        raise TypeError("`policy` must be callable(state, t) -> action")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"`episodes` must be an int >= 1, got {episodes!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"`steps` must be an int >= 1 or None, got {steps!r}")
    if initial_state is not None:
        initial_state = torch.as_tensor(initial_state, dtype=torch.float64)
        if initial_state.shape != (mdp.state_dim,):
            raise ValueError(
                f"`initial_state` must have shape ({mdp.state_dim},), "
                f"got {tuple(initial_state.shape)}"
            )
    kwargs = {} if steps is None else {"max_episode_steps": steps}
    gym_env = gymnasium.make(mdp.gym_id, **kwargs)
    returns = np.zeros(episodes)
    try:
        for k in range(episodes):
            gym_env.reset(seed=seed if k == 0 else None)
            if initial_state is not None:
                gym_env.unwrapped.state = mdp.env_state(initial_state)
            t, done = 0, False
            while not done:
                state = mdp.state_from_env(gym_env.unwrapped)
                with torch.no_grad():
                    action = policy(state, t)
                action = np.asarray(torch.as_tensor(action).detach(), dtype=np.float32)
                _, r, terminated, truncated, _ = gym_env.step(action.reshape(mdp.action_dim))
                returns[k] += float(r)
                done = terminated or truncated
                t += 1
    finally:
        gym_env.close()
    return returns
