"""Soft value iteration, log p(O) and the optimal ELBO against independent routes."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import pgm_control as pc
from pgm_control.backward import soft_policy_evaluation

import brute

TINY = [
    dict(seed=0),
    dict(seed=1, random_action_prior=True),
    dict(seed=2, reward_per_next_state=False),
    dict(seed=3, concentration=0.3, random_action_prior=True),
]


@pytest.mark.parametrize("kw", TINY)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_log_evidence_equals_brute_force(kw, alpha):
    mdp = pc.random_mdp(3, 2, 4, **kw)
    expect = brute.log_evidence(mdp, alpha)
    assert pc.log_evidence(mdp, temperature=alpha).item() == pytest.approx(expect, abs=1e-10)


def test_log_evidence_with_impossible_moves_and_forbidden_actions():
    mdp = pc.random_mdp(3, 2, 4, seed=5, concentration=0.2)
    P = mdp.transition.clone()
    P[0, 0] = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    P[1, 1] = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    prior = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.5, 0.5]], dtype=torch.float64)
    mdp = mdp.replace(transition=P, action_prior=prior)
    assert pc.log_evidence(mdp).item() == pytest.approx(brute.log_evidence(mdp), abs=1e-10)
    sv = pc.soft_value_iteration(mdp)
    assert (sv.policy[:, 0, 1] == 0).all() and torch.isfinite(sv.v).all()


@pytest.mark.parametrize("steps", [[3], [0, 2], []])
def test_observed_steps_marginalise_the_others(steps):
    mdp = pc.random_mdp(3, 2, 4, seed=7)
    expect = brute.log_evidence(mdp, 1.0, observed_steps=steps)
    got = pc.log_evidence(mdp, observed_steps=steps).item()
    assert got == pytest.approx(expect, abs=1e-10)
    if not steps:
        assert got == pytest.approx(0.0, abs=1e-12)  # nothing observed: p(∅) = 1


@pytest.mark.parametrize("kw", TINY)
def test_optimal_elbo_is_brute_force_elbo_of_the_expected_policy(kw):
    mdp = pc.random_mdp(3, 2, 4, **kw)
    sv = pc.soft_value_iteration(mdp, temperature=0.7, backup="expected")
    expect = brute.elbo(mdp, sv.policy.numpy(), 0.7)
    assert pc.optimal_elbo(mdp, temperature=0.7).item() == pytest.approx(expect, abs=1e-10)


def test_optimal_elbo_is_the_maximum_found_by_gradient_ascent():
    """Independent of the recursion: maximise the analytic ELBO over logits with LBFGS."""
    mdp = pc.random_mdp(4, 3, 5, seed=11, random_action_prior=True)
    logits = torch.zeros(5, 4, 3, requires_grad=True, dtype=torch.float64)
    opt = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = -pc.policy_elbo(mdp, log_policy=torch.log_softmax(logits, -1))
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    best = pc.policy_elbo(mdp, log_policy=torch.log_softmax(logits, -1)).item()
    assert best == pytest.approx(pc.optimal_elbo(mdp).item(), abs=1e-8)


def test_deterministic_dynamics_close_the_optimism_gap():
    mdp = pc.random_mdp(6, 3, 8, seed=4, deterministic=True)
    for alpha in (0.1, 1.0, 5.0):
        ev = pc.log_evidence(mdp, temperature=alpha).item()
        assert ev == pytest.approx(pc.optimal_elbo(mdp, temperature=alpha).item(), abs=1e-10)
    sv_o = pc.soft_value_iteration(mdp, backup="optimistic")
    sv_e = pc.soft_value_iteration(mdp, backup="expected")
    torch.testing.assert_close(sv_o.q, sv_e.q)


def test_lottery_optimism_is_strict():
    mdp = pc.lottery_mdp()
    ev, best = pc.log_evidence(mdp).item(), pc.optimal_elbo(mdp).item()
    assert ev > best + 0.4  # 0.085 vs -0.380 nats
    opt = pc.soft_value_iteration(mdp, backup="optimistic").policy[0, 0]
    exp = pc.soft_value_iteration(mdp, backup="expected").policy[0, 0]
    assert opt[0] > 0.5 > exp[0]  # the posterior buys the ticket, the max-ent policy doesn't
    # closed form at T = 1, α = 1: Q_buy = log(p e^{J-c} + (1-p) e^{-c}), Q_keep = 0
    p, J, c = 1e-4, 10.0, 1.0
    q_buy = np.log(p * np.exp(J - c) + (1 - p) * np.exp(-c))
    assert ev == pytest.approx(np.log(0.5 * np.exp(q_buy) + 0.5), abs=1e-12)


@pytest.mark.parametrize("backup", ["optimistic", "expected"])
def test_policy_rows_sum_to_one_and_shapes(backup):
    mdp = pc.random_mdp(5, 3, 6, seed=2)
    sv = pc.soft_value_iteration(mdp, backup=backup, temperature=0.3)
    assert sv.q.shape == (6, 5, 3) and sv.v.shape == (7, 5) and sv.policy.shape == (6, 5, 3)
    torch.testing.assert_close(sv.policy.sum(-1), torch.ones(6, 5, dtype=torch.float64))
    assert (sv.v[-1] == 0).all()
    # V = α log Σ p(a|s) exp(Q/α)
    torch.testing.assert_close(
        sv.v[:-1], 0.3 * torch.logsumexp(mdp.log_action_prior + sv.q / 0.3, -1)
    )


def test_low_temperature_matches_hard_value_iteration():
    mdp = pc.random_mdp(8, 4, 10, seed=9)
    q_hard = brute.hard_value_iteration(mdp.transition.numpy(), mdp.reward.numpy(), 10)
    sv = pc.soft_value_iteration(mdp, temperature=1e-4, backup="expected")
    gaps = np.sort(q_hard, -1)
    unique = (gaps[..., -1] - gaps[..., -2]) > 1e-2
    assert unique.mean() > 0.9
    greedy = q_hard.argmax(-1)
    assert (sv.policy.argmax(-1).numpy()[unique] == greedy[unique]).all()
    assert (sv.policy.max(-1).values.numpy()[unique] > 1 - 1e-12).all()
    # with a uniform prior, max Q − α·log A ≤ V ≤ max Q: soft Q trails hard Q by at most
    # α·log A per remaining step
    diff = q_hard - sv.q.numpy()
    assert (diff > -1e-9).all() and (diff < 10 * 1e-4 * np.log(4) + 1e-9).all()


def test_extreme_rewards_temperatures_and_horizons_are_stable():
    mdp = pc.random_mdp(6, 3, 1000, seed=1)
    for alpha, scale in [(1e-4, 1.0), (1.0, 1e4), (1e-3, 10.0)]:
        m = mdp.replace(reward=mdp.reward * scale)
        for backup in ("optimistic", "expected"):
            sv = pc.soft_value_iteration(m, temperature=alpha, backup=backup)
            assert torch.isfinite(sv.q).all() and torch.isfinite(sv.v).all()
            assert not torch.isnan(sv.policy).any()
            torch.testing.assert_close(sv.policy.sum(-1), torch.ones(1000, 6, dtype=torch.float64))
        assert torch.isfinite(pc.log_evidence(m, temperature=alpha))


def test_stable_matvec_fallback_agrees_with_logsumexp():
    """Rewards spanning thousands of nats make the fast matvec underflow; rows must be redone."""
    mdp = pc.random_mdp(5, 2, 6, seed=3, concentration=0.5)
    r = mdp.reward.clone()
    r[0, 0, 1] = -5000.0
    r[2, 1, :] = -3000.0
    m = mdp.replace(reward=r)
    sv = pc.soft_value_iteration(m, temperature=1.0)
    # direct route: logsumexp everywhere
    v = torch.zeros(5, dtype=torch.float64)
    for t in reversed(range(6)):
        q = torch.logsumexp(m.log_transition + m.reward + v, -1)
        torch.testing.assert_close(sv.q[t], q, rtol=1e-12, atol=1e-9)
        v = torch.logsumexp(m.log_action_prior + q, -1)


def test_discounted_fixed_point_matches_linear_policy_evaluation():
    mdp = pc.random_mdp(6, 3, 1, seed=8, random_action_prior=True)
    alpha, gamma = 0.5, 0.9
    res = pc.discounted_soft_value_iteration(mdp, discount=gamma, temperature=alpha)
    pi = res.policy
    torch.testing.assert_close(pi.sum(-1), torch.ones(6, dtype=torch.float64))
    # soft policy evaluation by a linear solve: V = Σ π (r̄ + γ P V) − α KL(π ‖ prior)
    r_pi = (pi * mdp.expected_reward).sum(-1) - alpha * (pi * (pi / mdp.action_prior).log()).sum(-1)
    P_pi = torch.einsum("sa,sax->sx", pi, mdp.transition)
    v = torch.linalg.solve(torch.eye(6, dtype=torch.float64) - gamma * P_pi, r_pi)
    torch.testing.assert_close(res.v, v, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="`discount`"):
        pc.discounted_soft_value_iteration(mdp, discount=1.0)


@given(
    seed=st.integers(0, 10_000),
    S=st.integers(1, 5),
    A=st.integers(1, 4),
    T=st.integers(1, 6),
    alpha=st.floats(0.05, 20.0),
)
def test_property_evidence_bounds_optimal_elbo(seed, S, A, T, alpha):
    mdp = pc.random_mdp(S, A, T, seed=seed, random_action_prior=bool(seed % 2))
    ev = pc.log_evidence(mdp, temperature=alpha).item()
    best = pc.optimal_elbo(mdp, temperature=alpha).item()
    assert ev >= best - 1e-9
    # forward messages give the same evidence by the other direction of the chain
    log_a = pc.log_forward_messages(mdp, temperature=alpha)
    assert torch.logsumexp(log_a[-1], 0).item() == pytest.approx(ev, abs=1e-9)


# ------------------------------------------------------- soft policy evaluation


def _softmax_policy(T, S, A, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(T, S, A, generator=g, dtype=torch.float64), -1)


@pytest.mark.parametrize("steps", [None, [1, 3]])
@pytest.mark.parametrize("kw", TINY)
def test_soft_policy_evaluation_v0_is_the_policy_elbo(kw, steps):
    """Σ p0·V₀^π/α (backward, expected backup) = policy_elbo(π) (forward occupancy route)."""
    mdp = pc.random_mdp(4, 3, 5, **kw)
    pi = _softmax_policy(5, 4, 3, seed=kw["seed"])
    res = soft_policy_evaluation(mdp, pi, temperature=0.6, observed_steps=steps)
    assert res.backup == "policy" and torch.equal(res.policy, pi)
    assert res.v.dtype == mdp.float_dtype and (res.v[-1] == 0).all()
    elbo = pc.policy_elbo(mdp, pi, temperature=0.6, observed_steps=steps)
    via_values = (mdp.initial * res.v[0]).sum() / 0.6
    assert via_values.item() == pytest.approx(elbo.item(), abs=1e-12)
    if steps is None:  # and by enumerating every trajectory of a smaller MDP
        small = pc.random_mdp(3, 2, 3, **kw)
        pi = _softmax_policy(3, 3, 2, seed=kw["seed"])
        v0 = soft_policy_evaluation(small, pi, temperature=0.6).v[0]
        via_values = (small.initial * v0).sum() / 0.6
        assert via_values.item() == pytest.approx(brute.elbo(small, pi.numpy(), 0.6), abs=1e-10)


def test_soft_policy_evaluation_matches_monte_carlo_returns_with_the_entropy_bonus():
    """V₀^π(s) = E[Σₜ r − α·log(πₜ(a|s)/p(a|s)) | s₀ = s], from rollouts of π in the true P."""
    mdp = pc.random_mdp(4, 3, 6, seed=12, random_action_prior=True)
    alpha, n = 0.8, 200_000
    pi = _softmax_policy(6, 4, 3, seed=5)
    res = soft_policy_evaluation(mdp, pi, temperature=alpha)
    traj = pc.sample_trajectories(mdp, pi, n, seed=4)
    s, a = traj.states[:, :-1], traj.actions
    t = torch.arange(6)
    bonus = -alpha * (torch.log(pi[t, s, a]) - mdp.log_action_prior[s, a])
    soft_return = (traj.rewards + bonus).sum(-1)
    for s0 in range(4):
        start = traj.states[:, 0] == s0
        mc = soft_return[start]
        se = mc.std() / mc.numel() ** 0.5
        assert abs(mc.mean() - res.v[0, s0]) < 5 * se
    # and the Q of the first step, from the rollouts that took a given action there
    s0, a0 = traj.states[:, 0], traj.actions[:, 0]
    later = soft_return - bonus[:, 0]  # Qₜ(s,a) excludes the bonus of the action it scores
    for s_, a_ in [(0, 0), (1, 2), (3, 1)]:
        pick = (s0 == s_) & (a0 == a_)
        mc = later[pick]
        assert abs(mc.mean() - res.q[0, s_, a_]) < 5 * mc.std() / mc.numel() ** 0.5


@pytest.mark.parametrize("seed", [0, 3])
def test_soft_policy_iteration_reaches_the_optimal_elbo_in_T_steps(seed):
    """π ← p(a|s)·exp(Qₜ^π/α)/Z, from the uniform policy: exact after T improvements."""
    mdp = pc.random_mdp(5, 3, 6, seed=seed, random_action_prior=True)
    alpha = 0.5
    pi = torch.full((6, 5, 3), 1 / 3, dtype=torch.float64)
    elbos = []
    for _ in range(6):
        q = soft_policy_evaluation(mdp, pi, temperature=alpha).q
        pi = torch.softmax(mdp.log_action_prior + q / alpha, -1)
        elbos.append(pc.policy_elbo(mdp, pi, temperature=alpha).item())
    assert all(b >= a - 1e-12 for a, b in zip(elbos, elbos[1:]))  # monotone improvement
    best = pc.optimal_elbo(mdp, temperature=alpha).item()
    assert elbos[-1] == pytest.approx(best, abs=1e-12)
    expected = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected").policy
    torch.testing.assert_close(pi, expected, rtol=0, atol=1e-12)


def test_soft_policy_evaluation_of_a_forbidden_action_is_minus_inf_never_nan():
    mdp = pc.random_mdp(3, 2, 3, seed=5)
    prior = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    mdp = mdp.replace(action_prior=prior)
    pi = torch.full((3, 2), 0.5, dtype=torch.float64)
    res = soft_policy_evaluation(mdp, pi)
    assert not torch.isnan(res.v).any() and not torch.isnan(res.q).any()
    assert (res.v[:-1, 0] == -torch.inf).all()  # acting where the prior forbids
    assert pc.policy_elbo(mdp, pi) == -torch.inf == (mdp.initial * res.v[0]).sum()


def test_discounted_argument_checks():
    mdp = pc.random_mdp(3, 2, 1, seed=0)
    with pytest.raises(ValueError, match="`tol`"):
        pc.discounted_soft_value_iteration(mdp, discount=0.5, tol=0.0)
    with pytest.raises(TypeError, match="`max_iterations`"):
        pc.discounted_soft_value_iteration(mdp, discount=0.5, max_iterations=2.5)
    res = pc.discounted_soft_value_iteration(mdp, discount=0.5, max_iterations=np.int64(500))
    assert res.iterations < 500
    with pytest.raises(RuntimeError, match="did not reach"):
        pc.discounted_soft_value_iteration(mdp, discount=0.99, max_iterations=3)
    # γ = 0 is myopic soft VI: Q = r̄
    res0 = pc.discounted_soft_value_iteration(mdp, discount=0.0)
    torch.testing.assert_close(res0.q, mdp.expected_reward, rtol=0, atol=0)
