"""Trajectories in a real env for the sample-based inverse-RL routines (guided cost learning,
adversarial IRL), in the layout of :class:`~pgm_control.demonstrations.Demonstrations`.

Both routines see an env only through ``reset``/``step``. They compare the expert's
demonstrations with trajectories of their current policy π, rolled out by the library's one
episode loop (:func:`pgm_control.rollout`) for at most T steps. The finite-horizon model they
fit is the one :meth:`TabularMDP.from_gymnasium` builds: a state the env *terminates* in is
absorbing and pays nothing afterwards, so a trajectory's steps after its end are masked out
(``mask[n, t] = False``) and contribute neither reward nor log π — their factors Σₐ p(a|s) and
Σₐ π(a|s) are 1. Demonstrations given without a mask (e.g. sampled from a tabular MDP, whose
absorbing tail is spelled out) are masked after their first entry into a state the learner has
seen the env terminate in (:func:`mask_after_terminal`).
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .demonstrations import Demonstrations, as_demonstrations
from .irl_result import IRLResult
from .reward_models import reward_table
from .rollout import rollout
from .validation import check_int, check_positive_int

__all__ = [
    "policy_samples",
    "check_env_demonstrations",
    "mask_after_terminal",
    "trajectory_log_prob",
    "discrete_sizes",
    "env_copy",
    "sample_based_result",
]


def discrete_sizes(env: gym.Env, argument: str = "env") -> tuple[int, int]:
    """(S, A) of an env with Discrete observation and action spaces, else a clear error."""
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Discrete):
        raise ValueError(
            f"`{argument}` must have a Discrete observation space for tabular inverse RL, got "
            f"{obs}; discretise it (or use a continuous reward model with a continuous learner)"
        )
    if not isinstance(act, gym.spaces.Discrete):
        raise ValueError(
            f"`{argument}` must have a Discrete action space for tabular inverse RL, got {act}"
        )
    return int(obs.n), int(act.n)


def check_env_demonstrations(
    demonstrations, num_states: int, num_actions: int, horizon: int | None = None
) -> Demonstrations:
    """Coerce and validate demonstrations for an env with S states and A actions.

    Raises:
        ValueError: a state ≥ S or an action ≥ A (naming the offending index), or a horizon
            other than ``horizon``.
        TypeError: not demonstrations (see :func:`~pgm_control.demonstrations.as_demonstrations`).
    """
    demos = as_demonstrations(demonstrations)
    S, A = num_states, num_actions
    if horizon is not None and demos.horizon != check_positive_int("horizon", horizon):
        raise ValueError(
            f"`demonstrations` have horizon {demos.horizon} (actions of shape "
            f"{tuple(demos.actions.shape)}) but `horizon` = {horizon}: give (N, {horizon}+1) "
            f"states and (N, {horizon}) actions, or pass horizon={demos.horizon}"
        )
    if int(demos.states.max()) >= S:
        raise ValueError(
            f"`demonstrations` contain state {int(demos.states.max())}, out of range for an env "
            f"with {S} observations (valid: 0..{S - 1})"
        )
    if int(demos.actions.max()) >= A:
        raise ValueError(
            f"`demonstrations` contain action {int(demos.actions.max())}, out of range for an env "
            f"with {A} actions (valid: 0..{A - 1})"
        )
    return demos


def mask_after_terminal(demos: Demonstrations, terminal: torch.Tensor) -> Demonstrations:
    """Mask every step after a trajectory's first entry into a ``terminal`` state.

    Args:
        demos: demonstrations (their own mask is kept: the result is its logical and).
        terminal: bool (S,), the states the env terminates in.
    """
    term = terminal.to(demos.states.device)[demos.states[:, 1:]]  # (N, T): sₜ₊₁ terminal
    # step t is live while no earlier step entered a terminal state
    entered_before = torch.cumsum(term.long(), dim=1) - term.long()
    live = entered_before == 0
    if demos.mask is not None:
        live &= demos.mask
    return Demonstrations(demos.states, demos.actions, live)


def policy_samples(
    env: gym.Env, policy: torch.Tensor, num_samples: int, horizon: int, *, seed: int
) -> tuple[Demonstrations, torch.Tensor]:
    """Roll a (T, S, A) or stationary (S, A) policy out ``num_samples`` times, ≤ ``horizon`` steps.

    Episode i resets the env with ``seed + i`` (:func:`pgm_control.rollout`, actions from a
    stream independent of the env's).

    Returns:
        (trajectories, terminal): masked :class:`Demonstrations` (N, T) of the samples, and a
        bool (S,) mask of the states the env terminated in.
    """
    n = check_positive_int("num_samples", num_samples)
    T = check_positive_int("horizon", horizon)
    pi = policy.detach().cpu().double().numpy()
    result = rollout(env, pi, episodes=n, seed=check_int("seed", seed), max_steps=T, record=True)
    samples = Demonstrations.from_rollout(result, T)
    terminal = np.zeros(pi.shape[-2], dtype=bool)
    for episode in result.episodes:
        if episode.terminated:
            terminal[int(np.asarray(episode.states).reshape(-1)[-1])] = True
    return samples, torch.as_tensor(terminal)


def trajectory_log_prob(log_policy: torch.Tensor, demos: Demonstrations) -> torch.Tensor:
    """Σₜ mask·log π(aₜ|sₜ) of each trajectory under a stationary log-policy (S, A); (N,)."""
    s, a = demos.states[:, :-1].to(log_policy.device), demos.actions.to(log_policy.device)
    w = demos.step_weights(log_policy.dtype).to(log_policy.device)
    # a masked step may hold a padding action of probability 0: keep it out of the sum
    return torch.where(w > 0, log_policy[s, a], torch.zeros_like(w)).sum(-1)


def env_copy(env: gym.Env) -> gym.Env:
    """A second, independent instance of ``env`` (remade from its spec, else a deep copy)."""
    spec = env.spec
    if spec is not None:
        return gym.make(spec.id, **dict(spec.kwargs))
    return copy.deepcopy(env)


def sample_based_result(
    reward_model: nn.Module,
    policy: torch.Tensor,
    terminal: torch.Tensor,
    horizon: int,
    *,
    algorithm: str,
    temperature: float,
    backup: str,
    history: dict,
    seconds: float,
    interrupted: bool,
    extra: dict,
) -> IRLResult:
    """The :class:`IRLResult` of a sample-based routine.

    ``reward`` is the model's table (S, A, S), detached, with the rows of the states seen to
    terminate set to 0 (the model's semantics: nothing is paid after the end, which is what
    :meth:`TabularMDP.from_gymnasium`'s absorbing terminal states do), so that
    ``result.mdp_with_reward(mdp)`` is the learned problem. ``policy`` is the learner's
    stationary (S, A) policy repeated over the T steps.
    """
    S, A = policy.shape[-2:]
    with torch.no_grad():
        reward = reward_table(reward_model, S, A).detach().clone()
    reward[terminal.to(reward.device)] = 0.0
    extra = dict(extra, interrupted=interrupted, terminal_states=terminal.clone())
    return IRLResult(
        reward=reward,
        params={k: v.detach().clone() for k, v in reward_model.state_dict().items()},
        policy=policy.detach().expand(horizon, S, A).clone(),  # (S, A) or (T, S, A)
        history={k: np.asarray(v, dtype=float) for k, v in history.items()},
        seconds=seconds,
        algorithm=algorithm,
        temperature=temperature,
        backup=backup,
        reward_model=reward_model,
        extra=extra,
    )
