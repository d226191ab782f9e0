"""Backward messages: soft Q and V by dynamic programming (Levine 2018, §2.3–2.4, §3).

With temperature α, action prior p(a|s) and V_T ≡ 0, for t = T-1 … 0::

    optimistic (exact posterior):  Qₜ(s,a) = α·log Σ_s' P(s'|s,a)·exp((r(s,a,s') + Vₜ₊₁(s'))/α)
    expected   (structured VI):    Qₜ(s,a) = Σ_s' P(s'|s,a)·(r(s,a,s') + Vₜ₊₁(s'))
    both:                          Vₜ(s)   = α·log Σ_a p(a|s)·exp(Qₜ(s,a)/α)
                                   πₜ(a|s) = p(a|s)·exp((Qₜ(s,a) − Vₜ(s))/α)

The optimistic recursion is the log of the backward message βₜ(s) = p(O_{t:T-1} | sₜ), so
log p(O) = log Σ p0(s)·exp(V₀(s)/α). The expected recursion is what a variational posterior
that keeps the true dynamics can achieve; its V₀ gives the best ELBO (Levine 2018, §4).

Everything is computed on scaled values (Q/α, V/α) with log-sum-exp, one batched contraction
over (S, A, S') per step, so |r|/α up to 1e4 and horizons of thousands are stable.

dtype and autograd. Every routine computes and returns in the MDP's dtype on its device. In
float32 no routine returns −inf or NaN where float64 is finite, and a scaled value (V/α, Q/α,
log p(O)) is within c·T·eps·M of float64, M = max(1, max|V/α|), c ≤ 0.4 measured (the float32
lane in tests/test_float32.py allows c = 4). No step writes in place, so every routine is
differentiable with respect to ``mdp.reward`` and ``mdp.transition`` (an MDP built from tensors
that require grad keeps them): ∂ log p(O)/∂r(s,a,s') = (1/α)·Σₜ p(sₜ=s, aₜ=a, sₜ₊₁=s' | O).
Gradients are finite at zero entries of P and of the action prior: an entry with P = 0 gets
the derivative along the fixed support (0) in the log-space routines; parametrise learned rows
by a softmax when that derivative matters.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable

import torch

from .mdp import TabularMDP, _check_mdp, _check_policy, _check_temperature, _safe_log
from .validation import check_int, check_positive_float, check_positive_int, check_probability

__all__ = [
    "SoftValues",
    "soft_value_iteration",
    "log_evidence",
    "optimal_elbo",
    "discounted_soft_value_iteration",
    "DiscountedSoftValues",
    "soft_policy_evaluation",
]

_BACKUPS = ("optimistic", "expected")


class SoftValues(typing.NamedTuple):
    """Result of :func:`soft_value_iteration`.

    Attributes:
        q: soft Q, indexed as q[t, s, a], shape (T, S, A).
        v: soft V, indexed as v[t, s], shape (T + 1, S); v[T] = 0.
        policy: πₜ(a|s), indexed as policy[t, s, a], shape (T, S, A); rows sum to 1.
        temperature: α.
        backup: "optimistic" or "expected".
    """

    q: torch.Tensor
    v: torch.Tensor
    policy: torch.Tensor
    temperature: float
    backup: str

    @property
    def log_policy(self) -> torch.Tensor:
        """log πₜ(a|s), -inf where the action prior forbids an action (gradient 0 there)."""
        return _safe_log(self.policy)


def _step_weights(mdp: TabularMDP, observed_steps) -> torch.Tensor:
    """w[t] = 1 where O_t is observed, 0 where it is marginalised out (its factor becomes 1)."""
    T = mdp.horizon
    w = torch.ones(T, dtype=mdp.float_dtype, device=mdp.device)
    if observed_steps is None:
        return w
    if not isinstance(observed_steps, Iterable):
        raise TypeError("`observed_steps` must be an iterable of time steps in [0, T) or None")
    steps = [check_int("observed_steps", t) for t in observed_steps]
    bad = [t for t in steps if not -T <= t < T]
    if bad:
        raise ValueError(f"`observed_steps` must lie in [0, {T}); got {bad}")
    w.zero_()
    w[steps] = 1.0
    return w


def _backward(
    mdp: TabularMDP, alpha: float, backup: str, observed_steps=None, log_policy=None, log_prior=None
):
    """Shared recursion for every backup. Returns scaled q/α (T,S,A) and v/α (T+1,S).

    ``log_prior`` replaces the MDP's log p(a|s): (S, A), or (T, S, A) for a prior that changes
    with t (KL-regularised policy iteration's previous policy); None = ``mdp.log_action_prior``.

    With ``log_policy`` (T,S,A) the expected backup evaluates that policy instead of the
    soft-optimal one: Vₜ(s)/α = Σₐ πₜ(a|s)·(Qₜ(s,a)/α + log p(a|s) − log πₜ(a|s)).
    Each step is a new tensor (no in-place writes), so autograd runs through the recursion.
    """
    if backup not in _BACKUPS:
        raise ValueError(f"`backup` must be one of {_BACKUPS}, got {backup!r}")
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    w = _step_weights(mdp, observed_steps)
    r_scaled = mdp.reward / alpha  # r(s,a,s')/α, indexed as [s, a, s']
    P = mdp.transition
    if log_prior is None:
        log_prior = mdp.log_action_prior
    if log_prior.ndim == 2:
        log_prior = log_prior.expand(T, S, A)
    if backup == "optimistic":
        log_P = mdp.log_transition
        kernels = {wt: _tilted_kernel(P, wt * r_scaled) for wt in set(w.tolist())}
    else:
        r_bar = (P * r_scaled).sum(-1)  # E[r]/α, (S, A)
        P_flat = P.flatten(0, 1)  # (S·A, S')
    v_tp1 = torch.zeros(S, dtype=mdp.float_dtype, device=mdp.device)  # V_T = 0
    q_rev, v_rev = [], [v_tp1]  # built from t = T-1 down to 0
    for t in range(T - 1, -1, -1):
        if backup == "optimistic":
            q_t = _logsumexp_matvec(*kernels[w[t].item()], log_P, w[t] * r_scaled, v_tp1)
        else:
            q_t = w[t] * r_bar + _expected_next(P_flat, v_tp1, log_policy).view(S, A)
        if log_policy is None:
            v_t = torch.logsumexp(log_prior[t] + q_t, dim=-1)
        else:
            v_t = _policy_value(log_policy[t], log_prior[t], q_t)
        q_rev.append(q_t)
        v_rev.append(v_t)
        v_tp1 = v_t
    return torch.stack(q_rev[::-1]), torch.stack(v_rev[::-1])


def _expected_next(P_flat, v_tp1, log_policy):
    """Σ_s' P(s'|s,a)·Vₜ₊₁(s') (the E[Vₜ₊₁/α] of the expected backup), 0·(−inf) = 0.

    Only an evaluated policy that acts where the prior forbids has Vₜ₊₁ = −inf somewhere;
    then Q = −inf exactly where such a state is reachable, never NaN.
    """
    if log_policy is None or not torch.isinf(v_tp1).any():
        return P_flat @ v_tp1
    finite = torch.isfinite(v_tp1)
    value = P_flat @ torch.where(finite, v_tp1, torch.zeros_like(v_tp1))
    doomed = ((P_flat > 0) & ~finite).any(-1)
    return torch.where(doomed, torch.full_like(value, -torch.inf), value)


def _policy_value(log_pi, log_prior, q_scaled):
    """Σₐ π(a|s)·(q + log p(a|s) − log π(a|s)), with 0·(anything) = 0 where π(a|s) = 0."""
    pi = log_pi.exp()
    on = pi > 0
    zero = torch.zeros_like(q_scaled)
    per_action = torch.where(on, q_scaled + log_prior - log_pi, zero)
    value = (pi * per_action).sum(-1)
    # acting where the prior forbids (π > 0 = p) costs an infinite KL: the value is -inf
    return torch.where((on & torch.isinf(log_prior)).any(-1), -torch.inf, value)


def _tilted_kernel(P: torch.Tensor, r_scaled: torch.Tensor):
    """P·exp(r/α) split as K·exp(m): m(s,a) = max reachable r/α, so that 0 ≤ K ≤ 1."""
    reachable = P > 0
    m = torch.where(reachable, r_scaled, -torch.inf).amax(-1)
    shifted = torch.where(reachable, r_scaled - m[..., None], -torch.inf)
    return (P * torch.exp(shifted)).flatten(0, 1), m


def _underflow_threshold(dtype: torch.dtype) -> float:
    """Below this a row sum of the matvec may have lost relative precision to underflow.

    Each summand K·exp(v − max v) ≤ 1 that underflows loses at most ``tiny``; a total above
    tiny/eps² keeps S·eps² relative accuracy for any S < 1/eps. float64 keeps its historic
    1e-250 (above its tiny/eps² ≈ 4.5e-277, so the same criterion holds, bit for bit as
    before); float32 gets ≈ 8.3e-25 — a float64-only constant here made float32 return −inf.
    """
    if dtype == torch.float64:
        return 1e-250
    info = torch.finfo(dtype)
    return info.tiny / info.eps**2


def _logsumexp_matvec(kernel, m, log_P, r_scaled, v_tp1):
    """log Σ_s' P(s'|s,a)·exp(r/α + Vₜ₊₁(s')), as one stabilised (S·A, S) @ (S,) product.

    Rows whose sum underflows (values spanning > ~500 nats in float64, ~50 in float32) are
    redone by an exact logsumexp. Out of place, so autograd runs through it; the log is taken
    only of rows that are kept, so a 0 row sum never turns into a NaN gradient.
    """
    v_max = v_tp1.max()
    total = (kernel @ torch.exp(v_tp1 - v_max)).view_as(m)
    bad = total < _underflow_threshold(total.dtype)
    q = torch.log(torch.where(bad, torch.ones_like(total), total)) + m + v_max
    if bad.any():
        idx = bad.nonzero(as_tuple=True)
        q = q.index_put(idx, torch.logsumexp(log_P[idx] + r_scaled[idx] + v_tp1, dim=-1))
    return q


def soft_value_iteration(
    mdp: TabularMDP,
    *,
    temperature: float = 1.0,
    backup: str = "optimistic",
    observed_steps: Iterable[int] | None = None,
    action_prior: torch.Tensor | None = None,
) -> SoftValues:
    """Finite-horizon soft value iteration (the backward messages of the optimality PGM).

    ``Qₜ(s,a) = α·log E_{s'}[exp((r + Vₜ₊₁)/α)]`` (optimistic) or ``E_{s'}[r + Vₜ₊₁]``
    (expected); ``Vₜ(s) = α·log Σₐ p(a|s)·exp(Qₜ/α)``. Levine 2018, eqs. 9–11 and §4.

    Args:
        mdp: a :class:`TabularMDP`.
        temperature: α > 0; p(O=1|s,a,s') = exp(r/α).
        backup: "optimistic" (exact posterior p(a|s,O)) or "expected" (the max-ent policy a
            guide sharing the true dynamics converges to).
        observed_steps: condition only on these O_t (e.g. ``[T-1]`` for goal reaching); the
            others are marginalised out. All by default.
        action_prior: p(a|s) as (S, A), or pₜ(a|s) as (T, S, A) (a prior that changes with t,
            e.g. the previous policy of :func:`pgm_control.kl_regularised_policy_iteration`),
            used instead of ``mdp.action_prior``; None (default) = ``mdp.action_prior``.

    Returns:
        :class:`SoftValues` with q (T,S,A), v (T+1,S), policy (T,S,A), in reward units and the
        MDP's dtype; differentiable in ``mdp.reward`` and ``mdp.transition``. In float32 the
        policy rows sum to 1 within ≈ eps·max|Q/α|.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    log_prior = mdp.log_action_prior
    if action_prior is not None:
        log_prior = _safe_log(_check_policy(mdp, action_prior, "action_prior"))
    q_scaled, v_scaled = _backward(mdp, alpha, backup, observed_steps, log_prior=log_prior)
    log_pi = log_prior + q_scaled - v_scaled[:-1, :, None]
    return SoftValues(alpha * q_scaled, alpha * v_scaled, torch.exp(log_pi), alpha, backup)


def log_evidence(
    mdp: TabularMDP, *, temperature: float = 1.0, observed_steps: Iterable[int] | None = None
) -> torch.Tensor:
    """log p(O_{0:T-1} = 1) = log Σ_s p0(s)·exp(V₀(s)/α), optimistic backup (Levine 2018, §2.3).

    Equals the log-normaliser of p(τ|O) ∝ p(τ)·exp(Σₜ r/α), and what Pyro's exact enumeration
    of :func:`pgm_control.models.control_model` returns (see ``enumerated_log_evidence``).

    Returns:
        A scalar in the MDP's dtype. Its gradient with respect to ``mdp.reward`` is the
        posterior's expected transition counts / α (the MaxEnt IRL gradient, Ziebart 2010).
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    _, v_scaled = _backward(mdp, alpha, "optimistic", observed_steps)
    return torch.logsumexp(mdp.log_initial + v_scaled[0], dim=0)


def optimal_elbo(
    mdp: TabularMDP, *, temperature: float = 1.0, observed_steps: Iterable[int] | None = None
) -> torch.Tensor:
    """The best ELBO of a guide q(τ) = p(s0)·Π P(s'|s,a)·q(a|s): Σ_s p0(s)·V₀(s)/α, expected backup.

    ELBO(q) = E_q[Σₜ r/α + log p(aₜ|sₜ) − log q(aₜ|sₜ)] (Levine 2018, §4, the "line 5" objective);
    always ≤ :func:`log_evidence`, with equality when dynamics and p0 are deterministic.

    Returns:
        A scalar in the MDP's dtype, differentiable in ``mdp.reward`` and ``mdp.transition``.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    _, v_scaled = _backward(mdp, alpha, "expected", observed_steps)
    return (mdp.initial * v_scaled[0]).sum()


def soft_policy_evaluation(
    mdp: TabularMDP,
    policy: torch.Tensor,
    *,
    temperature: float = 1.0,
    observed_steps: Iterable[int] | None = None,
) -> SoftValues:
    """Soft Q and V of a *given* policy π under the true dynamics (the expected backup).

    ``Qₜ^π(s,a) = Σ_s' P(s'|s,a)·(r(s,a,s') + Vₜ₊₁^π(s'))``,
    ``Vₜ^π(s) = Σₐ πₜ(a|s)·(Qₜ^π(s,a) − α·log(πₜ(a|s)/p(a|s)))``, V_T = 0: the entropy- (KL-)
    regularised value of acting with π (Levine 2018, §4.2; the critic of soft actor-critic).
    Σ_s p0(s)·V₀^π(s)/α is :func:`pgm_control.policy_elbo` of π, and π's soft-greedy policy
    ∝ p(a|s)·exp(Qₜ^π/α) is one step of soft policy iteration.

    Args:
        mdp: a :class:`TabularMDP`.
        policy: πₜ(a|s), (T, S, A) or stationary (S, A) probabilities.
        temperature: α > 0.
        observed_steps: condition only on these Oₜ, as in the model.

    Returns:
        :class:`SoftValues` with q (T,S,A), v (T+1,S) of π in the MDP's dtype and ``policy`` =
        π itself, ``backup="policy"``; V = −inf (never NaN) where π acts where the prior
        forbids. Differentiable in ``mdp.reward``, ``mdp.transition`` and π.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    pi = _check_policy(mdp, policy, "policy")
    log_pi = _safe_log(pi)  # −inf where π = 0, with a finite gradient there
    q_scaled, v_scaled = _backward(mdp, alpha, "expected", observed_steps, log_policy=log_pi)
    return SoftValues(alpha * q_scaled, alpha * v_scaled, pi, alpha, "policy")


class DiscountedSoftValues(typing.NamedTuple):
    """Stationary soft Q (S,A), V (S,) and policy (S,A) of the discounted expected backup."""

    q: torch.Tensor
    v: torch.Tensor
    policy: torch.Tensor
    iterations: int
    residual: float


def discounted_soft_value_iteration(
    mdp: TabularMDP,
    *,
    discount: float,
    temperature: float = 1.0,
    tol: float | None = None,
    max_iterations: int = 100_000,
) -> DiscountedSoftValues:
    """Infinite-horizon soft value iteration with discount γ (Levine 2018, §4.2; soft Q-learning).

    ``Q(s,a) = Σ_s' P(s'|s,a)·(r(s,a,s') + γ·V(s'))``, ``V(s) = α·log Σₐ p(a|s)·exp(Q(s,a)/α)``,
    iterated to a fixed point (a γ-contraction) until max |ΔV| < tol. ``mdp.horizon`` is ignored.

    Args:
        mdp: a :class:`TabularMDP`.
        discount: γ in [0, 1).
        temperature: α > 0.
        tol: stop when max |ΔV| < tol. None (default): 1e-10, or the dtype's resolution
            16·eps·max(1, max|V|) where that is coarser — float32 cannot get below a few ulps
            of |V| (≈ 1.9e-6·max(1, |V|)); for float64 it is 1e-10 whenever max|V| < 2.8e4.
        max_iterations: give up (RuntimeError) after this many sweeps.

    Returns:
        :class:`DiscountedSoftValues` in the MDP's dtype; differentiable with respect to
        ``mdp.reward`` and ``mdp.transition`` (through the iterations).
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    gamma = check_probability("discount", discount, open_high=True)  # [0, 1): a contraction
    if tol is not None:
        tol = check_positive_float("tol", tol)
    max_iterations = check_positive_int("max_iterations", max_iterations)
    resolution = 16 * torch.finfo(mdp.float_dtype).eps
    P, r, log_prior = mdp.transition, mdp.reward, mdp.log_action_prior
    r_bar = (P * r).sum(-1)  # (S, A)
    v = torch.zeros(mdp.num_states, dtype=mdp.float_dtype, device=mdp.device)
    residual = math.inf
    for it in range(1, max_iterations + 1):  # noqa: B007  (`it` is reported after the loop)
        q = r_bar + gamma * torch.einsum("sax,x->sa", P, v)
        v_new = alpha * torch.logsumexp(log_prior + q / alpha, dim=-1)
        residual = (v_new - v).abs().max().item()
        v = v_new
        if tol is None:
            tol_it = max(1e-10, resolution * max(1.0, v.abs().max().item()))
        else:
            tol_it = tol
        if residual < tol_it:
            break
    else:
        raise RuntimeError(
            f"discounted soft value iteration did not reach tol={tol_it:.3g} in "
            f"{max_iterations} iterations (residual {residual:.3g}); raise `max_iterations` "
            "or `tol`"
        )
    q = r_bar + gamma * torch.einsum("sax,x->sa", P, v)
    policy = torch.exp(log_prior + (q - v[:, None]) / alpha)
    return DiscountedSoftValues(q, v, policy, it, residual)
