"""The analytic ELBO of a structured guide that shares the true dynamics (Levine 2018, §4).

For q(τ) = p0(s₀)·Πₜ P(sₜ₊₁|sₜ,aₜ)·qₜ(aₜ|sₜ), the initial-state and dynamics factors of the
model and the guide cancel, leaving the maximum-entropy RL objective (the lecture's "line 5")::

    ELBO(q) = E_q[ Σₜ r(sₜ,aₜ,sₜ₊₁)/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ) ]
            = Σₜ Σ_s dₜ(s) Σ_a qₜ(a|s)·( r̄(s,a)/α + log p(a|s) − log qₜ(a|s) )

with dₜ the guide's state distribution under the true dynamics. It is computed exactly (no
sampling), differentiable in torch, and ``log_evidence − ELBO(q) = KL(q(τ) ‖ p(τ|O)) ≥ 0``.

:func:`trajectory_elbo` is the general form (the lecture's "line 3"): a guide that also learns
q(s₀) and qₜ(s'|s,a) keeps the initial-state and dynamics log-ratios, which no longer cancel;
its maximum over all three factors is log p(O).
"""

from __future__ import annotations

import typing

import torch

from .backward import _step_weights, log_evidence
from .forward import _state_distribution
from .mdp import TabularMDP, _check_mdp, _check_policy, _check_temperature

__all__ = ["policy_elbo", "elbo_terms", "ElboTerms", "posterior_kl", "trajectory_elbo"]


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


def _where_finite(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x where mask, else 0 — built so that −inf in x never turns into a NaN gradient."""
    return torch.where(mask, x, torch.zeros_like(x))


def trajectory_elbo(
    mdp: TabularMDP,
    log_policy: torch.Tensor,
    *,
    log_initial: torch.Tensor | None = None,
    log_dynamics: torch.Tensor | None = None,
    temperature: float = 1.0,
    observed_steps=None,
) -> torch.Tensor:
    """Exact ELBO of q(τ) = q(s₀)·Πₜ qₜ(aₜ|sₜ)·qₜ(sₜ₊₁|sₜ,aₜ) for the optimality model.

    ``ELBO = E_q[log p0(s₀) − log q(s₀) + Σₜ (r(sₜ,aₜ,sₜ₊₁)/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ)
    + log P(sₜ₊₁|sₜ,aₜ) − log qₜ(sₜ₊₁|sₜ,aₜ))]`` — the lecture's line 3 — computed by a forward
    recursion over the guide's own state distribution
    ``dₜ₊₁(s') = Σ_{s,a} dₜ(s)·qₜ(a|s)·qₜ(s'|s,a)``.

    With ``log_initial`` and ``log_dynamics`` left as None, q uses the true p0 and P, their
    log-ratios cancel, and this is the structured ELBO of line 5 (what
    :func:`pgm_control.policy_elbo` computes by its own code). Maximised over all three factors
    it reaches :func:`pgm_control.log_evidence`.

    Args:
        mdp: the :class:`~pgm_control.TabularMDP` (the model's p0, P, p(a|s), r).
        log_policy: log qₜ(a|s), indexed as [t, s, a], shape (T, S, A).
        log_initial: log q(s₀), shape (S,); None = the true p0.
        log_dynamics: log qₜ(s'|s,a), indexed as [t, s, a, s'], shape (T, S, A, S);
            None = the true P.
        temperature: α > 0.
        observed_steps: condition only on these Oₜ, as in the model.

    Returns:
        A differentiable scalar; −inf where q puts mass on something the model forbids.
    """
    alpha = _check_temperature(temperature)
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    shapes = {"log_policy": (T, S, A), "log_initial": (S,), "log_dynamics": (T, S, A, S)}
    for name, x in zip(shapes, (log_policy, log_initial, log_dynamics)):
        if x is not None and tuple(x.shape) != shapes[name]:
            raise ValueError(f"`{name}` must have shape {shapes[name]}, got {tuple(x.shape)}")
    w = _step_weights(mdp, observed_steps).to(log_policy.dtype)
    r_scaled = mdp.reward.to(log_policy.dtype) / alpha  # indexed as r[s, a, s']
    log_p0, log_prior, log_P = mdp.log_initial, mdp.log_action_prior, mdp.log_transition
    P_flat = mdp.transition.reshape(S * A, S)
    pi = log_policy.exp()

    elbo = log_policy.new_zeros(())
    forbidden = torch.zeros((), dtype=torch.bool, device=log_policy.device)
    if log_initial is None:
        d = [mdp.initial.to(log_policy.dtype)]
    else:
        q0 = log_initial.exp()
        on = q0 > 0
        forbidden = forbidden | (on & torch.isinf(log_p0)).any()
        elbo = elbo + (q0 * (_where_finite(on, log_p0) - _where_finite(on, log_initial))).sum()
        d = [q0]
    for t in range(T):
        occupancy = d[t][:, None] * pi[t]  # q(sₜ = s, aₜ = a), indexed [s, a]
        if log_dynamics is None:
            d.append(occupancy.reshape(-1) @ P_flat)
        else:
            joint = occupancy[:, :, None] * log_dynamics[t].exp()  # q(sₜ, aₜ, sₜ₊₁)
            on = joint > 0
            forbidden = forbidden | (on & torch.isinf(log_P)).any()
            dyn = _where_finite(on, log_P) - _where_finite(on, log_dynamics[t])
            elbo = elbo + (joint * (w[t] * r_scaled + dyn)).sum()
            d.append(joint.sum((0, 1)))
    # the action terms, for all t at once: Σ dₜ(s)·qₜ(a|s)·(log p(a|s) − log qₜ(a|s) [+ r̄/α])
    occupancy = torch.stack(d[:-1])[:, :, None] * pi  # indexed [t, s, a]
    on = occupancy > 0
    forbidden = forbidden | (on & torch.isinf(log_prior)).any()
    per_action = _where_finite(on, log_prior.expand_as(pi)) - _where_finite(on, log_policy)
    if log_dynamics is None:
        r_bar = mdp.expected_reward.to(log_policy.dtype) / alpha  # Σ_s' P·r/α, [s, a]
        per_action = per_action + w[:, None, None] * r_bar
    elbo = elbo + (occupancy * per_action).sum()
    return torch.where(forbidden, torch.full_like(elbo, -torch.inf), elbo)
