r"""The entropy-regularised policy gradient: the score-function ELBO gradient, from env samples.

A guide that shares the true dynamics, q(τ) = p0(s₀)·Πₜ qₜ(aₜ|sₜ)·P(sₜ₊₁|sₜ,aₜ), has the ELBO
(Levine 2018, §4, "line 5"; with discount γ, §4.2)::

    ELBO_γ(q) = E_q[Σₜ γᵗ·cₜ],   cₜ = r(sₜ,aₜ,sₜ₊₁)/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ)

and its gradient needs no model of the dynamics: by the score-function identity, and since
E_{a~q}[∇log q(a|s)] = 0 removes both the past costs and the direct gradient of −log q,

    ∇ELBO_γ = E_q[Σₜ γᵗ·∇log qₜ(aₜ|sₜ)·(Gₜ − b(sₜ))],   Gₜ = Σ_{k≥t} γ^{k−t}·c_k

for any baseline b(sₜ) that does not depend on aₜ (Levine 2018, §4.2: "add −log q to the reward
and run REINFORCE"; Williams 1992). Trajectories come from ``env.reset``/``env.step`` alone.

Playing a guide against an env. A guide is a plain Pyro program with the model's signature
(:mod:`pgm_control.guides.contract`); it samples ``s_0``, ``a_t``, ``s_{t+1}``. A small
messenger (:class:`_EnvPlay`) runs it with ``num_particles = N``: ``s_0`` ← the N envs' reset
observations, each ``a_t`` is the guide's own draw (its log-probability log qₜ(aₜ|sₜ) is kept,
differentiable in the guide's parameters), ``s_{t+1}`` ← ``env.step(a_t)``. The guide's own
distribution of ``s_{t+1}`` is never used, so the guide's MDP only fixes its shapes and action
prior; the learning signal is the env's. An episode that ends (terminated or truncated) stops
counting; once every episode has ended the guide is stopped early. Episodes last at most the
guide's horizon T.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
import typing

import gymnasium as gym
import numpy as np
import torch
from pyro.poutine.messenger import Messenger
from tqdm.auto import tqdm

from .algorithm import LearningHistory, make_env
from .svi import _few_threads, _guide_parameters, _local_rng
from .validation import (
    check_callable,
    check_discount,
    check_int,
    check_positive_float,
    check_positive_int,
    check_temperature,
)

__all__ = [
    "soft_policy_gradient",
    "SoftPolicyGradientResult",
    "GuideEpisodes",
    "play_guide",
    "soft_returns_to_go",
    "score_function_surrogate",
    "occupancy_weighted_kl",
]

_BASELINES = ("state", "time_state", None)


class GuideEpisodes(typing.NamedTuple):
    """N episodes of a guide played against an env, padded to length L ≤ T.

    Attributes:
        states: sₜ, shape (N, L + 1), int64 (after an episode ends: its last state).
        actions: aₜ, shape (N, L), int64.
        rewards: rₜ, shape (N, L) (0 after the end).
        mask: 1 where step t happened, shape (N, L).
        log_q: log qₜ(aₜ|sₜ), shape (N, L), differentiable in the guide's parameters.
        env_steps: the number of ``env.step`` calls.
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    log_q: torch.Tensor
    env_steps: int


class _AllEnded(Exception):
    """Raised inside the guide once every episode has ended: nothing is left to play."""


class _EnvPlay(Messenger):
    """Plays a guide against N envs: s_0 ← reset, a_t ← the guide's draw, s_{t+1} ← step."""

    def __init__(self, envs, first_observations, device):
        super().__init__()
        self.envs = envs
        self.device = device
        self.obs = torch.as_tensor(np.asarray(first_observations), dtype=torch.long, device=device)
        n = len(envs)
        self.alive = np.ones(n, dtype=bool)
        self.states, self.actions, self.rewards, self.masks, self.log_q = [self.obs], [], [], [], []
        self.env_steps = 0
        self.params: list = []

    def _pyro_sample(self, msg):
        name = msg["name"]
        if name == "s_0":
            msg["value"] = self.obs
        elif name.startswith("s_"):
            msg["value"] = self.obs  # the env's s_{t+1}, set in _pyro_post_sample of a_t
        elif name.startswith("a_") and not self.alive.any():
            raise _AllEnded

    def _pyro_post_sample(self, msg):
        name = msg["name"]
        if not name.startswith("a_"):
            return
        action = msg["value"]
        self.log_q.append(msg["fn"].log_prob(action).expand(len(self.envs)))
        a = action.detach().cpu().numpy().reshape(-1)
        if a.shape[0] == 1:
            a = np.broadcast_to(a, (len(self.envs),))
        rewards = np.zeros(len(self.envs))
        mask = self.alive.copy()
        nxt = self.obs.cpu().numpy().copy()
        for i in np.flatnonzero(self.alive):
            obs, r, terminated, truncated, _ = self.envs[i].step(int(a[i]))
            self.env_steps += 1
            rewards[i], nxt[i] = r, obs
            if terminated or truncated:
                self.alive[i] = False
        self.obs = torch.as_tensor(nxt, dtype=torch.long, device=self.device)
        self.actions.append(torch.as_tensor(a.copy(), dtype=torch.long, device=self.device))
        self.rewards.append(rewards)
        self.masks.append(mask)
        self.states.append(self.obs)


def play_guide(envs, guide, *, guide_args=(), seeds=None, device=None, **model_kwargs):
    """Play ``guide`` once against each env of ``envs`` (one episode each, in lockstep).

    Args:
        envs: a list of N gymnasium envs with Discrete observations and actions.
        guide: a guide with the model's signature (:mod:`pgm_control.guides.contract`).
        guide_args: positional arguments of the guide (e.g. ``(mdp,)``; a library family
            defaults to the MDP it was built for).
        seeds: N reset seeds, or None to continue each env's own generator.
        device: of the returned tensors (default: CPU).
        **model_kwargs: passed to the guide (``temperature`` etc.).

    Returns:
        :class:`GuideEpisodes`; ``log_q`` carries the graph to the guide's parameters.
    """
    n = len(envs)
    seeds = [None] * n if seeds is None else list(seeds)
    first = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]
    device = torch.device("cpu") if device is None else device
    player = _EnvPlay(envs, first, device)
    try:
        with player:
            guide(*guide_args, num_particles=n, **model_kwargs)
    except _AllEnded:
        pass
    if not player.actions:
        raise ValueError("the guide sampled no `a_t` site: is it a guide of the control model?")
    dtype = player.log_q[0].dtype
    return GuideEpisodes(
        states=torch.stack(player.states, dim=1),
        actions=torch.stack(player.actions, dim=1),
        rewards=torch.as_tensor(np.stack(player.rewards, 1), dtype=dtype, device=device),
        mask=torch.as_tensor(np.stack(player.masks, 1), dtype=dtype, device=device),
        log_q=torch.stack(player.log_q, dim=1),
        env_steps=player.env_steps,
    )


def soft_returns_to_go(episodes: GuideEpisodes, log_prior, *, temperature, discount):
    """Gₜ = Σ_{k≥t} γ^{k−t}·m_k·(r_k/α + log p(a_k|s_k) − log q_k(a_k|s_k)), shape (N, L), detached.

    Args:
        episodes: :class:`GuideEpisodes`.
        log_prior: log p(a|s) as an (S, A) tensor.
        temperature: α > 0.
        discount: γ in (0, 1].
    """
    s, a, m = episodes.states[:, :-1], episodes.actions, episodes.mask
    log_p = log_prior.to(episodes.log_q.dtype)[s, a]
    cost = m * (episodes.rewards / temperature + log_p - episodes.log_q.detach())
    g = torch.zeros_like(cost)
    running = torch.zeros_like(cost[:, 0])
    for t in range(cost.shape[1] - 1, -1, -1):
        running = cost[:, t] + discount * running
        g[:, t] = running
    return g


def score_function_surrogate(episodes: GuideEpisodes, advantages, *, discount) -> torch.Tensor:
    """A scalar whose gradient is the estimate (1/N)·Σₙ Σₜ γᵗ·mₜ·∇log qₜ(aₜ|sₜ)·Aₜ.

    ``advantages`` (N, L) are treated as constants (Gₜ − b(sₜ)).
    """
    L = episodes.log_q.shape[1]
    gamma_t = discount ** torch.arange(L, dtype=episodes.log_q.dtype, device=episodes.log_q.device)
    weight = gamma_t * episodes.mask * advantages.detach()
    return (weight * episodes.log_q).sum(1).mean()


@dataclasses.dataclass
class SoftPolicyGradientResult:
    """What :func:`soft_policy_gradient` returns (pickles with its guide).

    Attributes:
        guide: the trained guide.
        history: :class:`~pgm_control.algorithm.LearningHistory`: every episode's return and
            end step, and ``losses["elbo"]``: the batch estimate of ELBO_γ per step (nats).
        steps: optimiser steps taken.
        env_steps: ``env.step`` calls.
        seconds: wall-clock time.
        hyperparameters: the settings of the run.
        interrupted: True if Ctrl-C stopped it.
    """

    guide: typing.Any
    history: LearningHistory
    steps: int
    env_steps: int
    seconds: float
    hyperparameters: dict
    interrupted: bool = False

    def save(self, path: str | os.PathLike) -> None:
        """Write the result, guide included, to ``path`` (torch.save)."""
        torch.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SoftPolicyGradientResult:
        """Read a result written by :meth:`save`; only load files you trust."""
        obj = torch.load(path, weights_only=False)
        if not isinstance(obj, cls):
            raise TypeError(
                f"{os.fspath(path)!r} holds a {type(obj).__name__}, not a {cls.__name__}"
            )
        return obj

    def __repr__(self) -> str:
        elbo = self.history.losses.get("elbo", [])
        last = f", elbo={elbo[-1][1]:.4g}" if elbo else ""
        stop = ", interrupted" if self.interrupted else ""
        return (
            f"SoftPolicyGradientResult(steps={self.steps}, env_steps={self.env_steps}{last}, "
            f"seconds={self.seconds:.2f}{stop})"
        )


def occupancy_weighted_kl(mdp, policy, reference, *, discount: float) -> float:
    """Σ_s d_π(s)·KL(π(·|s) ‖ π*(·|s)), d_π the normalised discounted occupancy of π.

    ``d_π = (1 − γ)·(I − γ·P_πᵀ)⁻¹·p0`` (exact, infinite horizon), P_π(s'|s) = Σₐ π(a|s)·P(s'|s,a).
    A yardstick for a learned stationary policy against the discounted soft-optimal one
    (:func:`pgm_control.discounted_soft_value_iteration`); it reads the MDP's tables, so it
    only checks, never teaches.

    Args:
        mdp: a :class:`~pgm_control.TabularMDP`.
        policy: π(a|s), (S, A).
        reference: π*(a|s), (S, A).
        discount: γ in (0, 1).
    """
    gamma = check_discount(discount, allow_one=False)
    pi = torch.as_tensor(policy, dtype=mdp.float_dtype, device=mdp.device)
    ref = torch.as_tensor(reference, dtype=mdp.float_dtype, device=mdp.device)
    P_pi = torch.einsum("sa,sax->sx", pi, mdp.transition)
    eye = torch.eye(mdp.num_states, dtype=pi.dtype, device=pi.device)
    d = (1 - gamma) * torch.linalg.solve(eye - gamma * P_pi.T, mdp.initial)
    log_ratio = torch.where(pi > 0, torch.log(pi) - torch.log(ref), torch.zeros_like(pi))
    return float((d * (pi * log_ratio).sum(-1)).sum())


def _env_copies(env, n: int) -> list:
    spec = env.spec
    if spec is not None:
        return [gym.make(spec.id, **spec.kwargs) for _ in range(n)]
    return [copy.deepcopy(env) for _ in range(n)]


def _log_prior(action_prior, S: int, A: int, dtype, device) -> torch.Tensor:
    if action_prior is None:
        return torch.full((S, A), -float(np.log(A)), dtype=dtype, device=device)
    prior = torch.as_tensor(action_prior, dtype=dtype, device=device)
    if prior.shape == (A,):
        prior = prior.expand(S, A)
    if prior.shape != (S, A) or (prior < 0).any() or not torch.isfinite(prior).all():
        raise ValueError(f"`action_prior` must be (S, A) = {(S, A)} or (A,) probabilities")
    if ((prior.sum(-1) - 1).abs() > 1e-5).any():
        raise ValueError("`action_prior` rows must sum to 1")
    return torch.log(prior)


def soft_policy_gradient(
    env,
    guide,
    temperature: float = 1.0,
    discount: float = 1.0,
    *,
    steps: int = 200,
    episodes_per_step: int = 32,
    lr: float = 0.1,
    lr_final: float | None = None,
    baseline: str | None = "state",
    baseline_decay: float = 0.9,
    action_prior=None,
    guide_args: tuple = (),
    seed: int = 0,
    progress: bool = True,
    callback=None,
) -> SoftPolicyGradientResult:
    """Maximise a guide's ELBO from env rollouts: the entropy-regularised policy gradient.

    Each step plays ``episodes_per_step`` episodes of the guide against copies of ``env``
    (:func:`play_guide`), forms the soft returns-to-go Gₜ of cₜ = r/α + log p − log q
    (:func:`soft_returns_to_go`), subtracts the baseline and takes an Adam step along
    ``(1/N)·Σ Σₜ γᵗ·∇log qₜ(aₜ|sₜ)·(Gₜ − b)`` (:func:`score_function_surrogate`), an unbiased
    estimate of ∇ELBO_γ (module doc; Levine 2018, §4.2).

    Args:
        env: a gymnasium env or env id with Discrete observations and actions.
        guide: a guide with the model's signature whose ``a_t`` sites are Categorical over the
            env's actions (a family of :mod:`pgm_control.guides` built for a TabularMDP of the
            env's shape, e.g. ``StationaryGuide(TabularMDP.from_gymnasium(env, T))``).
        temperature: α > 0.
        discount: γ in (0, 1]; 1 is the finite-horizon ELBO of the control model.
        steps: optimiser steps.
        episodes_per_step: N episodes per gradient estimate.
        lr: Adam's learning rate at the first step.
        lr_final: the learning rate decays geometrically from ``lr`` to this at the last step
            (None: constant). A decaying rate lets the noisy estimate settle: with a
            constant one, Adam's steps of size ≈ lr keep the logits jittering.
        baseline: "state" (b(s), a running mean of past Gₜ at s), "time_state" (b(t, s)) or
            None. Built only from earlier batches, so it never biases the estimate.
        baseline_decay: weight of the old baseline in each running-mean update.
        action_prior: p(a|s) as (S, A) or (A,) probabilities; uniform if None.
        guide_args: positional arguments for the guide (default none: a library family uses
            its own MDP).
        seed: seeds the env resets and the guide's draws; the caller's RNGs are untouched.
        progress: show a tqdm bar.
        callback: ``callback(step, result_so_far)`` after each step; return True to stop.

    Returns:
        :class:`SoftPolicyGradientResult`.
    """
    env = make_env(env)
    for name, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, gym.spaces.Discrete):
            raise ValueError(
                f"`env` must have a Discrete {name} space for the tabular soft policy gradient, "
                f"got {space}"
            )
    if not callable(guide):
        raise TypeError(f"`guide` must be callable with the model's signature, got {guide!r}")
    if getattr(guide, "shares_dynamics", True) is False:
        raise ValueError(
            "`guide` learns its own dynamics (e.g. 'full_posterior'); from env samples only a "
            "guide that shares the true dynamics can be trained"
        )
    alpha = check_temperature(temperature)
    gamma = check_discount(discount)
    steps = check_positive_int("steps", steps)
    n = check_positive_int("episodes_per_step", episodes_per_step)
    lr = check_positive_float("lr", lr)
    lr_final = lr if lr_final is None else check_positive_float("lr_final", lr_final)
    if baseline not in _BASELINES:
        raise ValueError(f"`baseline` must be one of {_BASELINES}, got {baseline!r}")
    decay = float(baseline_decay)
    if not 0 <= decay < 1:
        raise ValueError(f"`baseline_decay` must lie in [0, 1), got {baseline_decay}")
    seed = check_int("seed", seed)
    callback = check_callable("callback", callback, "callback(step, result)")
    S, A = int(env.observation_space.n), int(env.action_space.n)
    envs = _env_copies(env, n)
    hyper = {
        "temperature": alpha, "discount": gamma, "steps": steps, "episodes_per_step": n,
        "lr": lr, "lr_final": lr_final, "baseline": baseline, "baseline_decay": decay, "seed": seed,
    }  # fmt: skip
    result = SoftPolicyGradientResult(guide, LearningHistory(), 0, 0, 0.0, hyper)
    start = time.perf_counter()
    with _local_rng(seed), _few_threads(True):
        reset_seeds = np.random.SeedSequence(seed).generate_state(n)
        params = _guide_parameters(
            guide, lambda: play_guide(envs[:1], guide, guide_args=guide_args)
        )
        if not params:
            raise ValueError("`guide` has no parameters to learn")
        dtype, device = params[0].dtype, params[0].device
        log_prior = _log_prior(action_prior, S, A, dtype, device)
        optimizer = torch.optim.Adam(params, lr=lr)
        ratio = (lr_final / lr) ** (1 / max(steps - 1, 1))
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, ratio)
        b = None
        bar = tqdm(range(steps), disable=not progress, desc="soft PG")
        try:
            for step in bar:
                seeds = [int(x) for x in reset_seeds] if step == 0 else None
                ep = play_guide(envs, guide, guide_args=guide_args, seeds=seeds, device=device)
                g = soft_returns_to_go(ep, log_prior, temperature=alpha, discount=gamma)
                b = _baseline_table(b, ep, g, baseline, S)
                surrogate = score_function_surrogate(
                    ep, g - _lookup(b, ep, baseline), discount=gamma
                )
                optimizer.zero_grad()
                (-surrogate).backward()
                optimizer.step()
                schedule.step()
                b = _update_baseline(b, ep, g, baseline, decay)
                _record(result, ep, g, step)
                bar.set_postfix(elbo=f"{g[:, 0].mean().item():.4g}", refresh=False)
                if callback is not None and callback(step, result):
                    break
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            bar.close()
    result.seconds = time.perf_counter() - start
    result.history.seconds = result.seconds
    result.history.interrupted = result.interrupted
    return result


def _baseline_table(b, ep, g, baseline, S):
    """The baseline table before this batch (created at the first batch's mean of G)."""
    if baseline is None or b is not None:
        return b
    shape = (S,) if baseline == "state" else (g.shape[1], S)
    m = ep.mask.bool()
    start = g[m].mean() if m.any() else g.new_zeros(())
    return torch.full(shape, float(start), dtype=g.dtype, device=g.device)


def _lookup(b, ep, baseline):
    if baseline is None:
        return torch.zeros_like(ep.rewards)
    s = ep.states[:, :-1]
    if baseline == "state":
        return b[s]
    b = _grow(b, s.shape[1])
    return b[torch.arange(s.shape[1], device=s.device)[None, :], s]


def _grow(b, L):
    if b.shape[0] >= L:
        return b
    extra = b[-1:].expand(L - b.shape[0], -1)
    return torch.cat([b, extra])


def _update_baseline(b, ep, g, baseline, decay):
    """Running mean of G per state (or per (t, s)) over the episodes of this batch."""
    if baseline is None:
        return b
    m = ep.mask.reshape(-1)
    s = ep.states[:, :-1].reshape(-1)
    if baseline == "time_state":
        b = _grow(b, g.shape[1])
        t = torch.arange(g.shape[1], device=g.device).expand_as(g).reshape(-1)
        s = t * b.shape[1] + s
    flat = b.reshape(-1)
    total = torch.zeros_like(flat).index_add_(0, s, m * g.reshape(-1))
    count = torch.zeros_like(flat).index_add_(0, s, m)
    seen = count > 0
    mean = total / count.clamp(min=1)
    flat = torch.where(seen, decay * flat + (1 - decay) * mean, flat)
    return flat.reshape(b.shape)


def _record(result, ep, g, step):
    hist = result.history
    lengths = ep.mask.sum(1)
    returns = ep.rewards.sum(1)
    end = result.env_steps
    for ret, length in zip(returns.tolist(), lengths.tolist()):
        end += int(length)
        hist.episode_returns.append(float(ret))
        hist.episode_lengths.append(int(length))
        hist.episode_end_steps.append(end)
    result.env_steps += ep.env_steps
    result.steps = step + 1
    hist.log("elbo", result.env_steps, g[:, 0].mean().item())
