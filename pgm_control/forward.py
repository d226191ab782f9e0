"""Forward messages and posterior marginals of the optimality PGM (Levine 2018, §2.5–2.6).

Forward message, in log space (α₀ = p0)::

    αₜ₊₁(s') = p(sₜ₊₁ = s', O_{0:t}) = Σ_{s,a} αₜ(s)·p(a|s)·P(s'|s,a)·exp(r(s,a,s')/α)

Combined with the backward message βₜ(s) = exp(Vₜ(s)/α) (optimistic backup)::

    p(sₜ | O) = αₜ(s)·βₜ(s) / p(O)          p(sₜ, aₜ | O) = p(sₜ | O)·πₜ(aₜ|sₜ)

and the posterior dynamics — where the optimism lives —
``p(s'|s,a,O) = P(s'|s,a)·exp((r(s,a,s') + Vₜ₊₁(s'))/α − Qₜ(s,a)/α)``.

Also here: the state distribution a *given* policy induces (the occupancy recursion
dₜ₊₁ = Σ dₜ·π·P, written once, in ``_state_distribution``), which every ELBO needs.

Every routine returns the MDP's dtype (``policy_state_distribution``: the policy's) and is
differentiable in ``mdp.reward`` and ``mdp.transition``; see :mod:`pgm_control.backward` for
the float32 accuracy bound.
"""

from __future__ import annotations

import torch

from .backward import _backward, _step_weights
from .dynamics import SparseDynamics
from .mdp import (
    TabularMDP,
    _check_mdp,
    _check_policy,
    _check_rows_normalised,
    _check_temperature,
)

__all__ = [
    "log_forward_messages",
    "state_marginals",
    "state_action_marginals",
    "posterior_dynamics",
    "policy_state_distribution",
]


def log_forward_messages(
    mdp: TabularMDP, *, temperature: float = 1.0, observed_steps=None
) -> torch.Tensor:
    """log αₜ(s) = log p(sₜ = s, O_{0:t-1}), indexed as [t, s], shape (T + 1, S).

    ``logsumexp(log_alpha[T])`` equals :func:`log_evidence` — an independent route to it.
    In the MDP's dtype; differentiable in ``mdp.reward`` and ``mdp.transition``.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    w = _step_weights(mdp, observed_steps)
    dyn, log_prior = mdp.dynamics, mdp.log_action_prior
    r_scaled = dyn.reward / alpha  # the reward depends on w[t]: scaled per step below
    log_a_t = mdp.log_initial
    log_a = [log_a_t]  # indexed as log_a[t][s]
    for t in range(mdp.horizon):
        log_a_t = dyn.push_log(log_a_t, log_prior, w[t] * r_scaled)
        log_a.append(log_a_t)
    return torch.stack(log_a)


def _log_state_posterior(mdp, alpha, observed_steps, v_scaled=None):
    if v_scaled is None:
        _, v_scaled = _backward(mdp, alpha, "optimistic", observed_steps, keep_q=False)
    log_a = log_forward_messages(mdp, temperature=alpha, observed_steps=observed_steps)
    log_joint = log_a + v_scaled  # log αₜ + log βₜ, (T+1, S)
    log_z = torch.logsumexp(log_joint[0], dim=0)
    return log_joint - log_z


def state_marginals(
    mdp: TabularMDP, *, temperature: float = 1.0, observed_steps=None, include_final: bool = False
) -> torch.Tensor:
    """Posterior state marginals p(sₜ | O) ∝ αₜ(s)·βₜ(s), indexed as [t, s].

    Returns shape (T, S) for the decision times t = 0..T-1, or (T + 1, S) with the final
    state s_T when ``include_final=True``. Each row sums to 1. In the MDP's dtype;
    differentiable in ``mdp.reward`` and ``mdp.transition``.

    αₜ and βₜ are products over many steps, so log αₜ + log βₜ carries the magnitude of
    T·max|r|/α: in float32 a marginal is accurate to ≈ T·eps·max(|V/α|, |log αₜ|) in log
    space, i.e. useless once that reaches ~0.1 (e.g. T = 1000 at α = 1e-3); use float64 there.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    m = torch.exp(_log_state_posterior(mdp, alpha, observed_steps))
    return m if include_final else m[:-1]


def state_action_marginals(
    mdp: TabularMDP, *, temperature: float = 1.0, observed_steps=None
) -> torch.Tensor:
    """Posterior p(sₜ, aₜ | O) = p(sₜ | O)·πₜ(aₜ|sₜ), indexed as [t, s, a], shape (T, S, A).

    In the MDP's dtype; differentiable in ``mdp.reward`` and ``mdp.transition``.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    q_scaled, v_scaled = _backward(mdp, alpha, "optimistic", observed_steps)
    log_ps = _log_state_posterior(mdp, alpha, observed_steps, v_scaled)[:-1]
    log_pi = mdp.log_action_prior + q_scaled - v_scaled[:-1, :, None]
    return torch.exp(log_ps[:, :, None] + log_pi)


def posterior_dynamics(
    mdp: TabularMDP, *, temperature: float = 1.0, observed_steps=None
) -> torch.Tensor:
    """p(sₜ₊₁ = s' | sₜ = s, aₜ = a, O), indexed as [t, s, a, s'], shape (T, S, A, S).

    ∝ P(s'|s,a)·exp((r(s,a,s') + Vₜ₊₁(s'))/α): the exact posterior tilts the dynamics toward
    lucky outcomes. Compare with ``mdp.transition`` to see the optimism (Levine 2018, §4.1).
    On a sparse MDP the result is a sparse COO tensor on P's support (T·nnz values).
    In the MDP's dtype; differentiable in ``mdp.reward`` and ``mdp.transition``.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    w = _step_weights(mdp, observed_steps)
    q_scaled, v_scaled = _backward(mdp, alpha, "optimistic", observed_steps)
    if mdp.is_sparse:
        return _sparse_posterior_dynamics(mdp, alpha, w, q_scaled, v_scaled)
    logits = (
        mdp.log_transition
        + w[:, None, None, None] * (mdp.reward / alpha)
        + v_scaled[1:, None, None, :]
    )
    return torch.exp(logits - q_scaled[..., None])


def _sparse_posterior_dynamics(mdp, alpha, w, q_scaled, v_scaled) -> torch.Tensor:
    """The posterior dynamics on P's support, as a sparse COO tensor (T, S, A, S)."""
    dyn = mdp.dynamics
    k, s, a = dyn.valid.nonzero(as_tuple=True)  # the non-zeros of P, in slot order
    s_next = dyn.next_state[k, s, a]
    r_scaled = dyn.reward[k, s, a] / alpha
    log_p = dyn.log_transition[k, s, a]
    T, n = mdp.horizon, s.numel()
    logits = log_p + w[:, None] * r_scaled + v_scaled[1:, s_next] - q_scaled[:, s, a]  # (T, n)
    t = torch.arange(T, device=mdp.device).repeat_interleave(n)
    indices = torch.stack([t, s.repeat(T), a.repeat(T), s_next.repeat(T)])
    shape = (T, mdp.num_states, mdp.num_actions, mdp.num_states)
    return torch.sparse_coo_tensor(
        indices, torch.exp(logits).reshape(-1), shape, check_invariants=False
    ).coalesce()


def policy_state_distribution(
    mdp: TabularMDP,
    policy: torch.Tensor,
    *,
    initial: torch.Tensor | None = None,
    dynamics: torch.Tensor | None = None,
) -> torch.Tensor:
    """dₜ(s) = q(sₜ = s) when acting with ``policy``, indexed [t, s], shape (T + 1, S).

    ``d₀ = p0``, ``dₜ₊₁(s') = Σ_{s,a} dₜ(s)·πₜ(a|s)·P(s'|s,a)`` — the occupancy recursion of
    the lecture's ELBO (Levine 2018, §4), in the policy's dtype. Differentiable in the policy,
    ``mdp.transition`` and ``mdp.initial``.

    Args:
        mdp: a :class:`TabularMDP` (its p0 and P are used unless replaced below).
        policy: πₜ(a|s) probabilities, (T, S, A) or stationary (S, A).
        initial: q(s₀) probabilities (S,) to start from instead of p0, e.g. a guide's learned
            initial distribution; None = ``mdp.initial``.
        dynamics: qₜ(s'|s,a) probabilities to move by instead of P, indexed [t, s, a, s'],
            (T, S, A, S), or stationary (S, A, S); None = ``mdp.transition``.

    Returns:
        d, shape (T + 1, S), each row summing to 1.
    """
    mdp = _check_mdp(mdp)
    pi = _check_policy(mdp, policy, "policy")
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    if initial is None:
        initial = mdp.initial
    else:
        initial = _check_probabilities("initial", initial, (S,), mdp, "states")
    if dynamics is None:
        dynamics = mdp.dynamics.to(pi.dtype) if mdp.is_sparse else mdp.transition
    elif tuple(dynamics.shape) == (S, A, S):
        dynamics = _check_probabilities("dynamics", dynamics, (S, A, S), mdp, "next states")
    else:
        dynamics = _check_probabilities("dynamics", dynamics, (T, S, A, S), mdp, "next states")
    return _state_distribution(initial.to(pi.dtype), pi, dynamics.to(dtype=pi.dtype))


def _check_probabilities(name, x, shape, mdp, what):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch tensor of shape {shape}, got {type(x).__name__}")
    if tuple(x.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {tuple(x.shape)}")
    x = x.to(mdp.device)
    with torch.no_grad():
        if torch.isnan(x).any() or (x < 0).any():
            raise ValueError(f"`{name}` must hold probabilities (no NaN, no negatives)")
        _check_rows_normalised(name, x, log=False, what=what)
    return x


def _state_distribution(
    initial: torch.Tensor, pi: torch.Tensor, kernel: torch.Tensor
) -> torch.Tensor:
    """The occupancy recursion, unchecked: the one copy every module uses.

    Args:
        initial: d₀, shape (S,).
        pi: πₜ(a|s), shape (T, S, A).
        kernel: the dynamics, (S, A, S) shared by every step or (T, S, A, S) per step, or
            the :class:`~pgm_control.dynamics.SparseDynamics` of a sparse MDP.

    Returns:
        d indexed [t, s], shape (T + 1, S): dₜ₊₁(s') = Σ_{s,a} dₜ(s)·πₜ(a|s)·kernel(s'|s,a).
    """
    T, S, A = pi.shape
    pi_t = pi.unbind(0)  # one op for all T rows instead of an indexing op per step
    if isinstance(kernel, SparseDynamics):
        d = [initial]
        for t in range(T):
            d.append(kernel.push(d[t][:, None] * pi_t[t]))  # Σ_{s,a} dₜ·πₜ·P over the non-zeros
        return torch.stack(d)
    shared = kernel.reshape(S * A, S) if kernel.ndim == 3 else None
    # rows (1, S): dₜ·πₜ flattened to (1, S·A) times P as (S·A, S') is the mm that
    # `(S·A,) @ (S·A, S')` dispatches to, with three fewer calls per step
    d = [initial.view(1, S)]
    for t in range(T):
        k_t = shared if shared is not None else kernel[t].reshape(S * A, S)
        d.append(torch.mm((d[t].view(S, 1) * pi_t[t]).reshape(1, S * A), k_t))  # Σ_{s,a} dₜ·πₜ·P
    return torch.cat(d)
