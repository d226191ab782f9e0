"""The analytic ELBO of a structured guide that shares the true dynamics (Levine 2018, §4).

For q(τ) = p0(s₀)·Πₜ P(sₜ₊₁|sₜ,aₜ)·qₜ(aₜ|sₜ), the initial-state and dynamics factors of the
model and the guide cancel, leaving the maximum-entropy RL objective (the lecture's "line 5")::

    ELBO(q) = E_q[ Σₜ r(sₜ,aₜ,sₜ₊₁)/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ) ]
            = Σₜ Σ_s dₜ(s) Σ_a qₜ(a|s)·( r̄(s,a)/α + log p(a|s) − log qₜ(a|s) )

with dₜ the guide's state distribution under the true dynamics. It is computed exactly (no
sampling), differentiable in torch, and ``log_evidence − ELBO(q) = KL(q(τ) ‖ p(τ|O)) ≥ 0``.
"""

from __future__ import annotations

import typing

import torch

from .backward import _step_weights, log_evidence
from .forward import _state_distribution
from .mdp import TabularMDP, _check_mdp, _check_policy, _check_temperature

__all__ = ["policy_elbo", "elbo_terms", "ElboTerms", "posterior_kl"]


class ElboTerms(typing.NamedTuple):
    """The pieces of the structured ELBO, in nats (divided by α where rewards appear).

    reward: E_q[Σ r]/α. entropy: Σₜ E[H(qₜ(·|sₜ))]. cross_entropy: E_q[Σ log p(aₜ|sₜ)]
    (exactly −T·log A under the default uniform prior). elbo = reward + entropy +
    cross_entropy.
    """

    reward: torch.Tensor
    entropy: torch.Tensor
    cross_entropy: torch.Tensor
    elbo: torch.Tensor


def elbo_terms(
    mdp: TabularMDP,
    policy: torch.Tensor | None = None,
    *,
    log_policy: torch.Tensor | None = None,
    temperature: float = 1.0,
    observed_steps=None,
) -> ElboTerms:
    """:func:`policy_elbo` split into the expected reward, the entropy and the prior term."""
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    if (policy is None) == (log_policy is None):
        raise TypeError("pass exactly one of `policy` (probabilities) or `log_policy`")
    if log_policy is not None:
        log_q = _check_policy(mdp, log_policy, "log_policy", log=True)
        q = log_q.exp()
        log_q_safe = torch.where(q > 0, log_q, torch.zeros_like(log_q))
    else:
        q = _check_policy(mdp, policy, "policy")
        # 0·log 0 = 0 without NaN gradients: take the log only where q > 0
        log_q_safe = torch.log(torch.where(q > 0, q, torch.ones_like(q)))
    w = _step_weights(mdp, observed_steps).to(q.dtype)
    d = _state_distribution(mdp, q)[:-1]  # (T, S)
    occupancy = d[:, :, None] * q  # (T, S, A): q(sₜ = s, aₜ = a)
    r_bar = mdp.expected_reward.to(q.dtype) / alpha
    reward = (w[:, None, None] * occupancy * r_bar).sum()
    entropy = -(occupancy * log_q_safe).sum()
    log_prior = mdp.log_action_prior.to(q.dtype)
    prior_safe = torch.where(occupancy > 0, log_prior.expand_as(q), torch.zeros_like(q))
    cross = (occupancy * prior_safe).sum()
    if ((occupancy > 0) & torch.isinf(log_prior)).any():
        cross = cross - torch.inf  # the guide puts mass where the prior forbids: ELBO = -inf
    return ElboTerms(reward, entropy, cross, reward + entropy + cross)


def policy_elbo(
    mdp: TabularMDP,
    policy: torch.Tensor | None = None,
    *,
    log_policy: torch.Tensor | None = None,
    temperature: float = 1.0,
    observed_steps=None,
) -> torch.Tensor:
    """Exact ELBO of the guide q(τ) = p0·Π P(s'|s,a)·qₜ(a|s) (Levine 2018, §4, eq. "line 5").

    ``ELBO = Σₜ E_{dₜ}[ Σ_a qₜ(a|s)·(r̄(s,a)/α + log p(a|s) − log qₜ(a|s)) ]`` in nats.

    Args:
        mdp: the :class:`TabularMDP`.
        policy: qₜ(a|s) probabilities, (T, S, A) or stationary (S, A).
        log_policy: alternatively log-probabilities (e.g. ``log_softmax(logits)``), which keeps
            gradients finite at the boundary.
        temperature: α > 0.

    Returns:
        A scalar tensor, differentiable with respect to the policy. Its maximum over policies is
        :func:`optimal_elbo`, reached by the expected-backup soft-optimal policy.
    """
    return elbo_terms(
        mdp, policy, log_policy=log_policy, temperature=temperature, observed_steps=observed_steps
    ).elbo


def posterior_kl(
    mdp: TabularMDP,
    policy: torch.Tensor | None = None,
    *,
    log_policy: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """KL(q(τ) ‖ p(τ|O)) = log p(O) − ELBO(q) ≥ 0 for the structured guide of ``policy``."""
    elbo = policy_elbo(mdp, policy, log_policy=log_policy, temperature=temperature)
    return log_evidence(mdp, temperature=temperature).to(elbo.dtype) - elbo
