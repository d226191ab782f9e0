"""The analytic ELBO of a structured guide that shares the true dynamics (Levine 2018, §4).

For q(τ) = p0(s₀)·Πₜ P(sₜ₊₁|sₜ,aₜ)·qₜ(aₜ|sₜ), the initial-state and dynamics factors of the
model and the guide cancel, leaving the maximum-entropy RL objective (the lecture's "line 5")::

    ELBO(q) = E_q[ Σₜ r(sₜ,aₜ,sₜ₊₁)/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ) ]
            = Σₜ Σ_s dₜ(s) Σ_a qₜ(a|s)·( r̄(s,a)/α + log p(a|s) − log qₜ(a|s) )

with dₜ the guide's state distribution under the true dynamics. It is computed exactly (no
sampling), differentiable in torch, and ``log_evidence − ELBO(q) = KL(q(τ) ‖ p(τ|O)) ≥ 0``.

:func:`trajectory_elbo` is the general form (the lecture's "line 3"): a guide that also learns
q(s₀) and qₜ(s'|s,a) keeps the initial-state and dynamics log-ratios, which no longer cancel;
its maximum over all three factors is log p(O). Every ELBO here is a view of that one
computation (``_elbo``), whose state distribution is :mod:`pgm_control.forward`'s recursion.
"""

from __future__ import annotations

import typing

import torch

from .backward import _step_weights, log_evidence
from .forward import _state_distribution
from .mdp import (
    TabularMDP,
    _check_mdp,
    _check_policy,
    _check_rows_normalised,
    _check_temperature,
    _safe_log,
)

__all__ = ["policy_elbo", "elbo_terms", "ElboTerms", "posterior_kl", "trajectory_elbo"]


class ElboTerms(typing.NamedTuple):
    """The pieces of the ELBO, in nats (divided by α where rewards appear).

    reward: E_q[Σ r]/α. entropy: Σₜ E[H(qₜ(·|sₜ))]. cross_entropy: E_q[Σ log p(aₜ|sₜ)]
    (exactly −T·log A under the default uniform prior). elbo = reward + entropy +
    cross_entropy for a guide that keeps the true p0 and P (line 5); a guide that learns
    q(s₀) or qₜ(s'|s,a) adds E_q[log p0/q(s₀) + Σₜ log P/qₜ] ≤ 0 to it (line 3).
    """

    reward: torch.Tensor
    entropy: torch.Tensor
    cross_entropy: torch.Tensor
    elbo: torch.Tensor


def _where_finite(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x where mask, else 0 — built so that −inf in x never turns into a NaN gradient."""
    return torch.where(mask, x, torch.zeros_like(x))


def _log_ratio_term(q, log_q, log_p):
    """E_q[log p − log q] = Σ q·(log p − log q), −inf where q > 0 = p; 0·log 0 = 0."""
    on = q > 0
    term = (q * (_where_finite(on, log_p) - _where_finite(on, log_q))).sum()
    forbidden = (on & torch.isinf(log_p)).any()
    return torch.where(forbidden, torch.full_like(term, -torch.inf), term)


def _elbo(mdp, pi, log_pi, alpha, w, q0=None, log_q0=None, qd=None, log_qd=None) -> ElboTerms:
    """The one ELBO (line 3), exact: every public ELBO routine is a view of this.

    ``pi``/``log_pi``: qₜ(a|s) and its log (any value where pi = 0), (T, S, A), in one dtype.
    ``q0``/``log_q0``: a learned q(s₀) (S,), or None for the true p0. ``qd``/``log_qd``: learned
    qₜ(s'|s,a) (T, S, A, S), or None for the true P (their log-ratios then cancel, line 5).
    """
    dtype = pi.dtype
    p0 = mdp.initial.to(dtype) if q0 is None else q0
    if qd is not None:
        kernel = qd
    elif mdp.is_sparse:
        kernel = mdp.dynamics.to(dtype)
    else:
        kernel = mdp.transition.to(dtype)
    d = _state_distribution(p0, pi, kernel)[:-1]  # dₜ(s), (T, S)
    occupancy = d[:, :, None] * pi  # (T, S, A): q(sₜ = s, aₜ = a)
    if qd is None:
        r_bar = mdp.expected_reward.to(dtype) / alpha  # Σ_s' P·r/α, [s, a]
        reward = (w[:, None, None] * occupancy * r_bar).sum()
    else:
        joint = occupancy[..., None] * qd  # q(sₜ, aₜ, sₜ₊₁), (T, S, A, S)
        r_scaled = mdp.reward.to(dtype) / alpha
        reward = (w[:, None, None, None] * joint * r_scaled).sum()
    # 0·log 0 = 0 without NaN gradients: the log only where q > 0
    entropy = -(occupancy * _where_finite(pi > 0, log_pi)).sum()
    log_prior = mdp.log_action_prior.to(dtype)
    cross = (occupancy * _where_finite(occupancy > 0, log_prior.expand_as(pi))).sum()
    if ((occupancy > 0) & torch.isinf(log_prior)).any():
        cross = cross - torch.inf  # the guide puts mass where the prior forbids: ELBO = -inf
    elbo = reward + entropy + cross
    if q0 is not None:  # E[log p0(s₀) − log q(s₀)]
        elbo = elbo + _log_ratio_term(q0, log_q0, mdp.log_initial.to(dtype))
    if qd is not None:  # Σₜ E[log P(sₜ₊₁|sₜ,aₜ) − log qₜ(sₜ₊₁|sₜ,aₜ)]
        elbo = elbo + _log_ratio_term(joint, log_qd, mdp.log_transition.to(dtype))
    return ElboTerms(reward, entropy, cross, elbo)


def _policy_pair(mdp, policy, log_policy):
    """(probabilities, logs) of a guide's policy given either way, (T, S, A) each."""
    if (policy is None) == (log_policy is None):
        raise TypeError("pass exactly one of `policy` (probabilities) or `log_policy`")
    if log_policy is not None:
        log_q = _check_policy(mdp, log_policy, "log_policy", log=True)
        return log_q.exp(), log_q
    q = _check_policy(mdp, policy, "policy")
    return q, _safe_log(q)


def elbo_terms(
    mdp: TabularMDP,
    policy: torch.Tensor | None = None,
    *,
    log_policy: torch.Tensor | None = None,
    temperature: float = 1.0,
    observed_steps=None,
) -> ElboTerms:
    """:func:`policy_elbo` split into the expected reward, the entropy and the prior term.

    Returns:
        :class:`ElboTerms` of scalars in the policy's dtype.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    pi, log_pi = _policy_pair(mdp, policy, log_policy)
    w = _step_weights(mdp, observed_steps).to(pi.dtype)
    return _elbo(mdp, pi, log_pi, alpha, w)


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
        observed_steps: condition only on these Oₜ, as in the model.

    Returns:
        A scalar tensor in the policy's dtype, differentiable with respect to the policy,
        ``mdp.reward`` and ``mdp.transition``. Its maximum over policies is
        :func:`optimal_elbo`, reached by the expected-backup soft-optimal policy;
        ``Σ_s p0(s)·V₀^π(s)/α`` of :func:`soft_policy_evaluation` is the same number.
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
    """KL(q(τ) ‖ p(τ|O)) = log p(O) − ELBO(q) ≥ 0 for the structured guide of ``policy``.

    Returns:
        A scalar in the policy's dtype.
    """
    elbo = policy_elbo(mdp, policy, log_policy=log_policy, temperature=temperature)
    return log_evidence(mdp, temperature=temperature).to(elbo.dtype) - elbo


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
    + log P(sₜ₊₁|sₜ,aₜ) − log qₜ(sₜ₊₁|sₜ,aₜ))]`` — the lecture's line 3 — computed by the
    occupancy recursion over the guide's own state distribution
    ``dₜ₊₁(s') = Σ_{s,a} dₜ(s)·qₜ(a|s)·qₜ(s'|s,a)`` (:func:`policy_state_distribution`).

    With ``log_initial`` and ``log_dynamics`` left as None, q uses the true p0 and P, their
    log-ratios cancel, and this is the structured ELBO of line 5, the same code and number as
    :func:`policy_elbo`. Maximised over all three factors it reaches :func:`log_evidence`.

    Args:
        mdp: the :class:`~pgm_control.TabularMDP` (the model's p0, P, p(a|s), r).
        log_policy: log qₜ(a|s), indexed as [t, s, a], shape (T, S, A) or stationary (S, A);
            rows must be normalised (``torch.log_softmax(logits, -1)``).
        log_initial: log q(s₀), shape (S,), normalised; None = the true p0.
        log_dynamics: log qₜ(s'|s,a), indexed as [t, s, a, s'], shape (T, S, A, S),
            normalised over s'; None = the true P.
        temperature: α > 0.
        observed_steps: condition only on these Oₜ, as in the model.

    Returns:
        A differentiable scalar in ``log_policy``'s dtype; −inf where q puts mass on something
        the model forbids.

    Raises:
        ValueError: a factor of the wrong shape, or whose rows are not normalised.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    log_pi = _check_policy(mdp, log_policy, "log_policy", log=True)
    shapes = {"log_initial": ((S,), "states"), "log_dynamics": ((T, S, A, S), "next states")}
    for name, x in zip(shapes, (log_initial, log_dynamics)):
        if x is None:
            continue
        shape, what = shapes[name]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch tensor, got {type(x).__name__}")
        if tuple(x.shape) != shape:
            raise ValueError(f"`{name}` must have shape {shape}, got {tuple(x.shape)}")
        if torch.isnan(x).any():
            raise ValueError(f"`{name}` contains NaN")
        with torch.no_grad():
            _check_rows_normalised(name, x, log=True, what=what)
    if log_dynamics is not None and mdp.is_sparse:
        raise TypeError(
            "`log_dynamics` as a dense (T, S, A, S) tensor needs a dense `mdp`; this MDP is "
            "sparse (use `mdp.to_dense()` if it is small)"
        )
    w = _step_weights(mdp, observed_steps).to(log_pi.dtype)
    q0 = None if log_initial is None else log_initial.exp()
    qd = None if log_dynamics is None else log_dynamics.exp()
    return _elbo(mdp, log_pi.exp(), log_pi, alpha, w, q0, log_initial, qd, log_dynamics).elbo
