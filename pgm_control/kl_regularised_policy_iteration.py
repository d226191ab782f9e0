r"""KL-regularised policy iteration: the action prior set to the previous policy, exactly.

Each iterate maximises the ELBO whose action prior is the previous policy (Levine 2018, §4 with
p(a|s) ← πₖ₋₁; the mirror-descent view of TRPO/MPO/AWR, Abdolmaleki et al. 2018, eq. 7)::

    πₖ = argmax_π  E_π[Σₜ r(sₜ,aₜ,sₜ₊₁)] − α·KL(π ‖ πₖ₋₁)

where KL is along trajectories, KL(π‖π') = E_π[Σₜ KL(πₜ(·|sₜ) ‖ π'ₜ(·|sₜ))]. Its solution is the
expected-backup soft value iteration with the time-varying prior πₖ₋₁:
πₖ,ₜ(a|s) ∝ πₖ₋₁,ₜ(a|s)·exp(Qₜ(s,a)/α) (:func:`pgm_control.soft_value_iteration` with
``action_prior``). π₀ is the MDP's action prior.

Monotone improvement and the KL bound. Write Jₖ = E_{πₖ}[Σₜ r] and Fₖ(π) = J(π) − α·KL(π‖πₖ₋₁).
πₖ maximises Fₖ, and Fₖ(πₖ₋₁) = Jₖ₋₁ (the KL of a policy to itself is 0), so

    Jₖ − α·KL(πₖ‖πₖ₋₁) = Fₖ(πₖ) ≥ Fₖ(πₖ₋₁) = Jₖ₋₁
    ⇒  Jₖ ≥ Jₖ₋₁  and  KL(πₖ‖πₖ₋₁) ≤ (Jₖ − Jₖ₋₁)/α ≤ (J* − J₀)/α ≤ T·(R_max − R_min)/α,

with J* the hard-optimal return and R_max, R_min the largest and smallest r(s,a,s') (every
return lies in [T·R_min, T·R_max]). Summed over k the KLs telescope: Σₖ KL(πₖ‖πₖ₋₁) ≤
(J* − J₀)/α. The iterates converge to a hard-optimal policy: πₖ ∝ π₀·exp(Σⱼ Qⱼ/α) concentrates
on the actions that stay optimal, so Jₖ → J* (tested against exact hard DP).
"""

from __future__ import annotations

import dataclasses
import os

import torch
from tqdm.auto import tqdm

from .backward import soft_value_iteration
from .forward import policy_state_distribution
from .mdp import TabularMDP, _check_mdp, _check_temperature, _safe_log
from .validation import check_positive_int

__all__ = ["kl_regularised_policy_iteration", "KLPolicyIterationResult", "expected_return"]


def expected_return(mdp: TabularMDP, policy: torch.Tensor) -> torch.Tensor:
    """J(π) = E_π[Σₜ r(sₜ,aₜ,sₜ₊₁)] = Σₜ Σ_s dₜ(s)·Σₐ πₜ(a|s)·r̄(s,a), a scalar.

    Args:
        mdp: the :class:`~pgm_control.TabularMDP`.
        policy: πₜ(a|s), (T, S, A) or stationary (S, A).
    """
    d = policy_state_distribution(mdp, policy)[:-1]  # (T, S)
    pi = policy.expand(mdp.horizon, -1, -1) if policy.ndim == 2 else policy
    return (d[:, :, None] * pi * mdp.expected_reward).sum()


def _trajectory_kl(mdp: TabularMDP, policy, previous) -> torch.Tensor:
    """KL(π‖π') along π's trajectories: Σₜ Σ_s dₜ(s)·Σₐ πₜ(a|s)·log(πₜ(a|s)/π'ₜ(a|s))."""
    d = policy_state_distribution(mdp, policy)[:-1]
    on = policy > 0
    log_ratio = torch.where(on, _safe_log(policy) - _safe_log(previous), 0.0)
    return (d[:, :, None] * policy * log_ratio).sum()


@dataclasses.dataclass
class KLPolicyIterationResult:
    """The iterates of :func:`kl_regularised_policy_iteration` (plain tensors, pickles).

    Attributes:
        policies: πₖ,ₜ(a|s), indexed [k, t, s, a], shape (K, T, S, A), K = iterations + 1;
            policies[0] = π₀, the MDP's action prior.
        returns: Jₖ = E_{πₖ}[Σₜ r], shape (K,); non-decreasing.
        kls: KL(πₖ‖πₖ₋₁) along πₖ's trajectories, shape (K,), kls[0] = 0.
        temperature: α.
        optimal_return: the hard-optimal J* (exact DP), for reference.
        interrupted: True if Ctrl-C stopped the loop (the iterates so far are kept).
    """

    policies: torch.Tensor
    returns: torch.Tensor
    kls: torch.Tensor
    temperature: float
    optimal_return: float
    interrupted: bool = False

    @property
    def kl_bounds(self) -> torch.Tensor:
        """(Jₖ − Jₖ₋₁)/α, shape (K,), the bound each KL(πₖ‖πₖ₋₁) stays within (module doc)."""
        diff = torch.diff(self.returns, prepend=self.returns[:1])
        return diff / self.temperature

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to ``path`` (torch.save)."""
        torch.save(dataclasses.asdict(self), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> KLPolicyIterationResult:
        """Read a result written by :meth:`save`."""
        return cls(**torch.load(path, weights_only=False))

    def __repr__(self) -> str:
        K = self.policies.shape[0]
        return (
            f"KLPolicyIterationResult(iterations={K - 1}, α={self.temperature:g}, "
            f"return {self.returns[0].item():.4g} → {self.returns[-1].item():.4g}, "
            f"optimal {self.optimal_return:.4g})"
        )


def _hard_optimal_return(mdp: TabularMDP) -> float:
    """J* by hard finite-horizon DP, Vₜ(s) = max over allowed a of E[r + Vₜ₊₁(s')]."""
    r_bar, P = mdp.expected_reward, mdp.transition
    allowed = mdp.action_prior > 0
    v = torch.zeros(mdp.num_states, dtype=mdp.float_dtype, device=mdp.device)
    for _ in range(mdp.horizon):
        q = r_bar + torch.einsum("sax,x->sa", P, v)
        v = torch.where(allowed, q, -torch.inf).amax(-1)
    return float((mdp.initial * v).sum())


def kl_regularised_policy_iteration(
    mdp: TabularMDP,
    *,
    temperature: float = 1.0,
    iterations: int = 20,
    progress: bool = False,
) -> KLPolicyIterationResult:
    """Exact KL-regularised policy iteration: πₖ ∝ πₖ₋₁·exp(Qₖ/α) (see the module doc).

    ``πₖ = argmax_π E_π[Σ r] − α·KL(π‖πₖ₋₁)`` by expected-backup soft value iteration with
    the previous policy as the action prior (Levine 2018, §4; Abdolmaleki et al. 2018, eq. 7).

    Args:
        mdp: a :class:`~pgm_control.TabularMDP`; its action prior is π₀.
        temperature: α > 0, the price of a nat of KL to the previous policy (small α: big steps).
        iterations: the number of updates K − 1 ≥ 1.
        progress: show a tqdm bar (Ctrl-C returns the iterates so far).

    Returns:
        :class:`KLPolicyIterationResult` with ``policies`` (K, T, S, A) and ``returns`` (K,).
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    iterations = check_positive_int("iterations", iterations)
    T = mdp.horizon
    policy = mdp.action_prior.expand(T, -1, -1)
    policies, returns, kls = [policy], [expected_return(mdp, policy)], [policy.new_zeros(())]
    interrupted = False
    try:
        for _ in tqdm(range(iterations), disable=not progress, desc="KL-PI"):
            new = soft_value_iteration(
                mdp, temperature=alpha, backup="expected", action_prior=policy
            ).policy
            policies.append(new)
            returns.append(expected_return(mdp, new))
            kls.append(_trajectory_kl(mdp, new, policy))
            policy = new
    except KeyboardInterrupt:
        interrupted = True
    n = min(len(policies), len(returns), len(kls))
    return KLPolicyIterationResult(
        policies=torch.stack(policies[:n]),
        returns=torch.stack(returns[:n]),
        kls=torch.stack(kls[:n]),
        temperature=alpha,
        optimal_return=_hard_optimal_return(mdp),
        interrupted=interrupted,
    )
