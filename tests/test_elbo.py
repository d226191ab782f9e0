"""The analytic ELBO of the structured guide against brute-force sums over trajectories."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import pgm_control as pc

import brute


def _random_policy(T, S, A, seed, stationary=False):
    g = torch.Generator().manual_seed(seed)
    shape = (S, A) if stationary else (T, S, A)
    return torch.softmax(2 * torch.randn(shape, generator=g, dtype=torch.float64), -1)


@pytest.mark.parametrize("stationary", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_policy_elbo_equals_brute_force_line_1(seed, stationary):
    mdp = pc.random_mdp(3, 2, 4, seed=seed, random_action_prior=True)
    pi = _random_policy(4, 3, 2, seed, stationary)
    expect = brute.elbo(mdp, pi.numpy(), 0.8)
    assert pc.policy_elbo(mdp, pi, temperature=0.8).item() == pytest.approx(expect, abs=1e-10)


def test_elbo_terms_are_line_5():
    """ELBO = E[Σ r/α] + Σ E[H(q)] + E[Σ log p(a|s)]: each term by Monte Carlo as well."""
    mdp = pc.random_mdp(4, 3, 5, seed=3, random_action_prior=True)
    pi = _random_policy(5, 4, 3, seed=3)
    terms = pc.elbo_terms(mdp, pi, temperature=2.0)
    torch.testing.assert_close(terms.elbo, terms.reward + terms.entropy + terms.cross_entropy)
    traj = pc.sample_trajectories(mdp, pi, 200_000, seed=1)
    mc_reward = traj.returns.mean() / 2.0
    t = torch.arange(5)
    log_q = torch.log(pi[t, traj.states[:, :-1], traj.actions]).sum(-1)
    log_p = mdp.log_action_prior[traj.states[:, :-1], traj.actions].sum(-1)
    se = traj.returns.std() / 2.0 / 200_000**0.5
    assert abs(mc_reward - terms.reward) < 5 * se
    assert abs(-log_q.mean() - terms.entropy) < 5 * log_q.std() / 200_000**0.5
    assert abs(log_p.mean() - terms.cross_entropy) < 5 * log_p.std() / 200_000**0.5


@pytest.mark.parametrize("seed", [0, 4])
def test_kl_identity_log_evidence_minus_elbo(seed):
    mdp = pc.random_mdp(3, 2, 3, seed=seed)
    pi = _random_policy(3, 3, 2, seed)
    kl = pc.posterior_kl(mdp, pi, temperature=1.5).item()
    assert kl == pytest.approx(brute.kl_to_posterior(mdp, pi.numpy(), 1.5), abs=1e-10)
    assert kl > 0


def test_policy_elbo_handles_zero_probabilities_with_finite_gradients():
    mdp = pc.random_mdp(3, 3, 3, seed=1)
    logits = torch.tensor([[0.0, -torch.inf, 1.0]] * 3, dtype=torch.float64).expand(3, 3, 3).clone()
    logits.requires_grad_(True)
    elbo = pc.policy_elbo(mdp, log_policy=torch.log_softmax(logits, -1))
    elbo.backward()
    assert torch.isfinite(elbo)
    assert not torch.isnan(logits.grad).any()
    pi = torch.softmax(logits.detach(), -1).requires_grad_(True)
    pc.policy_elbo(mdp, pi).backward()
    assert not torch.isnan(pi.grad).any()
    # a guide that takes an action the prior forbids has ELBO = -inf
    prior = torch.tensor([[1.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    assert (
        pc.policy_elbo(mdp.replace(action_prior=prior), torch.ones(3, 3, dtype=torch.float64) / 3)
        == -torch.inf
    )


def test_policy_validation():
    mdp = pc.random_mdp(3, 2, 4, seed=0)
    with pytest.raises(ValueError, match="`policy` must have shape"):
        pc.policy_elbo(mdp, torch.ones(4, 3, 3, dtype=torch.float64) / 3)
    with pytest.raises(ValueError, match="`policy` rows must be probabilities"):
        pc.policy_elbo(mdp, torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="negative"):
        pc.policy_elbo(mdp, torch.tensor([[1.5, -0.5]] * 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        pc.policy_elbo(mdp, torch.full((3, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(TypeError, match="exactly one"):
        pc.policy_elbo(mdp)


@given(seed=st.integers(0, 10_000), S=st.integers(1, 5), A=st.integers(1, 4), T=st.integers(1, 6))
def test_property_optimal_policy_attains_and_bounds(seed, S, A, T):
    """For every MDP: ELBO(π*) = optimal_elbo ≥ ELBO(any π), and KL ≥ 0."""
    mdp = pc.random_mdp(S, A, T, seed=seed, random_action_prior=bool(seed % 3 == 0))
    alpha = 0.2 + (seed % 7)
    best = pc.optimal_elbo(mdp, temperature=alpha)
    pi_star = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected").policy
    assert pc.policy_elbo(mdp, pi_star, temperature=alpha).item() == pytest.approx(
        best.item(), abs=1e-9
    )
    other = _random_policy(T, S, A, seed)
    assert pc.policy_elbo(mdp, other, temperature=alpha) <= best + 1e-9
    assert pc.posterior_kl(mdp, other, temperature=alpha) >= -1e-9


def test_trajectory_elbo_refuses_unnormalised_factors():
    mdp = pc.random_mdp(3, 2, 4, seed=0, dtype=torch.float64)
    logits = torch.randn(4, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="`log_policy`.*log_softmax"):
        pc.trajectory_elbo(mdp, logits)  # raw logits, not log-probabilities
    log_pi = torch.log_softmax(logits, -1)
    with pytest.raises(ValueError, match="`log_initial`.*log_softmax"):
        pc.trajectory_elbo(mdp, log_pi, log_initial=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`log_dynamics`.*log_softmax"):
        pc.trajectory_elbo(mdp, log_pi, log_dynamics=torch.zeros(4, 3, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`log_policy` must have shape"):
        pc.trajectory_elbo(mdp, log_pi[:, :2])
    with pytest.raises(TypeError, match="`mdp` must be a TabularMDP"):
        pc.trajectory_elbo("FrozenLake", log_pi)


@pytest.mark.parametrize("seed", [0, 1])
def test_one_elbo_line_5_and_line_3_agree(seed):
    """trajectory_elbo without learned factors is policy_elbo, bit for bit (one code path);
    with q(s₀) = p0 and qₜ(s'|s,a) = P given explicitly, the log-ratios vanish (line 3 → 5)."""
    mdp = pc.random_mdp(4, 3, 5, seed=seed, random_action_prior=True)
    log_pi = torch.log(_random_policy(5, 4, 3, seed))
    line5 = pc.trajectory_elbo(mdp, log_pi, temperature=0.7)
    assert torch.equal(line5, pc.policy_elbo(mdp, log_policy=log_pi, temperature=0.7))
    line3 = pc.trajectory_elbo(
        mdp,
        log_pi,
        log_initial=mdp.log_initial,
        log_dynamics=mdp.log_transition.expand(5, 4, 3, 4),
        temperature=0.7,
    )
    assert line3.item() == pytest.approx(line5.item(), abs=1e-12)
    small = pc.random_mdp(3, 2, 3, seed=seed, random_action_prior=True)
    log_pi = torch.log(_random_policy(3, 3, 2, seed))
    expect = brute.elbo(small, log_pi.exp().numpy(), 0.7)
    assert pc.trajectory_elbo(small, log_pi, temperature=0.7).item() == pytest.approx(
        expect, abs=1e-10
    )


def test_line_3_elbo_with_learned_dynamics_equals_brute_force():
    """E_q[log p(τ, O) − log q(τ)] summed over every trajectory of the full-posterior guide."""
    mdp = pc.random_mdp(3, 2, 3, seed=4)
    g = torch.Generator().manual_seed(2)
    log_pi = torch.log_softmax(torch.randn(3, 3, 2, generator=g, dtype=torch.float64), -1)
    log_q0 = torch.log_softmax(torch.randn(3, generator=g, dtype=torch.float64), -1)
    log_qd = torch.log_softmax(torch.randn(3, 3, 2, 3, generator=g, dtype=torch.float64), -1)
    got = pc.trajectory_elbo(mdp, log_pi, log_initial=log_q0, log_dynamics=log_qd)
    P, r, p0 = mdp.transition.numpy(), mdp.reward.numpy(), mdp.initial.numpy()
    prior = mdp.action_prior.numpy()
    pi, q0, qd = log_pi.exp().numpy(), log_q0.exp().numpy(), log_qd.exp().numpy()
    total = 0.0
    for s_seq, a_seq in brute.trajectories(mdp):
        q = q0[s_seq[0]]
        log_joint = np.log(p0[s_seq[0]])
        for t in range(3):
            s, a, s2 = s_seq[t], a_seq[t], s_seq[t + 1]
            q *= pi[t, s, a] * qd[t, s, a, s2]
            log_joint += np.log(prior[s, a] * P[s, a, s2]) + r[s, a, s2]
        total += q * (log_joint - np.log(q))
    assert got.item() == pytest.approx(total, abs=1e-10)
    terms = pc.elbo_terms(mdp, log_policy=log_pi)
    assert got < terms.elbo  # learning q(s₀), q(s'|s,a) away from p0, P costs here
