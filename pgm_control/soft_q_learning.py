r"""Soft Q-learning: soft value iteration on samples (Levine 2018, §4.2; Haarnoja et al. 2017).

The discounted soft Bellman equation of the ELBO's optimum (what
:func:`pgm_control.discounted_soft_value_iteration` solves from the tables)::

    Q(s,a) = E_{s'}[r(s,a,s') + γ·V(s')],    V(s) = α·log Σₐ p(a|s)·exp(Q(s,a)/α)

is a fixed point; soft Q-learning finds it from ``env.step`` alone by the stochastic
approximation

    Q(s,a) ← Q(s,a) + ηₙ(s,a)·(y − Q(s,a)),    y = r + γ·V(s')   (y = r when s' is terminal)

whose *expected* update E_{s'}[y] − Q(s,a) is zero exactly at that fixed point (tested on
random MDPs). Terminal vs truncated: gymnasium's ``terminated`` means s' is absorbing with zero
reward, so V(s') = 0 and nothing is bootstrapped; ``truncated`` (a time limit) is not part of
the MDP, so y bootstraps from V(s') as usual.

How a gymnasium table maps to the library MDP (:meth:`pgm_control.TabularMDP.from_gymnasium`):
the MDP's state s is the env's observation (copy states, if any, come after the env's states
and never arise here); states entered with ``done=True`` are made absorbing with zero reward,
so their soft value is α·log Σₐ p(a|s)·exp(γ·V(s)/α) = 0 — the same V(s') = 0 the learner
uses on ``terminated``. The learner's Q rows of terminal states are never updated and stay at
their initial 0, which is also the table's answer there.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from .algorithm import Algorithm
from .mdp import TabularMDP, _check_mdp
from .validation import (
    check_discount,
    check_positive_float,
    check_probability,
    check_temperature,
)

__all__ = ["SoftQLearning", "soft_value", "soft_q_target", "reachable_states"]


def soft_value(q: np.ndarray, log_prior: np.ndarray, temperature: float) -> np.ndarray:
    """V(s) = α·log Σₐ p(a|s)·exp(Q(s,a)/α) over the last axis (Levine 2018, eq. 39).

    Args:
        q: Q rows, shape (..., A).
        log_prior: log p(a|s) rows broadcasting against ``q`` (−inf where forbidden).
        temperature: α > 0.

    Returns:
        V, shape (...,), in ``q``'s dtype.
    """
    z = log_prior + q / temperature
    m = z.max(axis=-1, keepdims=True)
    return temperature * (m[..., 0] + np.log(np.exp(z - m).sum(axis=-1)))


def soft_q_target(q, log_prior, reward, next_obs, terminated, *, temperature, discount):
    """The soft Q-learning target y = r + γ·(1 − terminated)·V(s'), for one or a batch.

    Args:
        q: the table Q, shape (S, A).
        log_prior: log p(a|s), shape (S, A).
        reward, next_obs, terminated: scalars or arrays of one shape (the transitions).
        temperature: α > 0.
        discount: γ in (0, 1].

    Returns:
        y, of ``reward``'s shape, in ``q``'s dtype.
    """
    next_obs = np.asarray(next_obs)
    v_next = soft_value(q[next_obs], log_prior[next_obs], temperature)
    keep = 1.0 - np.asarray(terminated, dtype=q.dtype)
    return np.asarray(reward, dtype=q.dtype) + discount * keep * v_next


def reachable_states(mdp: TabularMDP) -> torch.Tensor:
    """States reachable from the start under *some* policy: a bool mask (S,).

    The states that the initial distribution or any positive-probability transition chain
    from it reaches (a graph search on P > 0); the set over which a learner's Q is compared
    to the exact one (it cannot learn about states it can never visit).
    """
    mdp = _check_mdp(mdp)
    edges = (mdp.transition > 0).any(1)  # (S, S'): some action moves s → s'
    seen = mdp.initial > 0
    while True:
        grown = seen | (edges & seen[:, None]).any(0)
        if torch.equal(grown, seen):
            return seen
        seen = grown


def _log_prior(action_prior, num_states: int, num_actions: int, dtype) -> np.ndarray:
    """log p(a|s) as an (S, A) array; uniform for None, an (A,) row is shared by every state."""
    if action_prior is None:
        return np.full((num_states, num_actions), -np.log(num_actions), dtype=dtype)
    if isinstance(action_prior, torch.Tensor):
        action_prior = action_prior.detach().cpu().numpy()
    prior = np.asarray(action_prior, dtype=np.float64)
    if prior.shape == (num_actions,):
        prior = np.broadcast_to(prior, (num_states, num_actions))
    if prior.shape != (num_states, num_actions):
        raise ValueError(
            f"`action_prior` must have shape (S, A) = {(num_states, num_actions)} or (A,), "
            f"got {prior.shape}"
        )
    if not np.isfinite(prior).all() or (prior < 0).any():
        raise ValueError("`action_prior` must hold finite probabilities >= 0")
    if not np.allclose(prior.sum(-1), 1.0, atol=1e-6):
        raise ValueError("`action_prior` rows must sum to 1 (p(.|s) is a distribution)")
    with np.errstate(divide="ignore"):
        return np.log(prior).astype(dtype)


class SoftQLearning(Algorithm):
    """Tabular soft Q-learning on an env with Discrete observations and actions.

    Each step acts from the current soft policy π(a|s) = p(a|s)·exp((Q(s,a) − V(s))/α), mixed
    with the uniform policy with probability ``epsilon``, and applies
    ``Q(s,a) ← Q(s,a) + ηₙ·(r + γ·(1 − terminated)·V(s') − Q(s,a))``.

    Learning rate. The n-th visit of (s, a) uses ηₙ = ``learning_rate``·n^(−``lr_decay``): a
    polynomial rate, which converges for 1/2 < ω ≤ 1 (Robbins–Monro) and, for ω < 1, much
    faster than the 1/n rate when γ is close to 1 (Even-Dar & Mansour 2003). ηₙ = 1 at the
    first visit, so a deterministic env is learned as fast as asynchronous value iteration.

    Args:
        env: a gymnasium env or env id with Discrete observation and action spaces.
        temperature: α > 0 (default 1).
        discount: γ in (0, 1] (default 0.95).
        action_prior: p(a|s) as (S, A) or (A,) probabilities; uniform if None.
        learning_rate: η at the first visit of each (s, a), in (0, 1].
        lr_decay: ω ≥ 0 of ηₙ = learning_rate·n^(−ω) (0: a constant rate).
        epsilon: probability of a uniformly random action instead of the soft policy.
        dtype: of the table (torch.float64 or torch.float32).
        seed, device, progress, eval_every, eval_episodes: see
            :class:`~pgm_control.algorithm.Algorithm`.

    The learned table is :attr:`q` (S, A) and its update counts :attr:`visits`.
    """

    def __init__(
        self,
        env,
        temperature: float = 1.0,
        discount: float = 0.95,
        *,
        action_prior=None,
        learning_rate: float = 1.0,
        lr_decay: float = 0.7,
        epsilon: float = 0.0,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
        device="cpu",
        progress: bool = True,
        eval_every: int | None = None,
        eval_episodes: int = 10,
    ):
        super().__init__(
            env,
            seed=seed,
            device=device,
            progress=progress,
            eval_every=eval_every,
            eval_episodes=eval_episodes,
        )
        for name, space in (("observation", self.observation_space), ("action", self.action_space)):
            if not isinstance(space, gym.spaces.Discrete):
                hint = (
                    "use SoftDQN for Box observations"
                    if name == "observation"
                    else "use SAC for continuous actions"
                )
                raise ValueError(
                    f"`env` must have a Discrete {name} space for tabular soft Q-learning, "
                    f"got {space}; {hint}"
                )
        self.temperature = check_temperature(temperature)
        self.discount = check_discount(discount)
        self.learning_rate = check_probability("learning_rate", learning_rate, open_low=True)
        if lr_decay != 0:
            check_positive_float("lr_decay", lr_decay)
        self.lr_decay = float(lr_decay)
        self.epsilon = check_probability("epsilon", epsilon)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"`dtype` must be torch.float32 or torch.float64, got {dtype!r}")
        self.dtype = dtype
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        S, A = int(self.observation_space.n), int(self.action_space.n)
        self._log_prior = _log_prior(action_prior, S, A, np_dtype)
        self._q = np.zeros((S, A), dtype=np_dtype)  # indexed as Q[s, a]
        self._visits = np.zeros((S, A), dtype=np.int64)
        self.hyperparameters = {
            "temperature": self.temperature,
            "discount": self.discount,
            "action_prior": None if action_prior is None else np.exp(self._log_prior),
            "learning_rate": self.learning_rate,
            "lr_decay": self.lr_decay,
            "epsilon": self.epsilon,
            "dtype": dtype,
            "progress": self.progress,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
        }

    # ---------------------------------------------------------------- the tables
    @property
    def q(self) -> torch.Tensor:
        """The learned Q[s, a], shape (S, A) (a copy)."""
        return torch.tensor(self._q, dtype=self.dtype, device=self.device)

    @property
    def visits(self) -> torch.Tensor:
        """n(s, a): how often each entry was updated, shape (S, A)."""
        return torch.tensor(self._visits, device=self.device)

    @property
    def v(self) -> torch.Tensor:
        """V(s) = α·log Σₐ p(a|s)·exp(Q(s,a)/α), shape (S,)."""
        v = soft_value(self._q, self._log_prior, self.temperature)
        return torch.tensor(v, dtype=self.dtype, device=self.device)

    @property
    def policy(self) -> torch.Tensor:
        """The soft policy π(a|s) = p(a|s)·exp((Q(s,a) − V(s))/α), shape (S, A)."""
        return torch.tensor(self._policy_rows(self._q), dtype=self.dtype, device=self.device)

    def _policy_rows(self, q_rows):
        z = self._log_prior[: len(q_rows)] + q_rows / self.temperature
        p = np.exp(z - z.max(-1, keepdims=True))
        return p / p.sum(-1, keepdims=True)

    # ---------------------------------------------------------------- the algorithm
    def update(self, obs: int, action: int, reward: float, next_obs: int, terminated: bool):
        """One soft Q-learning update of Q(obs, action); returns the TD error y − Q (before)."""
        y = soft_q_target(
            self._q,
            self._log_prior,
            reward,
            next_obs,
            terminated,
            temperature=self.temperature,
            discount=self.discount,
        )
        self._visits[obs, action] += 1
        eta = self.learning_rate * self._visits[obs, action] ** (-self.lr_decay)
        td = y - self._q[obs, action]
        self._q[obs, action] += eta * td
        return float(td)

    def _train_step(self) -> int:
        action = self._act(self.current_observation, False)
        obs, action, reward, next_obs, terminated, _ = self._env_step(action)
        # truncated (a time limit) is not the MDP's end: bootstrap from V(s') as usual
        self.update(int(obs), int(action), reward, int(next_obs), terminated)
        return 1

    def _act(self, observation, deterministic: bool) -> int:
        s = int(observation)
        z = self._log_prior[s] + self._q[s] / self.temperature
        if deterministic:
            return int(np.argmax(z))  # the mode of the soft policy
        rng = self.np_random
        A = z.shape[0]
        if self.epsilon > 0 and rng.random() < self.epsilon:
            return int(rng.integers(A))
        p = np.exp(z - z.max())
        cdf = np.cumsum(p)
        return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), A - 1))

    # ---------------------------------------------------------------- save/load
    def _state(self) -> dict:
        return {"q": self._q.copy(), "visits": self._visits.copy()}

    def _load_state(self, state: dict) -> None:
        self._q = np.array(state["q"], dtype=self._q.dtype)
        self._visits = np.array(state["visits"], dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"SoftQLearning(env={self.env.spec.id if self.env.spec else self.env}, "
            f"temperature={self.temperature}, discount={self.discount}, "
            f"num_timesteps={self.num_timesteps})"
        )
