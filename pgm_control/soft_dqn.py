"""Soft DQN: soft Q-learning with a neural Q, a replay buffer and a target network.

The lecture's soft-DQN box (notes 002, "Q-learning with soft optimality" / "Soft DQN"; Levine
2018, §4.1; Haarnoja et al. 2017) is DQN with the hard max of the target replaced by the soft
max — the backup that maximises the ELBO of a guide sharing the true dynamics::

    act       a ~ π(a|s) ∝ p(a)·exp(Q_φ(s,a)/α)   (optionally ε-mixed with uniform)
    store     (s, a, r, s', terminated) in the buffer B
    sample    a minibatch from B uniformly
    target    y = r + γ·(1 − terminated)·α·log Σₐ' p(a')·exp(Q_φ̄(s',a')/α)
    regress   φ ← φ − η·∇_φ Σᵢ ℓ(Q_φ(sᵢ,aᵢ) − yᵢ)        (ℓ: Huber, as SB3's DQN, or squared)
    copy      φ̄ ← φ every ``target_update_interval`` env steps (or Polyak: φ̄ ← (1 − τ)·φ̄ + τ·φ)

As α → 0 the soft max becomes the hard max and this is DQN (Mnih et al. 2015). Its fixed point
on a tabular env with one-hot observations is :func:`pgm_control.discounted_soft_value_iteration`
(tested). ``terminated`` bootstraps with 0 (an absorbing state); a time-limit truncation
bootstraps from s' (the episode was cut, the state was not absorbing).

The update schedule follows Stable-Baselines3's DQN so that the two can be compared step for
step: uniformly random actions for the first ``learning_starts`` steps, then ``gradient_steps``
updates every ``train_freq`` env steps, a target copy every ``target_update_interval`` env steps,
an ε schedule linear from ``exploration_initial_eps`` to ``exploration_final_eps`` over
``exploration_steps`` (SB3's ``exploration_fraction`` × ``total_timesteps``). While the target
network is fixed, all targets of the gradient steps until its next update come from one batched
forward pass of the target network.

Two options, off by default, address how slowly values propagate under that schedule (each
target copy is one fitted-Q iteration, so a copy per burst of SB3's zoo schedule is only ~195
iterations in 50k env steps, and a TD error contracts by γ per iteration):

* ``target_update_gradient_steps=k``: a target update also after every k-th gradient step,
  inside the bursts (with ``target_update_tau`` < 1 and k = 1: Polyak averaging per step);
* ``munchausen=β``: Munchausen soft DQN (Vieillard et al. 2020, eq. 2 / Alg. 1),
  y = r + β·α·clip(log π̄(a|s), l₀, 0) + γ·(1 − terminated)·α·log Σₐ' p(a')·exp(Q̄(s',a')/α)
  with π̄ ∝ p·exp(Q̄/α) the target net's Boltzmann policy (:func:`munchausen_reward`). Unclipped
  and with a uniform p, each target copy is then one step of KL-regularised (mirror-descent)
  value iteration, π_{k+1} = argmax_π ⟨π, Q_k⟩ − βα·KL(π‖π_k) + (1 − β)α·H(π), i.e.
  π_{k+1} ∝ π_k^β·exp(Q_k/α) (their Thm. 1): the prior ← previous policy of
  :func:`pgm_control.kl_regularised_policy_iteration` (mirror descent on the ELBO), applied per
  backup instead of per full soft-VI solve, with β = 1 its α·KL(π‖π_k) exactly.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .algorithm import Algorithm, check_discrete_learner
from .networks import mlp, torch_threads
from .replay_buffer import ReplayBuffer
from .validation import (
    check_discount,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_temperature,
)

__all__ = [
    "SoftDQN",
    "soft_value",
    "soft_q_target",
    "soft_double_q_target",
    "munchausen_reward",
    "LOSSES",
]

LOSSES = ("huber", "mse")


def soft_value(q: torch.Tensor, *, temperature: float, log_action_prior=None) -> torch.Tensor:
    """The soft max over actions: ``V(s) = α·log Σₐ p(a)·exp(Q(s,a)/α)``.

    Args:
        q: Q values (..., A).
        temperature: α > 0.
        log_action_prior: log p(a), broadcastable to ``q`` (None: uniform, log p = −log A).

    Returns:
        V (...,): the lecture's soft max (notes 002, "Q-learning with soft optimality"); it
        includes the action prior, so V ≤ maxₐ Q and V → maxₐ Q as α → 0 only up to α·log p.
    """
    alpha = check_temperature(temperature)
    if log_action_prior is None:
        log_p = -torch.log(torch.tensor(float(q.shape[-1]), dtype=q.dtype, device=q.device))
    else:
        log_p = log_action_prior
    return alpha * torch.logsumexp(log_p + q / alpha, dim=-1)


def soft_q_target(
    rewards: torch.Tensor,
    next_q: torch.Tensor,
    terminated: torch.Tensor,
    *,
    temperature: float,
    discount: float,
    log_action_prior=None,
) -> torch.Tensor:
    """The soft-DQN regression target (the lecture's soft-DQN box, notes 002).

    ``y = r + γ·(1 − terminated)·α·log Σₐ' p(a')·exp(Q̄(s',a')/α)``

    Args:
        rewards: r (...,).
        next_q: the target network's Q̄(s', ·), (..., A).
        terminated: 1. where s' is absorbing (bootstrap with 0), 0. otherwise, (...,).
        temperature: α > 0.
        discount: γ in (0, 1].
        log_action_prior: log p(a) broadcastable to ``next_q`` (None: uniform).

    Returns:
        y (...,).
    """
    gamma = check_discount(discount)
    v_next = soft_value(next_q, temperature=temperature, log_action_prior=log_action_prior)
    # where s' is absorbing V is not used at all (0·V would turn an infinite V into NaN)
    v_next = torch.where(terminated.bool(), torch.zeros_like(v_next), v_next)
    return rewards + gamma * v_next


def soft_double_q_target(
    rewards: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor,
    terminated: torch.Tensor,
    *,
    temperature: float,
    discount: float,
    log_action_prior=None,
) -> torch.Tensor:
    """The soft double-Q target: the online net picks the Boltzmann weights, the target net values.

    ``y = r + γ·(1 − terminated)·Σₐ' π_φ(a'|s')·(Q̄(s',a') − α·log(π_φ(a'|s')/p(a')))``,
    with ``π_φ(a'|s') ∝ p(a')·exp(Q_φ(s',a')/α)`` the online net's soft-greedy policy.

    The soft max is a maximum over policies, ``α·log Σₐ p(a)·exp(Q(a)/α) =
    max_π Σₐ π(a)·(Q(a) − α·log(π(a)/p(a)))`` (the ELBO's variational form, notes 002), attained
    at π ∝ p·exp(Q/α). Double Q-learning (van Hasselt et al. 2016) decouples the two roles of
    that maximum: the online net Q_φ chooses the maximiser π_φ, the target net Q̄ evaluates it.
    Where Q_φ = Q̄ this is :func:`soft_q_target` exactly; elsewhere it is ≤ it (π_φ is not the
    maximiser for Q̄), which is what damps the soft max's over-estimation; as α → 0 it is double
    DQN's ``r + γ·Q̄(s', argmaxₐ Q_φ(s',a))``.

    Args:
        rewards: r (...,).
        next_q_target: the target network's Q̄(s', ·), (..., A).
        next_q_online: the online network's Q_φ(s', ·), (..., A).
        terminated: 1. where s' is absorbing (bootstrap with 0), 0. otherwise, (...,).
        temperature: α > 0.
        discount: γ in (0, 1].
        log_action_prior: log p(a) broadcastable to the Q's (None: uniform).

    Returns:
        y (...,).
    """
    alpha = check_temperature(temperature)
    gamma = check_discount(discount)
    if next_q_target.shape != next_q_online.shape:
        raise ValueError(
            "`next_q_target` and `next_q_online` must have the same shape, got "
            f"{tuple(next_q_target.shape)} and {tuple(next_q_online.shape)}"
        )
    log_pi, log_p = _log_boltzmann(next_q_online, alpha, log_action_prior)
    pi = log_pi.exp()
    # a' with p(a') = 0 has π = 0: its term is 0 (not 0·(−inf + inf) = NaN)
    value = torch.where(pi > 0, next_q_target - alpha * (log_pi - log_p), torch.zeros_like(pi))
    v_next = (pi * value).sum(-1)
    v_next = torch.where(terminated.bool(), torch.zeros_like(v_next), v_next)
    return rewards + gamma * v_next


def _log_boltzmann(q: torch.Tensor, alpha: float, log_action_prior=None):
    """(log π, log p): π(a|s) ∝ p(a)·exp(Q(s,a)/α) over the last axis; p uniform when None."""
    if log_action_prior is None:
        n = torch.tensor(float(q.shape[-1]), dtype=q.dtype, device=q.device)
        log_p = -torch.log(n)
    else:
        log_p = log_action_prior
    return torch.log_softmax(log_p + q / alpha, dim=-1), log_p


def munchausen_reward(
    rewards: torch.Tensor,
    q: torch.Tensor,
    actions: torch.Tensor,
    *,
    temperature: float,
    scale: float,
    clip_min: float = -1.0,
    log_action_prior=None,
) -> torch.Tensor:
    """The Munchausen-augmented reward ``r + β·α·clip(log π̄(a|s), l₀, 0)`` (Vieillard et al. 2020).

    ``π̄(·|s) ∝ p(·)·exp(Q̄(s,·)/α)`` is the target net's Boltzmann policy at the *current*
    state. Regressing on ``munchausen_reward(...) + γ·(1 − terminated)·V̄(s')`` (that is,
    :func:`soft_q_target` with this reward) is Munchausen soft DQN (their eq. 2; our V̄
    includes the action prior, which with a uniform p shifts every reward by the constant
    −γα·log A). Unclipped (l₀ = −∞) and with a uniform p, the bonus makes each backup a step of
    KL-regularised value iteration with prior ← previous policy, π_{k+1} ∝ π_k^β·exp(Q_k/α)
    (their Thm. 1; β = 1: the α·KL(π‖π_k) of :func:`pgm_control.kl_regularised_policy_iteration`).
    β = 0 is :func:`soft_q_target`'s reward r; the clip at l₀ keeps log π̄ → −∞ (small α, or an
    action the target net never prefers) from swamping the reward.

    Args:
        rewards: r (...,).
        q: the target network's Q̄(s, ·) at the transitions' own states, (..., A).
        actions: the actions taken, integer (...,).
        temperature: α > 0.
        scale: β in [0, 1].
        clip_min: l₀ < 0, the lower clip of log π̄ (the paper's default −1).
        log_action_prior: log p(a), broadcastable to ``q`` (None: uniform).

    Returns:
        r + β·α·clip(log π̄(a|s), l₀, 0), (...,).
    """
    alpha = check_temperature(temperature)
    beta = check_probability("scale", scale)
    l0 = _real_negative("clip_min", clip_min)
    if q.shape[:-1] != actions.shape or q.shape[:-1] != rewards.shape:
        raise ValueError(
            "`q` must be (..., A) with `rewards` and `actions` of shape (...,), got "
            f"{tuple(q.shape)}, {tuple(rewards.shape)} and {tuple(actions.shape)}"
        )
    log_pi, _ = _log_boltzmann(q, alpha, log_action_prior)
    log_pi_a = log_pi.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return rewards + beta * alpha * log_pi_a.clamp(min=l0, max=0.0)


def _real_negative(name: str, value) -> float:
    """A finite real number < 0 as ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a negative real number, got {value!r}")
    x = float(value)
    if not (math.isfinite(x) and x < 0):
        raise ValueError(f"`{name}` must be a finite number < 0 (e.g. -1), got {value!r}")
    return x


def _linear(start: float, end: float, steps: int, t: int) -> float:
    """A linear schedule in env steps: ``start`` at t = 0, ``end`` from t = ``steps`` on."""
    if steps == 0 or t >= steps:
        return end
    return start + (t / steps) * (end - start)


class SoftDQN(Algorithm):
    """Soft DQN (see the module doc): a neural soft-Q function learned from ``env.step``.

    Args:
        env: a gymnasium env (or env id) with Discrete actions and Box or Discrete
            observations (a Discrete observation is fed to the network one-hot).
        temperature: α > 0 of p(O|s,a) ∝ exp(r/α); α → 0 gives DQN.
        discount: γ in (0, 1].
        learning_rate: Adam's step size.
        learning_rate_final, learning_rate_steps: a linear decay of the step size from
            ``learning_rate`` to ``learning_rate_final`` over the first ``learning_rate_steps``
            env steps, then constant (None, the default: constant ``learning_rate``). Settles a
            learned Q instead of letting late large steps undo it.
        buffer_size: transitions kept in the replay buffer.
        learning_starts: uniformly random actions and no updates for this many env steps.
        batch_size: transitions per gradient step.
        train_freq: env steps between bursts of gradient steps.
        gradient_steps: gradient steps per burst.
        target_update_interval: env steps between target updates φ̄ ← (1 − τ)·φ̄ + τ·φ.
        target_update_tau: τ in (0, 1] of that update (1, the default: a hard copy, as DQN;
            < 1: Polyak averaging).
        target_update_gradient_steps: k ≥ 1: a target update (with the same τ) also after every
            k-th gradient step, inside the bursts (None, the default: only every
            ``target_update_interval`` env steps, so the target is fixed during a burst).
        double_q: regress on :func:`soft_double_q_target` (the online net's Boltzmann weights,
            the target net's values; recomputed at every gradient step) instead of
            :func:`soft_q_target`.
        munchausen: β in [0, 1]: add the Munchausen bonus β·α·clip(log π̄(a|s), l₀, 0) to the
            reward of the target (:func:`munchausen_reward`; 0, the default: off).
        munchausen_clip: l₀ < 0, the bonus's lower clip (the paper's −1).
        exploration_initial_eps, exploration_final_eps, exploration_steps: the behaviour policy
            is (1 − ε)·π + ε·uniform, ε linear from initial to final over ``exploration_steps``
            env steps, then final (0, 0, 0 — the default — is the pure Boltzmann policy).
        net_arch: hidden widths of the ReLU MLP (``()``: a linear Q, a table for one-hot input).
        loss: "huber" (smooth L1, as SB3's DQN) or "mse".
        max_grad_norm: clip the gradient's norm (None: no clipping).
        action_prior: p(a) (A,) probabilities (None: uniform), state-independent.
        num_threads: torch threads during ``learn`` (restored afterwards; None: leave as is).
            Small networks are often faster with 1.
        dtype: float dtype of the networks and the buffer.
        seed, device, progress, eval_every, eval_episodes: see :class:`Algorithm`.

    Attributes:
        q_net, target_net: Q_φ and Q_φ̄, ``nn.Sequential`` maps features (B, F) → (B, A).
        buffer: the :class:`~pgm_control.replay_buffer.ReplayBuffer`.
        num_updates: gradient steps taken.
    """

    def __init__(
        self,
        env,
        temperature: float = 1.0,
        *,
        discount: float = 0.99,
        learning_rate: float = 1e-3,
        learning_rate_final: float | None = None,
        learning_rate_steps: int = 0,
        buffer_size: int = 100_000,
        learning_starts: int = 1000,
        batch_size: int = 64,
        train_freq: int = 4,
        gradient_steps: int = 1,
        target_update_interval: int = 1000,
        target_update_tau: float = 1.0,
        target_update_gradient_steps: int | None = None,
        double_q: bool = False,
        munchausen: float = 0.0,
        munchausen_clip: float = -1.0,
        exploration_initial_eps: float = 0.0,
        exploration_final_eps: float = 0.0,
        exploration_steps: int = 0,
        net_arch: tuple[int, ...] = (256, 256),
        loss: str = "huber",
        max_grad_norm: float | None = 10.0,
        action_prior=None,
        num_threads: int | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        device="cpu",
        progress: bool = True,
        eval_every: int | None = None,
        eval_episodes: int = 10,
    ):
        super().__init__(
            env, seed=seed, device=device, progress=progress, eval_every=eval_every,
            eval_episodes=eval_episodes,
        )  # fmt: skip
        check_discrete_learner("SoftDQN", self.observation_space, self.action_space, dtype)
        obs_space = self.observation_space
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}")
        self.alpha = check_temperature(temperature)
        self.gamma = check_discount(discount)
        self.learning_rate = check_positive_float("learning_rate", learning_rate)
        if learning_rate_final is None:
            self.learning_rate_final = self.learning_rate
        else:
            self.learning_rate_final = check_positive_float(
                "learning_rate_final", learning_rate_final
            )
        self.learning_rate_steps = check_positive_int(
            "learning_rate_steps", learning_rate_steps, minimum=0
        )
        if learning_rate_final is not None and self.learning_rate_steps == 0:
            raise ValueError(
                "`learning_rate_steps` must be ≥ 1 when `learning_rate_final` is given "
                "(the env steps of the decay)"
            )
        self.learning_starts = check_positive_int("learning_starts", learning_starts, minimum=0)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.train_freq = check_positive_int("train_freq", train_freq)
        self.gradient_steps = check_positive_int("gradient_steps", gradient_steps)
        self.target_update_interval = check_positive_int(
            "target_update_interval", target_update_interval
        )
        self.tau = check_probability("target_update_tau", target_update_tau, open_low=True)
        if not isinstance(double_q, bool):
            raise TypeError(f"`double_q` must be True or False, got {double_q!r}")
        self.double_q = double_q
        self.target_update_gradient_steps = (
            None
            if target_update_gradient_steps is None
            else check_positive_int("target_update_gradient_steps", target_update_gradient_steps)
        )
        self.munchausen = check_probability("munchausen", munchausen)
        self.munchausen_clip = _real_negative("munchausen_clip", munchausen_clip)
        self.eps_initial = check_probability("exploration_initial_eps", exploration_initial_eps)
        self.eps_final = check_probability("exploration_final_eps", exploration_final_eps)
        self.exploration_steps = check_positive_int(
            "exploration_steps", exploration_steps, minimum=0
        )
        net_arch = tuple(check_positive_int("net_arch", h) for h in net_arch)
        self.loss = loss
        self.max_grad_norm = (
            None if max_grad_norm is None else check_positive_float("max_grad_norm", max_grad_norm)
        )
        self.num_threads = (
            None if num_threads is None else check_positive_int("num_threads", num_threads)
        )
        self.dtype = dtype
        A = int(self.action_space.n)
        self.num_actions = A
        kw = {"dtype": dtype, "device": self.device}
        if action_prior is None:
            prior = torch.full((A,), 1.0 / A, **kw)
        else:
            prior = torch.as_tensor(action_prior, **kw)
            if prior.shape != (A,) or not torch.isfinite(prior).all() or (prior < 0).any():
                raise ValueError(
                    f"`action_prior` must be {A} non-negative probabilities, got {action_prior!r}"
                )
            if abs(prior.sum().item() - 1.0) > 1e-5:
                raise ValueError(f"`action_prior` must sum to 1, got {prior.sum().item():.6g}")
        self.log_action_prior = torch.log(prior)  # −inf where p(a) = 0: never taken
        self._log_prior_np = self.log_action_prior.cpu().numpy().astype(np.float64)
        self.hyperparameters = {
            "temperature": self.alpha, "discount": self.gamma,
            "learning_rate": self.learning_rate, "learning_rate_final": learning_rate_final,
            "learning_rate_steps": self.learning_rate_steps, "buffer_size": buffer_size,
            "learning_starts": self.learning_starts, "batch_size": self.batch_size,
            "train_freq": self.train_freq, "gradient_steps": self.gradient_steps,
            "target_update_interval": self.target_update_interval,
            "target_update_tau": self.tau,
            "target_update_gradient_steps": self.target_update_gradient_steps,
            "double_q": self.double_q, "munchausen": self.munchausen,
            "munchausen_clip": self.munchausen_clip,
            "exploration_initial_eps": self.eps_initial,
            "exploration_final_eps": self.eps_final,
            "exploration_steps": self.exploration_steps, "net_arch": net_arch,
            "loss": loss, "max_grad_norm": self.max_grad_norm,
            "action_prior": None if action_prior is None else prior.tolist(),
            "num_threads": self.num_threads, "dtype": dtype, "progress": self.progress,
            "eval_every": self.eval_every, "eval_episodes": self.eval_episodes,
        }  # fmt: skip

        if isinstance(obs_space, gym.spaces.Discrete):
            self._one_hot = int(obs_space.n)
            n_in, obs_shape, obs_dtype = self._one_hot, (), torch.int64
        else:
            self._one_hot = 0
            n_in = int(np.prod(obs_space.shape))
            obs_shape, obs_dtype = tuple(obs_space.shape), dtype
        self.q_net = self._init_modules(
            lambda: mlp(n_in, net_arch, A, dtype=dtype, device=self.device)
        )
        self.target_net = self._init_modules(
            lambda: mlp(n_in, net_arch, A, dtype=dtype, device=self.device)
        )
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(
            self.q_net.parameters(), lr=self.learning_rate, fused=fused
        )
        self.buffer = ReplayBuffer(
            check_positive_int("buffer_size", buffer_size), obs_shape, (),
            observation_dtype=obs_dtype, action_dtype=torch.int64, float_dtype=dtype,
            device=self.device,
        )  # fmt: skip
        self.num_updates = 0
        # one preallocated input row for acting: no allocation per env step
        self._act_input = torch.zeros((1, n_in), **kw)

    # ---------------------------------------------------------------- the pieces
    def features(self, observations: torch.Tensor) -> torch.Tensor:
        """Network input (B, F) from stored observations (one-hot for Discrete ones)."""
        if self._one_hot:
            return nn.functional.one_hot(observations.long(), self._one_hot).to(self.dtype)
        return observations.reshape(observations.shape[0], -1).to(self.dtype)

    def q_values(self, observations) -> torch.Tensor:
        """Q_φ(s, ·) (B, A) for a batch of observations (array-like, ``(B, *obs)`` or ``(B,)``)."""
        obs = torch.as_tensor(
            np.asarray(observations), dtype=self.buffer.observations.dtype, device=self.device
        )
        if not self._one_hot and obs.ndim == len(self.observation_space.shape):
            obs = obs[None]
        return self.q_net(self.features(obs.reshape(-1, *self.buffer.observations.shape[1:])))

    def policy(self, observations) -> torch.Tensor:
        """The soft-greedy policy π(a|s) = p(a)·exp((Q(s,a) − V(s))/α), (B, A)."""
        q = self.q_values(observations)
        return torch.softmax(self.log_action_prior + q / self.alpha, dim=-1)

    def exploration_rate(self) -> float:
        """ε at the current step (SB3's linear schedule, in env steps)."""
        return _linear(self.eps_initial, self.eps_final, self.exploration_steps, self.num_timesteps)

    def current_learning_rate(self) -> float:
        """Adam's step size at the current step (linear from initial to final, then final)."""
        return _linear(
            self.learning_rate, self.learning_rate_final, self.learning_rate_steps,
            self.num_timesteps,
        )  # fmt: skip

    def td_loss(self, observations, actions, targets) -> torch.Tensor:
        """ℓ(Q_φ(s,a) − y) averaged over the batch (features, (B,) actions, (B,) targets)."""
        q = self.q_net(observations).gather(1, actions[:, None]).squeeze(1)
        if self.loss == "huber":
            return nn.functional.smooth_l1_loss(q, targets)
        return nn.functional.mse_loss(q, targets)

    # ---------------------------------------------------------------- Algorithm hooks
    def _q_row(self, observation) -> np.ndarray:
        x = self._act_input
        if self._one_hot:
            x.zero_()
            x[0, int(observation)] = 1.0
        else:
            x.copy_(torch.from_numpy(np.asarray(observation).reshape(1, -1)))
        with torch.no_grad():
            return self.q_net(x)[0].cpu().numpy().astype(np.float64)

    def _act(self, observation, deterministic: bool):
        logits = self._log_prior_np + self._q_row(observation) / self.alpha
        if deterministic:
            return int(np.argmax(logits))
        # Gumbel-max: a sample of softmax(logits) from the run's own numpy stream
        return int(np.argmax(logits + self.np_random.gumbel(size=logits.shape)))

    def _behaviour_action(self) -> int:
        rng = self.np_random
        if self.num_timesteps < self.learning_starts or rng.random() < self.exploration_rate():
            return int(rng.integers(self.num_actions))
        return self._act(self.current_observation, False)

    def _train_step(self) -> int:
        # collect, store
        obs, action, reward, next_obs, terminated, _ = self._env_step(self._behaviour_action())
        self.buffer.add(obs, action, reward, next_obs, terminated)
        t = self.num_timesteps
        if t % self.target_update_interval == 0:
            self._update_target()
        if t > self.learning_starts and t % self.train_freq == 0:
            self._train_burst()
        return 1

    def _update_target(self) -> None:
        """φ̄ ← φ (τ = 1) or the Polyak average φ̄ ← (1 − τ)·φ̄ + τ·φ."""
        if self.tau == 1.0:
            self.target_net.load_state_dict(self.q_net.state_dict())
            return
        with torch.no_grad():
            for p_bar, p in zip(self.target_net.parameters(), self.q_net.parameters()):
                p_bar.lerp_(p, self.tau)

    def _train_burst(self) -> None:
        """``gradient_steps`` updates. The target net's forwards are batched over each stretch
        of steps during which it is fixed (a whole burst unless ``target_update_gradient_steps``
        is set); the double-Q target's online Q(s', ·) moves with every step."""
        G, B, k = self.gradient_steps, self.batch_size, self.target_update_gradient_steps
        if self.learning_rate_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.current_learning_rate()
        batch = self.buffer.sample(G * B, self.torch_generator)
        kw = {"temperature": self.alpha, "log_action_prior": self.log_action_prior}
        x = self.features(batch.observations)
        x_next = self.features(batch.next_observations)
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        params = list(self.q_net.parameters())
        g = 0
        while g < G:
            # the gradient steps g .. g + n − 1 share one target net
            n = G - g if k is None else min(G - g, k - self.num_updates % k)
            rows = slice(g * B, (g + n) * B)
            r, term = batch.rewards[rows], batch.terminated[rows]
            with torch.no_grad():
                if self.munchausen > 0:
                    r = munchausen_reward(
                        r, self.target_net(x[rows]), batch.actions[rows],
                        scale=self.munchausen, clip_min=self.munchausen_clip, **kw,
                    )  # fmt: skip
                next_q = self.target_net(x_next[rows])
                if not self.double_q:
                    y = soft_q_target(r, next_q, term, discount=self.gamma, **kw)
            for i in range(n):
                step = slice((g + i) * B, (g + i + 1) * B)
                here = slice(i * B, (i + 1) * B)
                if self.double_q:
                    with torch.no_grad():
                        y_i = soft_double_q_target(
                            r[here], next_q[here], self.q_net(x_next[step]), term[here],
                            discount=self.gamma, **kw,
                        )  # fmt: skip
                else:
                    y_i = y[here]
                loss = self.td_loss(x[step], batch.actions[step], y_i)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(params, self.max_grad_norm, foreach=True)
                self.optimizer.step()
                total += loss.detach()
                self.num_updates += 1
            g += n
            if k is not None and self.num_updates % k == 0:
                self._update_target()
        self.history.log("td_loss", self.num_timesteps, float(total) / G)

    def learn(self, total_timesteps: int, *, progress: bool | None = None):
        """See :meth:`Algorithm.learn`; runs under ``num_threads`` torch threads if set."""
        with torch_threads(self.num_threads):
            return super().learn(total_timesteps, progress=progress)

    def _state(self) -> dict:
        buf = self.buffer
        return {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_updates": self.num_updates,
            "buffer": {
                "observations": buf.observations[: buf.size].clone(),
                "next_observations": buf.next_observations[: buf.size].clone(),
                "actions": buf.actions[: buf.size].clone(),
                "rewards": buf.rewards[: buf.size].clone(),
                "terminated": buf.terminated[: buf.size].clone(),
                "position": buf.position,
            },
        }

    def _load_state(self, state: dict) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
        buf, saved = self.buffer, state["buffer"]
        n = saved["rewards"].shape[0]
        for name in ("observations", "next_observations", "actions", "rewards", "terminated"):
            getattr(buf, name)[:n] = saved[name].to(self.device)
        buf.size, buf.position = n, int(saved["position"])
