"""Sampling whole trajectories, vectorised over particles (a loop over time only).

* :func:`sample_posterior_trajectories` draws τ ~ p(τ | O) exactly: s₀ ~ p(s₀|O),
  aₜ ~ πₜ(a|s) (optimistic backup) and sₜ₊₁ ~ p(s'|s,a,O), the *posterior* dynamics. Counting
  how often these samples hit lucky outcomes shows the optimism of exact inference.
* :func:`sample_trajectories` rolls a given policy out in the *true* dynamics.
"""

from __future__ import annotations

import typing

import torch

from .backward import _backward, _step_weights
from .mdp import TabularMDP, _check_mdp, _check_policy, _check_temperature
from .validation import check_int, check_positive_int

__all__ = ["Trajectories", "sample_posterior_trajectories", "sample_trajectories"]


class Trajectories(typing.NamedTuple):
    """A batch of N trajectories: states (N, T+1), actions (N, T), rewards (N, T) = r(s,a,s')."""

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor

    @property
    def returns(self) -> torch.Tensor:
        """Σₜ r, shape (N,)."""
        return self.rewards.sum(-1)


def _draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One categorical draw per row of ``logits`` (-inf allowed), with an explicit generator."""
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _generator(mdp, seed):
    """A local generator, so that sampling never touches the caller's global torch RNG."""
    return torch.Generator(device=mdp.device).manual_seed(check_int("seed", seed))


def sample_posterior_trajectories(
    mdp: TabularMDP,
    num_samples: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    observed_steps=None,
) -> Trajectories:
    """Exact samples τ ~ p(τ | O) ∝ p(τ)·exp(Σₜ r/α), vectorised over ``num_samples``.

    Uses the backward messages: p(s₀|O) ∝ p0·exp(V₀/α), πₜ(a|s) ∝ p(a|s)·exp(Qₜ/α) and the
    posterior dynamics p(s'|s,a,O) ∝ P(s'|s,a)·exp((r + Vₜ₊₁)/α) (Levine 2018, §2.4–2.6).

    Args:
        mdp: a :class:`TabularMDP`.
        num_samples: N ≥ 1 (a Python or numpy int).
        temperature: α > 0.
        seed: seeds a local ``torch.Generator``; the global RNG is left untouched.
        observed_steps: condition only on these Oₜ, as in the model.

    Returns:
        :class:`Trajectories`: states (N, T+1) and actions (N, T) as int64, rewards (N, T) in
        the MDP's dtype (detached: sampling is not differentiable).
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    num_samples = check_positive_int("num_samples", num_samples)
    g = _generator(mdp, seed)
    w = _step_weights(mdp, observed_steps)
    with torch.no_grad():  # draws are discrete: nothing to differentiate
        q, v = _backward(mdp, alpha, "optimistic", observed_steps)
    log_prior = mdp.log_action_prior
    N, T = num_samples, mdp.horizon
    states = torch.empty(N, T + 1, dtype=torch.long, device=mdp.device)
    actions = torch.empty(N, T, dtype=torch.long, device=mdp.device)
    states[:, 0] = _draw((mdp.log_initial + v[0]).expand(N, -1), g)
    if mdp.is_sparse:  # draw the successor slot k, then look its state up
        dyn = mdp.dynamics
        log_p, r, nxt = dyn.log_transition, dyn.reward.detach(), dyn.next_state
        rewards = torch.empty(N, T, dtype=mdp.float_dtype, device=mdp.device)
        for t in range(T):
            s = states[:, t]
            actions[:, t] = a = _draw(log_prior[s] + q[t, s], g)
            logits = log_p[:, s, a] + w[t] * r[:, s, a] / alpha + v[t + 1][nxt[:, s, a]]
            k = _draw(logits.T, g)
            states[:, t + 1] = nxt[k, s, a]
            rewards[:, t] = r[k, s, a]
        return Trajectories(states, actions, rewards)
    log_p, r = mdp.log_transition, mdp.reward.detach()
    for t in range(T):
        s = states[:, t]
        actions[:, t] = a = _draw(log_prior[s] + q[t, s], g)
        states[:, t + 1] = _draw(log_p[s, a] + w[t] * r[s, a] / alpha + v[t + 1], g)
    rewards = r[states[:, :-1], actions, states[:, 1:]]
    return Trajectories(states, actions, rewards)


def sample_trajectories(
    mdp: TabularMDP, policy: torch.Tensor, num_samples: int, *, seed: int = 0
) -> Trajectories:
    """Roll ``policy`` ((T,S,A) or (S,A) probabilities) out in the true dynamics P.

    ``num_samples`` is N ≥ 1 (a Python or numpy int); ``seed`` seeds a local generator.
    Returns :class:`Trajectories` with int64 states/actions and rewards in the MDP's dtype.
    """
    mdp = _check_mdp(mdp)
    pi = _check_policy(mdp, policy, "policy").detach()
    num_samples = check_positive_int("num_samples", num_samples)
    g = _generator(mdp, seed)
    N, T = num_samples, mdp.horizon
    log_pi = torch.log(pi)
    states = torch.empty(N, T + 1, dtype=torch.long, device=mdp.device)
    actions = torch.empty(N, T, dtype=torch.long, device=mdp.device)
    states[:, 0] = _draw(mdp.log_initial.expand(N, -1), g)
    if mdp.is_sparse:
        dyn = mdp.dynamics
        rewards = torch.empty(N, T, dtype=mdp.float_dtype, device=mdp.device)
        for t in range(T):
            s = states[:, t]
            actions[:, t] = a = _draw(log_pi[t, s], g)
            k = _draw(dyn.log_transition[:, s, a].T, g)
            states[:, t + 1] = dyn.next_state[k, s, a]
            rewards[:, t] = dyn.reward.detach()[k, s, a]
        return Trajectories(states, actions, rewards)
    log_p = mdp.log_transition
    for t in range(T):
        s = states[:, t]
        actions[:, t] = a = _draw(log_pi[t, s], g)
        states[:, t + 1] = _draw(log_p[s, a], g)
    rewards = mdp.reward.detach()[states[:, :-1], actions, states[:, 1:]]
    return Trajectories(states, actions, rewards)
