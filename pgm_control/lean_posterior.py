"""Exact inference in O(S·T + nnz) memory: log p(O), Vₜ, state marginals, one step's policy.

:func:`soft_value_iteration` returns Q and π for every step, (T, S, A) tensors that a
million-state MDP cannot afford (3.2 GB each at S = 10⁶, A = 4, T = 100 in float64). Here only
the backward values Vₜ (T + 1, S) and the forward messages are stored; Qₜ is recomputed from
Vₜ₊₁ (one backup step, :class:`pgm_control.backward._QStep`) for the one step whose policy is
asked for. Dense or sparse dynamics alike (Levine 2018, §2.3–2.6)::

    log p(O) = log Σ_s p0(s)·exp(V₀(s)/α)
    p(sₜ | O) ∝ αₜ(s)·exp(Vₜ(s)/α)
    πₜ(a|s)  = p(a|s)·exp((Qₜ(s,a) − Vₜ(s))/α),  Qₜ from Vₜ₊₁
"""

from __future__ import annotations

import typing

import torch

from .backward import _backward, _QStep, _step_weights
from .mdp import TabularMDP, _check_mdp, _check_temperature
from .validation import check_int

__all__ = ["LeanPosterior", "lean_posterior", "soft_policy_at"]


class LeanPosterior(typing.NamedTuple):
    """Result of :func:`lean_posterior` (all in the MDP's dtype).

    Attributes:
        log_evidence: log p(O), a scalar.
        values: Vₜ(s) in reward units, indexed [t, s], shape (T + 1, S); V₀ = ``values[0]``.
        state_marginals: p(sₜ | O), indexed [t, s], shape (T + 1, S) (t = T included).
        temperature: α.
    """

    log_evidence: torch.Tensor
    values: torch.Tensor
    state_marginals: torch.Tensor
    temperature: float


def lean_posterior(
    mdp: TabularMDP, *, temperature: float = 1.0, observed_steps=None
) -> LeanPosterior:
    """log p(O), the values Vₜ and the state marginals p(sₜ|O), without any (T, S, A) tensor.

    One backward pass (optimistic backup, values only) and one forward pass along the
    posterior chain p(sₜ₊₁|O) = Σ_{s,a} p(sₜ|O)·πₜ(a|s)·p(s'|s,a,O), each Qₜ and p(s'|s,a,O)
    recomputed from Vₜ₊₁: peak memory ≈ 2·(T + 1)·S floats plus O(nnz) per step; time ∝ T·nnz
    on sparse dynamics.
    The same numbers as :func:`log_evidence`, :func:`soft_value_iteration` ``.v`` and
    :func:`state_marginals` (``include_final=True``); differentiable like them.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    w = _step_weights(mdp, observed_steps)
    _, v_scaled = _backward(mdp, alpha, "optimistic", observed_steps, keep_q=False)
    log_z = torch.logsumexp(mdp.log_initial + v_scaled[0], dim=0)
    # forward along the posterior chain: p(sₜ₊₁|O) = Σ p(sₜ|O)·πₜ(a|s)·p(s'|s,a,O), with Qₜ
    # and the posterior dynamics recomputed from Vₜ₊₁ (probabilities: nothing to rescale)
    step = _QStep(mdp, alpha, "optimistic", w)
    dyn, log_prior = mdp.dynamics, mdp.log_action_prior
    m_t = torch.exp(mdp.log_initial + v_scaled[0] - log_z)
    marginals = [m_t]
    for t in range(mdp.horizon):
        tilted = step.kernels[w[t].item()]
        q_t, share = dyn.posterior_step(tilted, w[t] * step.r_scaled, v_scaled[t + 1])
        pi_t = torch.exp(log_prior + q_t - v_scaled[t][:, None])
        m_t = dyn.push_with(m_t[:, None] * pi_t, share)
        marginals.append(m_t)
    return LeanPosterior(log_z, alpha * v_scaled, torch.stack(marginals), alpha)


def soft_policy_at(
    mdp: TabularMDP,
    values: torch.Tensor,
    t: int,
    *,
    temperature: float = 1.0,
    backup: str = "optimistic",
    observed_steps=None,
) -> torch.Tensor:
    """πₜ(a|s) of one step from the stored values: Qₜ is recomputed from Vₜ₊₁ (one backup).

    Args:
        mdp: the :class:`~pgm_control.TabularMDP` the values belong to.
        values: Vₜ(s) in reward units, (T + 1, S), e.g. ``lean_posterior(...).values`` or
            ``soft_value_iteration(...).v``, computed with the same temperature, backup and
            observed steps.
        t: the decision step, 0 ≤ t < T.
        temperature, backup, observed_steps: as for :func:`soft_value_iteration`.

    Returns:
        πₜ, shape (S, A), rows summing to 1; equal to ``soft_value_iteration(...).policy[t]``.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    T, S = mdp.horizon, mdp.num_states
    t = check_int("t", t)
    if not 0 <= t < T:
        raise ValueError(f"`t` must be a decision step in [0, T) = [0, {T}), got {t}")
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != (T + 1, S):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
        raise ValueError(
            f"`values` must be a tensor of shape (T + 1, S) = {(T + 1, S)}, got {shape}"
        )
    w = _step_weights(mdp, observed_steps)
    step = _QStep(mdp, alpha, backup, w)
    v_scaled = values.to(mdp.float_dtype) / alpha
    q_t = step(t, v_scaled[t + 1])
    return torch.exp(mdp.log_action_prior + q_t - v_scaled[t][:, None])
