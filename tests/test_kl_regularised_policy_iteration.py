"""Exact KL-regularised policy iteration: monotone, convergent, within its KL bound."""

import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.kl_regularised_policy_iteration import (
    KLPolicyIterationResult,
    expected_return,
    kl_regularised_policy_iteration,
)

import brute


def _brute_return(mdp, policy):
    """E_π[Σ r] by summing over every trajectory of the tiny MDP."""
    rows = brute.table(mdp, 1.0, policy=policy.numpy())
    return sum(q * ret for _, _, _, _, ret, q in rows)


def _brute_kl(mdp, pi, prev):
    """KL(π‖π') between the two trajectory distributions, by enumeration."""
    a = brute.table(mdp, 1.0, policy=pi.numpy())
    b = brute.table(mdp, 1.0, policy=prev.numpy())
    return sum(q * np.log(q / q_prev) for (*_, q), (*_, q_prev) in zip(a, b) if q > 0)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_monotone_within_the_kl_bound_and_converges_to_the_hard_optimum(seed, temperature):
    mdp = pc.random_mdp(5, 3, 4, seed=seed, random_action_prior=True)
    res = kl_regularised_policy_iteration(mdp, temperature=temperature, iterations=300)
    K = 301
    assert res.policies.shape == (K, 4, 5, 3) and res.returns.shape == (K,)
    torch.testing.assert_close(res.policies[0], mdp.action_prior.expand(4, -1, -1))
    slack = 1e-12 * (1 + res.returns.abs().max())
    assert (torch.diff(res.returns) >= -slack).all()  # monotone improvement
    # J* by classical hard value iteration (brute.py), not the module's own DP
    q_hard = brute.hard_value_iteration(mdp.transition.numpy(), mdp.reward.numpy(), 4)
    j_star = float(mdp.initial.numpy() @ q_hard[0].max(-1))
    assert res.optimal_return == pytest.approx(j_star, abs=1e-12)
    assert res.returns[-1].item() == pytest.approx(j_star, abs=1e-3)
    assert res.returns[0].item() < j_star - 0.1  # it did have somewhere to go
    # each step's KL within (Jₖ − Jₖ₋₁)/α, hence within T·(R_max − R_min)/α
    assert (res.kls[1:] <= res.kl_bounds[1:] + slack).all()
    r = mdp.reward
    assert (res.kls <= 4 * (r.max() - r.min()) / temperature).all()
    assert res.kls[1:].sum() <= (j_star - res.returns[0]) / temperature + 1e-9


def test_returns_and_kls_match_trajectory_enumeration():
    mdp = pc.random_mdp(3, 2, 3, seed=4)
    res = kl_regularised_policy_iteration(mdp, temperature=0.7, iterations=3)
    for k in range(1, 4):
        j = _brute_return(mdp, res.policies[k])
        assert res.returns[k].item() == pytest.approx(j, abs=1e-10)
        kl = _brute_kl(mdp, res.policies[k], res.policies[k - 1])
        assert res.kls[k].item() == pytest.approx(kl, abs=1e-10)
    assert expected_return(mdp, res.policies[1]).item() == pytest.approx(res.returns[1].item())


def test_each_iterate_is_the_argmax_of_return_minus_alpha_kl():
    # perturbing πₖ in any direction lowers J(π) − α·KL(π‖πₖ₋₁) (first-order optimality)
    mdp = pc.random_mdp(3, 2, 3, seed=2)
    alpha = 0.5
    res = kl_regularised_policy_iteration(mdp, temperature=alpha, iterations=2)
    prev, best = res.policies[1], res.policies[2]

    def objective(pi):
        return _brute_return(mdp, pi) - alpha * _brute_kl(mdp, pi, prev)

    top = objective(best)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        logits = best.log() + 0.3 * torch.randn(best.shape, generator=g, dtype=best.dtype)
        assert objective(torch.softmax(logits, -1)) < top


def test_a_prior_folded_into_the_reward_gives_the_same_policy():
    # one step from a non-uniform prior p equals soft VI with r̃ = r + α·log p(a|s), uniform
    mdp = pc.random_mdp(5, 3, 4, seed=3, random_action_prior=True)
    alpha = 0.8
    step = kl_regularised_policy_iteration(mdp, temperature=alpha, iterations=1).policies[1]
    S, A = 5, 3
    folded = mdp.replace(
        reward=mdp.reward + alpha * mdp.log_action_prior[:, :, None],
        action_prior=torch.full((S, A), 1.0 / A, dtype=torch.float64),
    )
    direct = pc.soft_value_iteration(folded, temperature=alpha, backup="expected").policy
    torch.testing.assert_close(step, direct, rtol=0, atol=1e-12)
    # and the time-varying prior is the same as a prior given through the MDP when stationary
    via_mdp = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected")
    via_arg = pc.soft_value_iteration(
        mdp.replace(action_prior=None), temperature=alpha, backup="expected",
        action_prior=mdp.action_prior.expand(4, -1, -1),
    )  # fmt: skip
    assert torch.equal(via_mdp.policy, via_arg.policy) and torch.equal(via_mdp.v, via_arg.v)


def test_float32_save_load_and_bad_input(tmp_path):
    mdp = pc.random_mdp(4, 2, 3, seed=0, dtype=torch.float32)
    res = kl_regularised_policy_iteration(mdp, temperature=1.0, iterations=5)
    assert res.policies.dtype == torch.float32 and torch.isfinite(res.returns).all()
    res.save(tmp_path / "klpi.pt")
    again = KLPolicyIterationResult.load(tmp_path / "klpi.pt")
    assert torch.equal(again.policies, res.policies) and "KLPolicyIterationResult" in repr(again)
    with pytest.raises(ValueError, match="temperature"):
        kl_regularised_policy_iteration(mdp, temperature=0.0)
    with pytest.raises(ValueError, match="iterations"):
        kl_regularised_policy_iteration(mdp, iterations=0)
    with pytest.raises(ValueError, match="action_prior"):
        pc.soft_value_iteration(mdp, action_prior=torch.ones(3, 4, 2))
