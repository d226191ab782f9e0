"""Backward messages: soft Q and V by dynamic programming (Levine 2018, §2.3–2.4, §3).

With temperature α, action prior p(a|s) and V_T ≡ 0, for t = T-1 … 0::

    optimistic (exact posterior):  Qₜ(s,a) = α·log Σ_s' P(s'|s,a)·exp((r(s,a,s') + Vₜ₊₁(s'))/α)
    expected   (structured VI):    Qₜ(s,a) = Σ_s' P(s'|s,a)·(r(s,a,s') + Vₜ₊₁(s'))
    both:                          Vₜ(s)   = α·log Σ_a p(a|s)·exp(Qₜ(s,a)/α)
                                   πₜ(a|s) = p(a|s)·exp((Qₜ(s,a) − Vₜ(s))/α)

The max-type backups of Lázaro-Gredilla et al. 2024 ("What type of inference is planning?")
reuse the same recursion with max in place of a sum (see :func:`soft_value_iteration`)::

    map:           Qₜ/α = max_s' [log P + (r + Vₜ₊₁)/α],   Vₜ/α = maxₐ [log p(a|s) + Qₜ/α]
    marginal_map:  Qₜ as optimistic,                        Vₜ/α = maxₐ [log p(a|s) + Qₜ/α]
    planning:      Qₜ = Σ_s' P·(r + Vₜ₊₁),                 Vₜ = max_{a: p(a|s)>0} Qₜ

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

# Each backup is one reduction over next states s' followed by one reduction over actions a
# (Lázaro-Gredilla et al. 2024, Table 1, read as a dynamic programme):
#   over s':  "logsumexp" log Σ_s' P·exp((r+V')/α) · "mean" Σ_s' P·(r+V')/α
#             "max" max_s' log P + (r+V')/α
#   over a:   "logsumexp" log Σₐ p(a|s)·exp(Q/α) · "max" maxₐ log p(a|s) + Q/α
#             "support_max" max over {a : p(a|s) > 0} of Q
_REDUCTIONS = {
    "optimistic": ("logsumexp", "logsumexp"),  # marginal: the exact posterior
    "expected": ("mean", "logsumexp"),  # MaxEnt: structured variational
    "map": ("max", "max"),  # the most likely trajectory
    "marginal_map": ("logsumexp", "max"),  # max over actions, marginal over next states
    "planning": ("mean", "support_max"),  # expected utility: the α → 0 limit of "expected"
}
_BACKUPS = tuple(_REDUCTIONS)
_MAX_BACKUPS = ("map", "marginal_map", "planning")
_TIE_ULPS = 1024  # argmax ties: within 1024·eps·max(1, |V|) of the maximum


class SoftValues(typing.NamedTuple):
    """Result of :func:`soft_value_iteration`.

    Attributes:
        q: Q, indexed as q[t, s, a], shape (T, S, A), in reward units (see the backup).
        v: V, indexed as v[t, s], shape (T + 1, S); v[T] = 0.
        policy: πₜ(a|s), indexed as policy[t, s, a], shape (T, S, A); rows sum to 1. For the
            max-type backups ("map", "marginal_map", "planning") uniform over the argmax set.
        temperature: α.
        backup: one of "optimistic", "expected", "map", "marginal_map", "planning"
            ("policy" from :func:`soft_policy_evaluation`).
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


def _step_weight_list(mdp: TabularMDP, observed_steps) -> list[float]:
    """w[t] = 1.0 where O_t is observed, 0.0 where it is marginalised out (its factor is 1)."""
    T = mdp.horizon
    if observed_steps is None:
        return [1.0] * T
    if not isinstance(observed_steps, Iterable):
        raise TypeError("`observed_steps` must be an iterable of time steps in [0, T) or None")
    steps = [check_int("observed_steps", t) for t in observed_steps]
    bad = [t for t in steps if not -T <= t < T]
    if bad:
        raise ValueError(f"`observed_steps` must lie in [0, {T}); got {bad}")
    observed = {t % T for t in steps}
    return [1.0 if t in observed else 0.0 for t in range(T)]


def _step_weights(mdp: TabularMDP, observed_steps) -> torch.Tensor:
    """w[t] = 1 where O_t is observed, 0 where it is marginalised out (its factor becomes 1)."""
    w = _step_weight_list(mdp, observed_steps)
    return torch.tensor(w, dtype=mdp.float_dtype, device=mdp.device)


def _backward(
    mdp: TabularMDP,
    alpha: float,
    backup: str,
    observed_steps=None,
    log_policy=None,
    keep_q: bool = True,
    log_prior=None,
):
    """Shared recursion for every backup. Returns scaled q/α (T,S,A) and v/α (T+1,S).

    Each step is one reduction over next states (``_REDUCTIONS[backup][0]``, :class:`_QStep`,
    on dense or sparse dynamics) giving qₜ, then one over actions (``[1]``) giving vₜ.
    ``log_prior`` replaces the MDP's log p(a|s): (S, A), or (T, S, A) for a prior that changes
    with t (KL-regularised policy iteration's previous policy); None = ``mdp.log_action_prior``.
    With ``log_policy`` (T,S,A) the expected backup evaluates that policy instead of the
    soft-optimal one: Vₜ(s)/α = Σₐ πₜ(a|s)·(Qₜ(s,a)/α + log p(a|s) − log πₜ(a|s)).
    With ``keep_q=False`` q is None and only the (T+1, S) values are stored, O(S·T + nnz)
    memory (Qₜ is recomputed from Vₜ₊₁ where needed, :class:`_QStep`).
    Each step is a new tensor (no in-place writes), so autograd runs through the recursion.
    """
    w = _step_weight_list(mdp, observed_steps)  # Python floats: traceable, no host sync
    step = _QStep(mdp, alpha, backup, w, log_policy)
    over_actions = _REDUCTIONS[backup][1]
    if log_prior is None:
        log_prior = mdp.log_action_prior
    if over_actions == "support_max":  # 0 where the prior allows an action, −inf elsewhere
        log_prior = torch.where(torch.isinf(log_prior), log_prior, torch.zeros_like(log_prior))
    v_tp1 = torch.zeros(mdp.num_states, dtype=mdp.float_dtype, device=mdp.device)  # V_T = 0
    q_rev, v_rev = [], [v_tp1]  # built from t = T-1 down to 0
    for t in range(mdp.horizon - 1, -1, -1):
        q_t = step(t, v_tp1)
        prior_t = log_prior[t] if log_prior.ndim == 3 else log_prior
        if log_policy is not None:
            v_t = _policy_value(log_policy[t], prior_t, q_t)
        elif over_actions == "logsumexp":
            v_t = torch.logsumexp(prior_t + q_t, dim=-1)
        else:  # "max" and "support_max" (log_prior is 0 / −inf for the latter)
            v_t = (prior_t + q_t).amax(-1)
        if keep_q:
            q_rev.append(q_t)
        v_rev.append(v_t)
        v_tp1 = v_t
    q = torch.stack(q_rev[::-1]) if keep_q else None
    return q, torch.stack(v_rev[::-1])


class _QStep:
    """Qₜ/α from Vₜ₊₁/α for one backup: ``step(t, v_tp1)`` → (S, A), on dense or sparse P.

    The reduction over next states of ``_REDUCTIONS[backup][0]``, through the layout's
    operations (:mod:`pgm_control.dynamics`): "logsumexp" → ``log_expect_tilted``, "mean" →
    ``mean`` + ``expect``, "max" → ``max_tilted``. Built once per recursion (the tilted
    kernels and E[r]/α are per-MDP constants), so the forward pass of the lean route can
    recompute any Qₜ from the stored Vₜ₊₁.
    """

    def __init__(self, mdp, alpha, backup, w, log_policy=None):
        if backup not in _BACKUPS:
            raise ValueError(f"`backup` must be one of {_BACKUPS}, got {backup!r}")
        self.dyn = mdp.dynamics
        # wₜ ∈ {0, 1} as Python floats (a list, or the tensor of ``_step_weights``): no tensor
        # op per step
        self.w_list = w.tolist() if isinstance(w, torch.Tensor) else list(w)
        self.over_next = _REDUCTIONS[backup][0]
        self.allow_neg_inf = log_policy is not None
        # r(s,a,s')/α in the layout's own indexing (r itself at α = 1: r/1 = r, the same bits)
        self.r_scaled = self.dyn.reward if alpha == 1.0 else self.dyn.reward / alpha
        if self.over_next == "logsumexp":
            self.kernels = {wt: self.dyn.tilt(wt * self.r_scaled) for wt in set(self.w_list)}
        elif self.over_next == "mean":
            self.r_bar = self.dyn.mean(self.r_scaled)  # E[r]/α, (S, A)

    def _weighted(self, w_t: float, x: torch.Tensor) -> torch.Tensor:
        """wₜ·x; x itself when wₜ = 1 (1·x = x exactly: the same bits, one op fewer)."""
        return x if w_t == 1.0 else w_t * x

    def __call__(self, t: int, v_tp1: torch.Tensor) -> torch.Tensor:
        w_t = self.w_list[t]
        if self.over_next == "logsumexp":
            tilted = self.kernels[w_t]
            return self.dyn.log_expect_tilted(tilted, self._weighted(w_t, self.r_scaled), v_tp1)
        if self.over_next == "mean":
            return self._weighted(w_t, self.r_bar) + self.dyn.expect(v_tp1, self.allow_neg_inf)
        # max_s' log P + r/α + Vₜ₊₁ (log P = −inf off the support)
        return self.dyn.max_tilted(self._weighted(w_t, self.r_scaled), v_tp1)


def _argmax_policy(score: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Uniform over {a : score(a) ≥ best − tol}, tol = 1024·eps·max(1, |best|); no gradient.

    ``score`` (T,S,A) is what the action reduction maximised, ``best`` (T,S) its maximum.
    """
    score, best = score.detach(), best.detach()
    tol = _TIE_ULPS * torch.finfo(score.dtype).eps * best.abs().clamp(min=1.0)
    ties = (score >= (best - tol)[..., None]).to(score.dtype)
    return ties / ties.sum(-1, keepdim=True)


def _policy_value(log_pi, log_prior, q_scaled):
    """Σₐ π(a|s)·(q + log p(a|s) − log π(a|s)), with 0·(anything) = 0 where π(a|s) = 0."""
    pi = log_pi.exp()
    on = pi > 0
    zero = torch.zeros_like(q_scaled)
    per_action = torch.where(on, q_scaled + log_prior - log_pi, zero)
    value = (pi * per_action).sum(-1)
    # acting where the prior forbids (π > 0 = p) costs an infinite KL: the value is -inf
    return torch.where((on & torch.isinf(log_prior)).any(-1), -torch.inf, value)


def soft_value_iteration(
    mdp: TabularMDP,
    *,
    temperature: float = 1.0,
    backup: str = "optimistic",
    observed_steps: Iterable[int] | None = None,
    action_prior: torch.Tensor | None = None,
) -> SoftValues:
    """Finite-horizon value iteration for each type of planning inference (backward messages).

    ``Qₜ(s,a) = α·log E_{s'}[exp((r + Vₜ₊₁)/α)]`` (optimistic) or ``E_{s'}[r + Vₜ₊₁]``
    (expected); ``Vₜ(s) = α·log Σₐ p(a|s)·exp(Qₜ/α)``. Levine 2018, eqs. 9–11 and §4. The
    five types of Lázaro-Gredilla et al. 2024 ("What type of inference is planning?", Table 1),
    with V_T = 0 and ``w = 1`` on observed steps:

    =================  ==========================================  =================================
    backup             Qₜ(s,a)/α                                   Vₜ(s)/α
    =================  ==========================================  =================================
    "optimistic"       log Σ_s' P·exp((w·r + Vₜ₊₁)/α)              log Σₐ p(a|s)·exp(Qₜ/α)
    "expected"         Σ_s' P·(w·r + Vₜ₊₁)/α                       log Σₐ p(a|s)·exp(Qₜ/α)
    "map"              max_s' [log P + (w·r + Vₜ₊₁)/α]             maxₐ [log p(a|s) + Qₜ/α]
    "marginal_map"     log Σ_s' P·exp((w·r + Vₜ₊₁)/α)              maxₐ [log p(a|s) + Qₜ/α]
    "planning"         Qₜ = Σ_s' P·(w·r + Vₜ₊₁)  (no α)            Vₜ = max_{a : p(a|s) > 0} Qₜ
    =================  ==========================================  =================================

    What q and v are (all in reward units, α times the scaled values except for planning):

    - optimistic (marginal): Vₜ(s)/α = log p(O_{t:T-1} | sₜ = s), the exact posterior.
    - expected (MaxEnt): the soft value of the best policy that keeps the true dynamics.
    - map: Vₜ(s)/α = max over a_{t:T-1}, s_{t+1:T} of log p(a, s', O | sₜ = s), the log
      max-product message; its policy follows the single most likely trajectory.
    - marginal_map: Vₜ(s)/α = max over deterministic reactive policies π of
      log E_π[Π p(a|s)·exp(w·r/α)] from sₜ = s: max over actions, sum over next states
      (risk-seeking: it scores an action by log E exp(r/α)).
    - planning: Vₜ(s) = max over policies within the prior's support of E[Σ w·r], the classical
      expected-utility value (the α → 0 limit of "expected"); α plays no other role.

    The max-type policies are uniform over the argmax set of the action reduction, with ties
    within 1024·eps·max(1, |V/α|) (``planning``: |V|) of the maximum.

    Args:
        mdp: a :class:`TabularMDP`.
        temperature: α > 0; p(O=1|s,a,s') = exp(r/α).
        backup: "optimistic" (exact posterior p(a|s,O)), "expected" (the max-ent policy a
            guide sharing the true dynamics converges to), "map", "marginal_map" or "planning".
        observed_steps: condition only on these O_t (e.g. ``[T-1]`` for goal reaching); the
            others are marginalised out. All by default.
        action_prior: p(a|s) as (S, A), or pₜ(a|s) as (T, S, A) (a prior that changes with t,
            e.g. the previous policy of :func:`pgm_control.kl_regularised_policy_iteration`),
            used instead of ``mdp.action_prior``; None (default) = ``mdp.action_prior``.

    Returns:
        :class:`SoftValues` with q (T,S,A), v (T+1,S), policy (T,S,A), in reward units and the
        MDP's dtype; differentiable in ``mdp.reward`` and ``mdp.transition``. In float32 the
        policy rows sum to 1 within ≈ eps·max|Q/α|. For the max-type backups q and v are
        piecewise smooth: autograd returns a subgradient (torch's ``amax`` splits the gradient
        evenly between tied maxima), which is the gradient wherever the maximiser is unique;
        their policy is piecewise constant and carries no gradient.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    if backup not in _BACKUPS:
        raise ValueError(f"`backup` must be one of {_BACKUPS}, got {backup!r}")
    log_prior = mdp.log_action_prior
    if action_prior is not None:
        log_prior = _safe_log(_check_policy(mdp, action_prior, "action_prior"))
    scale = 1.0 if backup == "planning" else alpha  # planning's values do not depend on α
    q_scaled, v_scaled = _backward(mdp, scale, backup, observed_steps, log_prior=log_prior)
    if backup in _MAX_BACKUPS:
        if backup == "planning":
            log_prior = torch.where(torch.isinf(log_prior), log_prior, torch.zeros_like(log_prior))
        policy = _argmax_policy(log_prior + q_scaled, v_scaled[:-1])
        return SoftValues(scale * q_scaled, scale * v_scaled, policy, alpha, backup)
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
    _, v_scaled = _backward(mdp, alpha, "optimistic", observed_steps, keep_q=False)
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
    _, v_scaled = _backward(mdp, alpha, "expected", observed_steps, keep_q=False)
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
    log_prior, dyn = mdp.log_action_prior, mdp.dynamics
    if dyn.is_sparse:
        r_bar = dyn.mean(dyn.reward)  # (S, A)
    else:
        P = mdp.transition
        r_bar = (P * mdp.reward).sum(-1)  # (S, A)
    v = torch.zeros(mdp.num_states, dtype=mdp.float_dtype, device=mdp.device)
    residual = math.inf
    for it in range(1, max_iterations + 1):  # noqa: B007  (`it` is reported after the loop)
        q = r_bar + gamma * _expected_value(mdp, v)
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
    q = r_bar + gamma * _expected_value(mdp, v)
    policy = torch.exp(log_prior + (q - v[:, None]) / alpha)
    return DiscountedSoftValues(q, v, policy, it, residual)


def _expected_value(mdp: TabularMDP, v: torch.Tensor) -> torch.Tensor:
    """Σ_s' P(s'|s,a)·v(s'), (S, A) (dense: the historic einsum, bit for bit)."""
    if mdp.is_sparse:
        return mdp.dynamics.expect(v)
    return torch.einsum("sax,x->sa", mdp.transition, v)
