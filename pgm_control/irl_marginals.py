"""MaxEnt IRL's normaliser and its gradient from the forward–backward marginals (no autograd).

For a reward table r, ∂ log Z/∂r(s,a,s') = (1/α)·Σₜ p(sₜ=s, aₜ=a, sₜ₊₁=s' | ψ): the model's
expected transition counts (Levine 2018, IRL lecture; Ziebart et al. 2008, eq. 6). A reward
that depends on fewer arguments needs the counts summed over the others only::

    r(s):          ρ(s)       = Σₜ p(sₜ = s)
    r(s, a):       ρ(s, a)    = Σₜ p(sₜ = s)·πₜ(a|s)
    r(s, a, s'):   ρ(s, a, s') = Σₜ p(sₜ = s)·πₜ(a|s)·pₜ(s'|s, a)

with, per backup (see :mod:`pgm_control.maxent_irl`):

* ``"expected"`` (log Z = Σ p0·V₀/α, Ziebart 2010): π the soft-optimal policy, p(sₜ) the
  occupancy it induces in the true dynamics (``_state_distribution``), pₜ(s'|s,a) = P;
* ``"optimistic"`` (log Z = log p(O)): p(sₜ | O) ∝ αₜ·βₜ from the forward and backward messages,
  π the posterior policy, pₜ(s'|s,a) the posterior dynamics (:func:`posterior_dynamics`).

Every quantity comes from the library's own recursions (``_backward``, ``_state_distribution``,
``log_forward_messages``): this module only contracts them. Its independent route is autograd
through the same backward messages (:func:`pgm_control.irl_log_likelihood`); the tests hold
one against the other.
"""

from __future__ import annotations

import functools
import math

import torch

from .backward import _backward
from .forward import _log_state_posterior, _state_distribution, posterior_dynamics
from .mdp import TabularMDP

__all__ = ["log_normaliser_and_counts", "linear_objective", "compiled_linear_objective"]


def log_normaliser_and_counts(
    mdp: TabularMDP, alpha: float, backup: str, reward_ndim: int, log_prior=None
):
    """(log Z, expected counts ρ) of ``mdp``'s reward, ρ summed down to the reward's arguments.

    Args:
        mdp: the MDP with the candidate reward swapped in (``mdp.with_reward``); dense, or
            sparse for ``reward_ndim`` 1 and 2.
        alpha: temperature α > 0.
        backup: "optimistic" (log Z = log p(O)) or "expected" (log Z = Σ p0·V₀/α).
        reward_ndim: 1, 2 or 3 for a reward r(s), r(s, a) or r(s, a, s').
        log_prior: ``mdp.log_action_prior`` (S, A) when the caller holds it (an inner loop);
            None computes it.

    Returns:
        log Z (a scalar) and ρ of shape (S,), (S, A) or (S, A, S), in the MDP's dtype, computed
        without an autograd graph: ∂ log Z/∂r = ρ/α.
    """
    with torch.no_grad():
        if log_prior is None:
            log_prior = mdp.log_action_prior
        q, v = _backward(mdp, alpha, backup, log_prior=log_prior)  # Q/α (T,S,A), V/α (T+1,S)
        pi = torch.exp(log_prior + q - v[:-1, :, None])  # πₜ(a|s), (T, S, A)
        if backup == "expected":
            log_z = (mdp.initial * v[0]).sum()
            kernel = mdp.dynamics if mdp.is_sparse else mdp.transition
            d = _state_distribution(mdp.initial, pi, kernel)[:-1]  # p(sₜ), (T, S)
        else:
            log_z = torch.logsumexp(mdp.log_initial + v[0], dim=0)
            d = torch.exp(_log_state_posterior(mdp, alpha, None, v))[:-1]  # p(sₜ | O)
        if reward_ndim == 1:
            return log_z, d.sum(0)
        counts = torch.einsum("ts,tsa->sa", d, pi)
        if reward_ndim == 2:
            return log_z, counts
        if mdp.is_sparse:
            raise ValueError("(S, A, S) rewards on a sparse MDP take the autograd route")
        if backup == "expected":
            return log_z, counts[:, :, None] * mdp.transition
        joint = (d[:, :, None] * pi)[..., None]  # p(sₜ, aₜ | O), (T, S, A, 1)
        return log_z, (joint * posterior_dynamics(mdp, temperature=alpha)).sum(0)


def linear_objective(
    mdp: TabularMDP,
    features: torch.Tensor,
    weights: torch.Tensor,
    mu_hat: torch.Tensor,
    alpha: float,
    backup: str,
    log_prior=None,
    prior_variance: float | None = None,
):
    """L(ψ), ∇ψL and ‖∇ψL‖_∞ of a linear reward r_ψ = ψ·f, from the marginals (no graph).

    ``L(ψ) = ψ·μ̂/α − log Z(ψ) − ‖ψ‖²/(2v)``, ``∇ψL = (μ̂ − Σ ρ_ψ·f)/α − ψ/v``: the MaxEnt IRL
    objective of :func:`pgm_control.maxent_irl` for exact or fully observed demonstrations
    (Ziebart et al. 2008, eq. 6), v = σ²·N for a Gaussian prior ψ ~ N(0, σ²·I) and N
    demonstrations (None: no prior).

    Args:
        mdp: dynamics, p0, T and prior (its reward is replaced by ψ·f).
        features: f of shape (S, F), (S, A, F) or (S, A, S, F).
        weights: ψ, shape (F,).
        mu_hat: the demonstrations' feature counts μ̂ = E_demos[Σₜ f], shape (F,).
        alpha, backup, log_prior: as for :func:`log_normaliser_and_counts`.
        prior_variance: v = σ²·N > 0 of the log-prior −‖ψ‖²/(2v), or None.

    Returns:
        (``torch.stack([L, ‖∇ψL‖_∞])``, ∇ψL (F,)): the two scalars in one tensor, so that the
        caller reads them with one host sync. At S = 28 an evaluation is ~100 torch calls on
        tiny tensors whose dispatch, not arithmetic, is the time: x/α is skipped at α = 1
        (x/1 = x exactly).
    """
    ndim = features.ndim - 1  # the reward's arguments: r(s), r(s, a) or r(s, a, s')
    S, A = mdp.num_states, mdp.num_actions
    r = features @ weights  # (S,), (S, A) or (S, A, S)
    r = r.reshape(*r.shape, *(1,) * (3 - ndim)).expand(S, A, S)
    log_z, rho = log_normaliser_and_counts(mdp.with_reward(r), alpha, backup, ndim, log_prior)
    L = _over_alpha(weights @ mu_hat, alpha) - log_z
    grad = _over_alpha(mu_hat - rho.reshape(-1) @ features.reshape(rho.numel(), -1), alpha)
    if prior_variance is not None:  # log p(ψ)/N, ψ ~ N(0, σ²·I)
        L = L - (weights @ weights) / (2 * prior_variance)
        grad = grad - weights / prior_variance
    return torch.stack([L, torch.linalg.vector_norm(grad, math.inf)]), grad


def _over_alpha(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """x/α, and x itself at α = 1 (the same bits, one op fewer)."""
    return x if alpha == 1.0 else x / alpha


@functools.cache
def compiled_linear_objective():
    """:func:`linear_objective` through ``torch.compile`` (inductor, C++ wrapper; a C++
    compiler on CPU): fused kernels instead of ~100 dispatched calls per evaluation.

    Made once per process (later learners reuse the compiled code); compiled at its first call
    (tens of seconds, cached on disk by inductor) and again for a new shape, horizon, α,
    backup or dtype. Agrees with the eager function to round-off, not bit for bit.
    """
    # not fullgraph: the optimistic backup's underflow check (``if bad.any()``) splits its
    # graph per step; the expected backup compiles as one graph
    return torch.compile(linear_objective, dynamic=False, options={"cpp_wrapper": True})
