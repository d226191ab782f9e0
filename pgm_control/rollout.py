"""Acting in the real gymnasium environment with a tabular policy.

The exact routines and SVI work on the :class:`~pgm_control.TabularMDP` *model* of an env;
:func:`rollout` closes the loop by running the fitted policy in the env itself (its own
``step``, RNG and time limit), so a success rate measured here is an independent check of
what the model predicts.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

__all__ = ["rollout", "RolloutResult", "AFTER_HORIZON"]

AFTER_HORIZON = ("stop", "last")


@dataclasses.dataclass
class RolloutResult:
    """Episodes of a policy in a gymnasium env.

    Attributes:
        returns: Σ rewards per episode, shape (episodes,).
        lengths: steps per episode.
        successes: per episode, whether it *terminated* (not truncated) with a positive final
            reward — reaching the goal in FrozenLake.
        truncated: per episode, whether it ended by the horizon / time limit instead.
    """

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray
    truncated: np.ndarray

    @property
    def success_rate(self) -> float:
        return float(self.successes.mean())

    @property
    def success_stderr(self) -> float:
        """Binomial standard error of :attr:`success_rate`."""
        p, n = self.success_rate, len(self.successes)
        return float(np.sqrt(p * (1 - p) / max(n, 1)))

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    def __repr__(self) -> str:
        return (
            f"RolloutResult(episodes={len(self.returns)}, success_rate={self.success_rate:.4f}"
            f" ± {self.success_stderr:.4f}, mean_return={self.mean_return:.4g}, "
            f"mean_length={self.lengths.mean():.3g})"
        )


def _policy_array(policy) -> tuple[np.ndarray, bool]:
    """(policy as a (T, S, A) float array, whether it was stationary (S, A))."""
    if hasattr(policy, "policy") and not isinstance(policy, (np.ndarray, torch.Tensor)):
        policy = policy.policy  # a FitResult
        if callable(policy):  # a guide
            policy = policy()
    if isinstance(policy, torch.Tensor):
        policy = policy.detach().cpu().numpy()
    try:
        pi = np.asarray(policy, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "`policy` must be (T, S, A) or (S, A) action probabilities (tensor or array), a "
            f"FitResult or a tabular guide; got {type(policy).__name__}"
        ) from exc
    stationary = pi.ndim == 2
    if stationary:
        pi = pi[None]
    if pi.ndim != 3:
        raise ValueError(f"`policy` must have shape (T, S, A) or (S, A), got {pi.shape}")
    if not np.isfinite(pi).all() or (pi < 0).any():
        raise ValueError("`policy` must hold finite, non-negative probabilities")
    err = np.abs(pi.sum(-1) - 1).max()
    if err > 1e-6:
        raise ValueError(f"`policy` rows must sum to 1 over actions; worst row is off by {err:.3g}")
    return pi, stationary


_ACTION_STREAM = 1  # second word of the action generator's seed (see `rollout`)


def rollout(
    env,
    policy,
    episodes: int = 1000,
    seed: int = 0,
    *,
    after_horizon: str = "stop",
    max_steps: int | None = None,
) -> RolloutResult:
    """Run a tabular policy in a gymnasium env and record returns and successes.

    At step t of an episode the action is drawn from ``policy[t, obs]``; a stationary
    (S, A) policy is used at every step.

    Args:
        env: a gymnasium env with Discrete observations and actions, or an env id
            (``gymnasium.make(env)``; e.g. ``"FrozenLake-v1"``).
        policy: (T, S, A) time-varying or (S, A) stationary action probabilities, a
            :class:`~pgm_control.fit_result.FitResult` or a tabular guide. S may exceed the
            env's observation count when the MDP appended copy states (see
            ``TabularMDP.from_gymnasium``): copies come after the env's own states, so row
            ``obs`` is the env's observation ``obs``.
        episodes: number of episodes (≥ 1).
        seed: episode i resets the env with ``seed + i`` and draws its actions from a
            generator seeded ``(seed + i, 1)`` — a stream independent of the env's.
        after_horizon: what a time-varying policy does after its T steps: "stop" (truncate
            the episode at T — the finite-horizon problem the policy solves, default) or
            "last" (keep acting with the last step's policy ``policy[T-1]`` until the env
            ends the episode). Stationary policies always run until the env ends it.
        max_steps: an optional cap on episode length in addition to the env's own limit.

    Returns:
        :class:`RolloutResult` with per-episode returns, lengths and successes.
    """
    import gymnasium as gym

    if isinstance(env, str):
        env = gym.make(env)
    if not hasattr(env, "reset") or not hasattr(env, "step"):
        raise TypeError(f"`env` must be a gymnasium env or an env id, got {type(env).__name__}")
    if not isinstance(env.observation_space, gym.spaces.Discrete) or not isinstance(
        env.action_space, gym.spaces.Discrete
    ):
        raise ValueError(
            "`env` must have Discrete observation and action spaces for a tabular policy; got "
            f"{env.observation_space} and {env.action_space}"
        )
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"`episodes` must be a positive int, got {episodes!r}")
    if after_horizon not in AFTER_HORIZON:
        raise ValueError(f"`after_horizon` must be one of {AFTER_HORIZON}, got {after_horizon!r}")
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ValueError(f"`max_steps` must be a positive int or None, got {max_steps!r}")
    pi, stationary = _policy_array(policy)
    n_obs, n_act = int(env.observation_space.n), int(env.action_space.n)
    if pi.shape[1] < n_obs or pi.shape[2] != n_act:
        raise ValueError(
            f"`policy` has {pi.shape[1]} states and {pi.shape[2]} actions; the env has "
            f"{n_obs} observations and {n_act} actions"
        )
    horizon = pi.shape[0]
    limit = horizon if (after_horizon == "stop" and not stationary) else None
    if max_steps is not None:
        limit = max_steps if limit is None else min(limit, max_steps)
    # inverse-CDF sampling, one uniform per step; dividing by the last entry makes it exactly
    # 1, so a zero-probability action can never be drawn
    cdf = np.cumsum(pi[:, :n_obs], axis=-1)
    cdf /= cdf[..., -1:]
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    successes = np.zeros(episodes, dtype=bool)
    truncated_all = np.zeros(episodes, dtype=bool)
    for ep in range(episodes):
        # episode ep has its own seeds (env and actions), so two policies rolled out with the
        # same seed meet the same randomness wherever they agree (common random numbers)
        obs, _ = env.reset(seed=int(seed) + ep)
        # NOT default_rng(seed + ep): gymnasium seeds the env's own generator exactly so, and
        # the actions would then replay the env's random numbers (correlated, biased rollouts)
        rng = np.random.default_rng((int(seed) + ep, _ACTION_STREAM))
        total, t, reward = 0.0, 0, 0.0
        terminated = truncated = False
        while not (terminated or truncated):
            if limit is not None and t >= limit:
                truncated = True
                break
            row = cdf[min(t, horizon - 1), int(obs)]
            action = int(np.searchsorted(row, rng.random(), side="right"))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            t += 1
        returns[ep], lengths[ep] = total, t
        successes[ep] = terminated and reward > 0
        truncated_all[ep] = not terminated
    return RolloutResult(returns, lengths, successes, truncated_all)
