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

__all__ = ["pendulum", "mountain_car_continuous", "angle_normalize"]


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles to [-π, π) as gymnasium's Pendulum does."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def pendulum(
    horizon: int = 200, *, g: float = 10.0, dtype=torch.float64, initial=None
) -> ContinuousMDP:
    """Pendulum-v1: state (θ, θ̇), action torque in [-2, 2]; reward
    −(θ_norm² + 0.1·θ̇² + 0.001·u²); θ̇ clipped to ±8, dt = 0.05.

    ``initial`` defaults to gymnasium's reset distribution, θ ~ U(−π, π), θ̇ ~ U(−1, 1).
    """
    max_speed, max_torque, dt, m, l = 8.0, 2.0, 0.05, 1.0, 1.0

    def dynamics(s, a):
        th, thdot = s[..., 0], s[..., 1]
        u = a[..., 0].clamp(-max_torque, max_torque)
        newthdot = thdot + (3 * g / (2 * l) * torch.sin(th) + 3.0 / (m * l**2) * u) * dt
        newthdot = newthdot.clamp(-max_speed, max_speed)
        return torch.stack([th + newthdot * dt, newthdot], dim=-1)

    def reward(s, a):
        th, thdot = s[..., 0], s[..., 1]
        u = a[..., 0].clamp(-max_torque, max_torque)
        return -(angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2)

    if initial is None:
        high = torch.tensor([math.pi, 1.0], dtype=dtype)
        initial = Uniform(-high, high).to_event(1)

    return ContinuousMDP(
        dynamics, reward, initial, horizon, -max_torque, max_torque,
        name="Pendulum-v1", gym_id="Pendulum-v1",
        env_state=lambda s: np.asarray(s, dtype=np.float64),
        observe=lambda s: torch.stack([torch.cos(s[..., 0]), torch.sin(s[..., 0]), s[..., 1]], -1),
        state_from_env=lambda u: torch.as_tensor(np.asarray(u.state, dtype=np.float64)),
    )  # fmt: skip


def mountain_car_continuous(horizon: int = 999, *, dtype=torch.float64, initial=None):
    """MountainCarContinuous-v0: state (x, ẋ), force in [-1, 1]; reward −0.1·u² (u unclipped, as in gymnasium) plus 100 when
    the step ends at x ≥ 0.45 with ẋ ≥ 0 (where the env terminates; the model just keeps stepping, which
    only makes arriving earlier worth more to a planner).

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
