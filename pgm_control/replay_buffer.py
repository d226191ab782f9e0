"""A uniform replay buffer of transitions, as tensors on the algorithm's device.

Soft DQN and soft actor-critic fit their critics to transitions (s, a, r, s', terminated)
drawn uniformly from the recent past. Stable-Baselines3 has a buffer, but the library does not
depend on it, and torchrl's pins each torch release; so this is one small ring buffer of
preallocated tensors. Sampling draws from the caller's ``torch.Generator``, so a seeded run
reproduces and the global RNG is left alone.
"""

from __future__ import annotations

import typing

import torch

from .validation import check_positive_int

__all__ = ["ReplayBuffer", "Batch"]


class Batch(typing.NamedTuple):
    """A minibatch: observations ``(B, *obs)``, actions ``(B, *act)``, rewards ``(B,)``, next
    observations ``(B, *obs)``, terminated ``(B,)`` as 0./1. (1: absorbing, bootstrap with 0)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """A ring buffer of the last ``capacity`` transitions.

    Args:
        capacity: transitions kept (≥ 1); the oldest is overwritten first.
        observation_shape, action_shape: per-transition shapes (() for a Discrete index).
        observation_dtype, action_dtype: tensor dtypes (e.g. torch.float32, torch.int64).
        float_dtype: dtype of the rewards and termination flags.
        device: where the tensors live.
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: tuple,
        action_shape: tuple,
        *,
        observation_dtype: torch.dtype = torch.float32,
        action_dtype: torch.dtype = torch.float32,
        float_dtype: torch.dtype = torch.float32,
        device="cpu",
    ):
        self.capacity = check_positive_int("capacity", capacity)
        self.device = torch.device(device)
        n = self.capacity
        kw = {"device": self.device}
        self.observations = torch.zeros((n, *observation_shape), dtype=observation_dtype, **kw)
        self.next_observations = torch.zeros_like(self.observations)
        self.actions = torch.zeros((n, *action_shape), dtype=action_dtype, **kw)
        self.rewards = torch.zeros(n, dtype=float_dtype, **kw)
        self.terminated = torch.zeros(n, dtype=float_dtype, **kw)
        self.position = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, observation, action, reward, next_observation, terminated) -> None:
        """Store one transition (numpy arrays, numbers or tensors)."""
        i = self.position
        self.observations[i] = torch.as_tensor(observation, dtype=self.observations.dtype)
        self.actions[i] = torch.as_tensor(action, dtype=self.actions.dtype)
        self.rewards[i] = float(reward)
        self.next_observations[i] = torch.as_tensor(next_observation, dtype=self.observations.dtype)
        self.terminated[i] = float(terminated)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement."""
        batch_size = check_positive_int("batch_size", batch_size)
        if self.size == 0:
            raise ValueError("the replay buffer is empty: add transitions before sampling")
        idx = torch.randint(
            self.size, (batch_size,), generator=generator, device=generator.device
        ).to(self.device)
        return Batch(
            self.observations[idx],
            self.actions[idx],
            self.rewards[idx],
            self.next_observations[idx],
            self.terminated[idx],
        )
