"""MaxEnt IRL: the likelihood equals brute-force enumeration (full and cut-short
demonstrations), its gradient equals central finite differences and the forward–backward
expected counts (the marginals route), and the learner recovers hidden rewards (acceptance:
random MDPs and FrozenLake 8x8 with exact and with 500 sampled demonstrations).
"""

import math
import sys

import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.demonstrations import Demonstrations, expected_counts, sample_demonstrations
from pgm_control.irl_marginals import linear_objective, log_normaliser_and_counts
from pgm_control.irl_result import IRLResult
from pgm_control.maxent_irl import irl_log_likelihood, maxent_irl

from brute import table

F64, F32 = torch.float64, torch.float32


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tables: one thread is several times faster on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(deterministic=False, seed=0):
    return pc.random_mdp(2, 2, 3, seed=seed, deterministic=deterministic, random_action_prior=True)


def _brute_log_likelihood(mdp, reward, demos, alpha):
    """(1/N)·Σₙ [log p(τₙ^{0:kₙ}, O) − log Z − log p(τₙ^{0:kₙ})] by enumerating every τ."""
    m = mdp.replace(reward=reward)
    rows = table(m, alpha)
    log_z = math.log(sum(dyn * pa * math.exp(ret) for _, _, dyn, pa, ret, _ in rows))
    P, p0, prior = (x.numpy() for x in (mdp.transition, mdp.initial, mdp.action_prior))
    total = 0.0
    for n in range(len(demos)):
        k = int(demos.lengths[n])
        s, a = demos.states[n].tolist(), demos.actions[n].tolist()
        joint = sum(
            dyn * pa * math.exp(ret)
            for s_seq, a_seq, dyn, pa, ret, _ in rows
            if list(s_seq[: k + 1]) == s[: k + 1] and list(a_seq[:k]) == a[:k]
        )
        log_prefix = math.log(p0[s[0]]) + sum(
            math.log(prior[s[t], a[t]] * P[s[t], a[t], s[t + 1]]) for t in range(k)
        )
        total += math.log(joint) - log_z - log_prefix
    return total / len(demos)


def _demos_with_early_ends(mdp, seed=0):
    d = sample_demonstrations(mdp, pc.soft_value_iteration(mdp).policy, 6, seed=seed)
    mask = torch.arange(mdp.horizon).expand(6, -1) < torch.tensor([3, 3, 2, 1, 0, 3])[:, None]
    return Demonstrations(d.states, d.actions, mask)


@pytest.mark.parametrize("early_ends", [False, True])
@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_log_likelihood_equals_brute_force(early_ends, alpha):
    mdp = _tiny()
    demos = _demos_with_early_ends(mdp) if early_ends else sample_demonstrations(
        mdp, pc.soft_value_iteration(mdp).policy, 5, seed=1
    )  # fmt: skip
    reward = torch.randn(2, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    got = irl_log_likelihood(mdp, reward, demos, temperature=alpha)
    expected = _brute_log_likelihood(mdp, reward, demos, alpha)
    assert got.item() == pytest.approx(expected, abs=1e-10)


def test_causal_likelihood_equals_the_expected_policy_log_likelihood_by_enumeration():
    """backup="expected" with exact counts of π_E: L = E_{π_E}[Σₜ log πᵣ(aₜ|sₜ)/p(aₜ|sₜ)]."""
    mdp = _tiny()
    alpha = 0.7
    expert = pc.soft_value_iteration(
        mdp.replace(reward=torch.randn(2, 2, dtype=F64)), backup="expected"
    )
    reward = torch.randn(2, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    got = irl_log_likelihood(
        mdp, reward, expected_counts(mdp, expert), temperature=alpha, backup="expected"
    )
    pi_r = pc.soft_value_iteration(mdp.replace(reward=reward), temperature=alpha, backup="expected")
    log_ratio = (pi_r.policy / mdp.action_prior).log().numpy()
    expected = 0.0
    for s_seq, a_seq, _, _, _, q in table(mdp, alpha, expert.policy.numpy()):
        expected += q * sum(log_ratio[t, s_seq[t], a_seq[t]] for t in range(mdp.horizon))
    assert got.item() == pytest.approx(expected, abs=1e-10)


def _causal_log_ratio_by_loops(mdp, reward, alpha):
    """log πₜ(a|s)/p(a|s) = (Qₜ − Vₜ)/α of the expected soft backup, by plain loops (numpy):
    Qₜ(s,a) = Σ_s' P(s'|s,a)·(r(s,a,s') + Vₜ₊₁(s')), Vₜ(s) = α·log Σₐ p(a|s)·exp(Qₜ(s,a)/α)."""
    P, prior = mdp.transition.numpy(), mdp.action_prior.numpy()
    r = np.broadcast_to(reward.numpy().reshape(reward.shape + (1,) * (3 - reward.ndim)), P.shape)
    S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
    out, v_next = np.zeros((T, S, A)), np.zeros(S)
    for t in reversed(range(T)):
        q = np.array([[sum(P[s, a, x] * (r[s, a, x] + v_next[x]) for x in range(S))
                       for a in range(A)] for s in range(S)])  # fmt: skip
        v = np.array([alpha * math.log(sum(prior[s, a] * math.exp(q[s, a] / alpha)
                                          for a in range(A))) for s in range(S)])  # fmt: skip
        out[t], v_next = (q - v[:, None]) / alpha, v
    return out


@pytest.mark.parametrize("early_ends", [False, True])
def test_causal_likelihood_equals_the_demonstrators_log_policy_ratio(early_ends):
    """objective="causal": L_c = (1/N)·Σₙ Σ_{t<kₙ} log πₜ(aₜ|sₜ)/p(aₜ|sₜ), Q and V by loops."""
    mdp = _tiny()
    demos = _demos_with_early_ends(mdp) if early_ends else sample_demonstrations(
        mdp, pc.soft_value_iteration(mdp).policy, 5, seed=1
    )  # fmt: skip
    reward = torch.randn(2, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    got = irl_log_likelihood(mdp, reward, demos, temperature=0.6, backup="expected",
                             objective="causal")  # fmt: skip
    log_ratio = _causal_log_ratio_by_loops(mdp, reward, 0.6)
    expected = np.mean([
        sum(log_ratio[t, demos.states[n, t], demos.actions[n, t]]
            for t in range(int(demos.lengths[n])))
        for n in range(len(demos))
    ])  # fmt: skip
    assert got.item() == pytest.approx(expected, abs=1e-10)


def test_causal_likelihood_averages_to_the_features_form_by_enumeration():
    """E_τ~expert[L_c(τ)] over every trajectory = L(exact counts): the two objectives differ per
    sample by Σₜ (E_{s'}[Vₜ₊₁] − Vₜ₊₁(sₜ₊₁))/α, which has mean zero but is not zero."""
    mdp = _tiny()
    alpha = 0.7
    hidden = torch.randn(2, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    expert = pc.soft_value_iteration(mdp.replace(reward=hidden), backup="expected").policy
    reward = torch.randn(2, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    kw = dict(temperature=alpha, backup="expected")
    mean, differs = 0.0, False
    for s_seq, a_seq, _, _, _, q in table(mdp, alpha, expert.numpy()):
        one = (torch.tensor([s_seq]), torch.tensor([a_seq]))
        causal = irl_log_likelihood(mdp, reward, one, objective="causal", **kw).item()
        mean += q * causal
        differs |= abs(causal - irl_log_likelihood(mdp, reward, one, **kw).item()) > 1e-3
    exact = expected_counts(mdp, expert)
    assert mean == pytest.approx(irl_log_likelihood(mdp, reward, exact, **kw).item(), abs=1e-10)
    assert differs  # per sample the estimators are different functions of ψ
    # with exact counts the causal objective is the features form itself
    got = irl_log_likelihood(mdp, reward, exact, objective="causal", **kw)
    assert got.item() == irl_log_likelihood(mdp, reward, exact, **kw).item()


def _expected_counts_by_marginals(mdp, reward, alpha, backup):
    """Σₜ p(sₜ,aₜ,sₜ₊₁ | O) from the forward–backward marginals, or Σₜ dₜ·π·P."""
    m = mdp.replace(reward=reward)
    if backup == "optimistic":
        joint = pc.state_action_marginals(m, temperature=alpha)[..., None]
        return (joint * pc.posterior_dynamics(m, temperature=alpha)).sum(0)
    return expected_counts(m, pc.soft_value_iteration(m, temperature=alpha, backup=backup))


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("backup", ["optimistic", "expected"])
def test_gradient_equals_the_marginals_route(backup, dtype):
    """∂L/∂r by autograd through the messages = (empirical − expected counts)/α."""
    mdp = pc.random_mdp(6, 3, 5, seed=1).to(dtype=dtype)
    alpha = 0.8
    demos = sample_demonstrations(mdp, pc.soft_value_iteration(mdp).policy, 40, seed=2)
    reward = torch.randn(6, 3, 6, dtype=dtype, generator=torch.Generator().manual_seed(0))
    r = reward.clone().requires_grad_(True)
    irl_log_likelihood(mdp, r, demos, temperature=alpha, backup=backup).backward()
    counts = demos.counts(6, 3, by_time=False, dtype=dtype)
    expected = (counts - _expected_counts_by_marginals(mdp, reward, alpha, backup)) / alpha
    assert r.grad.dtype == dtype
    tol = 1e-12 if dtype == F64 else 2e-5
    assert (r.grad - expected).abs().max().item() < tol


def _central_differences(f, psi, h=1e-6):
    """(f(ψ + h·eᵢ) − f(ψ − h·eᵢ))/(2h) for each i, in float64, without a graph."""
    psi = psi.detach().to(F64)
    fd = torch.zeros(psi.numel(), dtype=F64)
    with torch.no_grad():
        for i in range(psi.numel()):
            e = torch.zeros_like(psi)
            e[i] = h
            fd[i] = (f(psi + e) - f(psi - e)) / (2 * h)
    return fd


@pytest.mark.parametrize("backup", ["optimistic", "expected"])
@pytest.mark.parametrize("shape", ["S", "SA", "SAS"])
def test_gradient_equals_central_finite_differences(backup, shape):
    mdp = pc.random_mdp(4, 2, 4, seed=3)
    d = sample_demonstrations(mdp, pc.soft_value_iteration(mdp).policy, 8, seed=0)
    mask = torch.arange(4).expand(8, -1) < torch.tensor([4, 4, 3, 1, 2, 4, 0, 4])[:, None]
    demos = Demonstrations(d.states, d.actions, mask)
    lead = {"S": (4,), "SA": (4, 2), "SAS": (4, 2, 4)}[shape]
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(*lead, 3, dtype=F64, generator=g)
    psi = torch.randn(3, dtype=F64, generator=g, requires_grad=True)
    reward_of = lambda w: feats @ w
    L = irl_log_likelihood(mdp, reward_of(psi), demos, temperature=0.6, backup=backup)
    (grad,) = torch.autograd.grad(L, psi)
    fd = _central_differences(
        lambda w: irl_log_likelihood(mdp, reward_of(w), demos, temperature=0.6, backup=backup), psi
    )
    assert torch.allclose(grad, fd, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("dtype", [F64, F32])
def test_causal_gradient_equals_central_finite_differences(dtype):
    """∂L_c/∂ψ by autograd through the expected backup = central differences (in float64)."""
    mdp = pc.random_mdp(4, 2, 4, seed=3)
    d = sample_demonstrations(mdp, pc.soft_value_iteration(mdp).policy, 8, seed=0)
    mask = torch.arange(4).expand(8, -1) < torch.tensor([4, 4, 3, 1, 2, 4, 0, 4])[:, None]
    demos = Demonstrations(d.states, d.actions, mask)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(4, 2, 4, 3, dtype=F64, generator=g)
    psi = torch.randn(3, dtype=F64, generator=g)
    kw = dict(temperature=0.6, backup="expected", objective="causal")
    w = psi.to(dtype).requires_grad_(True)
    L = irl_log_likelihood(mdp.to(dtype=dtype), feats.to(dtype) @ w, demos, **kw)
    (grad,) = torch.autograd.grad(L, w)
    assert grad.dtype == dtype
    fd = _central_differences(lambda w: irl_log_likelihood(mdp, feats @ w, demos, **kw), psi)
    atol = 1e-7 if dtype == F64 else 1e-4
    assert torch.allclose(grad.double(), fd, atol=atol, rtol=1e-6)


@pytest.mark.parametrize("objective", ["features", "causal"])
def test_map_optimum_balances_the_score_and_the_gaussian_prior(objective):
    """prior_scale=σ: at the MAP ψ the score equals ψ/(σ²·N). The score comes from an
    independent route: the features form's residual (μ̂ − μ_ψ)/α with μ_ψ from
    expected_counts of the learned policy, or central differences of L_c."""
    truth, feats = _random_problem("expected")
    alpha, sigma = 0.5, 0.3
    expert = pc.soft_value_iteration(truth, temperature=alpha, backup="expected").policy
    demos = sample_demonstrations(truth, expert, 40, seed=1)
    blind = truth.replace(reward=torch.zeros_like(truth.reward))
    kw = dict(temperature=alpha, backup="expected", objective=objective)
    res = maxent_irl(blind, feats, demos, prior_scale=sigma, steps=200, progress=False, **kw)
    psi = res.params["weights"]
    # converged to where a step changes L (≈ 11) by less than its round-off, ≈ 1e-7 here
    assert res.extra["prior_scale"] == sigma and res.feature_residual[-1] <= 2e-7
    if objective == "features":  # the prior's gradient on the marginals route = autograd's
        auto = maxent_irl(blind, feats, demos, prior_scale=sigma, steps=200, progress=False,
                          gradient="autograd", **kw)  # fmt: skip
        assert torch.allclose(auto.params["weights"], psi, atol=1e-6)
        mu_hat = demos.feature_expectations(feats[:, :, None, :].expand(25, 4, 25, 6))
        mu = torch.einsum("sax,saf->f", expected_counts(blind, res.policy), feats)
        score = (mu_hat - mu) / alpha
    else:
        score = _central_differences(
            lambda w: irl_log_likelihood(blind, feats @ w, demos, **kw), psi
        )
    assert torch.allclose(score, psi / (sigma**2 * 40), atol=1e-6)
    # the prior shrinks: the MLE's weights are larger
    mle = maxent_irl(blind, feats, demos, steps=200, progress=False, **kw).params["weights"]
    assert psi.norm() < mle.norm()


# ------------------------------------------------------------------ acceptance
def _occupancy_kl(mdp, expert, learned):
    """Σₜ Σ_s dₜᴱ(s)·KL(πᴱₜ(·|s) ‖ πᴸₜ(·|s)) = KL of the two trajectory distributions."""
    d = pc.policy_state_distribution(mdp, expert)[:-1]
    on = expert > 0
    log_ratio = torch.where(on, expert.log() - learned.log(), torch.zeros_like(expert))
    return (d * (expert * log_ratio).sum(-1)).sum().item()


def _true_return(mdp, policy):
    return (expected_counts(mdp, policy) * mdp.reward).sum().item()


def _random_problem(backup):
    """Hidden linear reward over random (S, A, F) features; deterministic P and p0 for the
    optimistic posterior (where it is the demonstrators' model), stochastic for the causal one."""
    mdp = pc.random_mdp(25, 4, 12, seed=7, deterministic=backup == "optimistic")
    g = torch.Generator().manual_seed(11)
    feats = torch.randn(25, 4, 6, dtype=F64, generator=g)
    weights = torch.randn(6, dtype=F64, generator=g)
    return mdp.replace(reward=feats @ weights), feats


def _frozenlake_problem(backup, horizon=24):
    """FrozenLake 8x8 (slippery for the causal model, not for the optimistic posterior) with a
    hidden reward +2 per step on the goal, −1 in a hole, on state features [goal, hole, 1].
    (The constant feature adds T to every return: its weight is not identifiable and stays 0.)"""
    slippery = backup == "expected"
    mdp = pc.TabularMDP.from_gymnasium(
        "FrozenLake-v1", horizon, map_name="8x8", is_slippery=slippery
    )
    desc = np.asarray(mdp.desc).astype(str).reshape(-1)
    feats = torch.tensor(np.stack([desc == "G", desc == "H", np.ones(64, bool)], -1), dtype=F64)
    assert feats[:, :2].sum() == 11  # 1 goal, 10 holes
    reward = feats @ torch.tensor([2.0, -1.0, 0.0], dtype=F64)  # r(s), the state acted in
    return mdp.replace(reward=reward[:, None].expand(64, 4)), feats


@pytest.mark.slow
@pytest.mark.parametrize(
    "problem, backup, sampled",
    [(_random_problem, "optimistic", True), (_random_problem, "expected", True),
     (_frozenlake_problem, "optimistic", True), (_frozenlake_problem, "expected", False)],
)  # fmt: skip
def test_acceptance_recovers_the_hidden_reward(problem, backup, sampled):
    """Exact expert statistics: residual ≤ 1e-4 and KL ≤ 1e-4; 500 demonstrations: KL ≤ 0.02
    and the true return within 2%. Slippery FrozenLake 8x8 at T = 24 is held to the exact
    targets only: its expert reaches the goal with probability < 1e-3 (0–1 of 500 episodes);
    its sampled case is the next test, at T = 100 (see the README)."""
    truth, feats = problem(backup)
    alpha = 0.5
    expert = pc.soft_value_iteration(truth, temperature=alpha, backup=backup).policy
    blind = truth.replace(reward=torch.zeros_like(truth.reward))  # the learner's MDP
    # exact expert statistics: the residual and the KL go to zero
    exact = maxent_irl(
        blind, feats, expected_counts(truth, expert), temperature=alpha, backup=backup,
        steps=300, progress=False,
    )  # fmt: skip
    assert exact.feature_residual[-1] <= 1e-4
    assert _occupancy_kl(truth, expert, exact.policy) <= 1e-4
    if not sampled:
        return
    # 500 sampled demonstrations
    demos = sample_demonstrations(truth, expert, 500, seed=0)
    res = maxent_irl(
        blind, feats, demos, temperature=alpha, backup=backup, steps=300, progress=False
    )
    assert res.feature_residual[-1] <= 1e-4  # the optimum of the empirical likelihood
    assert _occupancy_kl(truth, expert, res.policy) <= 0.02
    r_expert, r_learned = _true_return(truth, expert), _true_return(truth, res.policy)
    assert abs(r_learned - r_expert) <= 0.02 * abs(r_expert)
    # the likelihood climbs (LBFGS with a strong-Wolfe line search never goes down)
    assert np.all(np.diff(res.log_likelihood) >= -1e-9)


@pytest.mark.slow
def test_acceptance_slippery_frozenlake_from_500_demonstrations():
    """Slippery FrozenLake 8x8, T = 100 (the expert reaches the goal with probability 0.49; at
    T = 24 with < 1e-3): exact counts give residual ≤ 1e-4 and KL ≤ 1e-4; 500 demonstrations
    with the causal likelihood (the maximum causal entropy model's MLE) give KL ≤ 0.02 and the
    true return within 2%. The feature-matching estimator on the same demonstrations is off
    by far more: its goal counts carry the noise of every slip (README, "Inverse RL")."""
    truth, feats = _frozenlake_problem("expected", horizon=100)
    alpha = 0.5
    expert = pc.soft_value_iteration(truth, temperature=alpha, backup="expected").policy
    goal = int(feats[:, 0].argmax())
    assert 0.45 < pc.policy_state_distribution(truth, expert)[-1, goal].item() < 0.55
    blind = truth.replace(reward=torch.zeros_like(truth.reward))
    kw = dict(temperature=alpha, backup="expected", steps=300, progress=False)
    exact = maxent_irl(blind, feats, expected_counts(truth, expert), objective="causal", **kw)
    assert exact.feature_residual[-1] <= 1e-4
    assert _occupancy_kl(truth, expert, exact.policy) <= 1e-4
    demos = sample_demonstrations(truth, expert, 500, seed=0)
    assert 200 < int((demos.states[:, -1] == goal).sum()) < 300
    res = maxent_irl(blind, feats, demos, objective="causal", **kw)
    assert res.feature_residual[-1] <= 1e-4 and res.extra["objective"] == "causal"
    assert _occupancy_kl(truth, expert, res.policy) <= 0.02
    r_expert, r_learned = _true_return(truth, expert), _true_return(truth, res.policy)
    assert abs(r_learned - r_expert) <= 0.02 * abs(r_expert)
    assert np.all(np.diff(res.log_likelihood) >= -1e-9)
    # the natural contrast: feature matching on the same 500 demonstrations (measured KL 0.79)
    matched = maxent_irl(blind, feats, demos, **kw)
    assert _occupancy_kl(truth, expert, matched.policy) > 0.1


# ------------------------------------------------------------------ the learner's surface
def test_float32_follows_the_mdp_and_agrees_with_float64():
    truth, feats = _random_problem("optimistic")
    expert = pc.soft_value_iteration(truth).policy
    rho = expected_counts(truth, expert)
    r64 = maxent_irl(truth, feats, rho, steps=100, progress=False)
    r32 = maxent_irl(truth.to(dtype=F32), feats.float(), rho.float(), steps=100, progress=False)
    assert r32.reward.dtype == F32 and r32.policy.dtype == F32
    assert r32.params["weights"].dtype == F32
    assert torch.allclose(r32.params["weights"].double(), r64.params["weights"], atol=2e-3)
    # float32 resolves the counts (≤ T = 12) to ≈ T·eps·max|V/α| (backward.py's bound)
    assert r32.feature_residual[-1] < 1e-2


class _TableReward(torch.nn.Module):
    """A neural-style reward: an (S, A) table looked up by state index (nn.Embedding)."""

    def __init__(self, S, A, stop_after=None):
        super().__init__()
        self.table = torch.nn.Embedding(S, A, dtype=F64)
        self.calls, self.stop_after = 0, stop_after

    def forward(self, states):
        self.calls += 1
        if self.calls == self.stop_after:  # Ctrl-C once, mid-run
            raise KeyboardInterrupt
        return self.table(states)


@pytest.mark.slow
def test_neural_reward_matches_the_expert_policy():
    truth, _ = _random_problem("optimistic")
    expert = pc.soft_value_iteration(truth).policy
    torch.manual_seed(0)
    model = _TableReward(25, 4)
    res = maxent_irl(truth, model, expected_counts(truth, expert), steps=200, progress=False)
    assert res.reward_model is model and "table.weight" in res.params
    assert _occupancy_kl(truth, expert, res.policy) <= 1e-4


def test_ctrl_c_returns_the_last_completed_step_and_rngs_are_untouched():
    truth, _ = _random_problem("optimistic")
    rho = expected_counts(truth, pc.soft_value_iteration(truth).policy)
    model = _TableReward(25, 4, stop_after=7)
    before = torch.random.get_rng_state()
    res = maxent_irl(truth, model, rho, steps=50, progress=False)
    assert res.extra["interrupted"] and 1 <= res.steps < 50
    assert torch.equal(before, torch.random.get_rng_state())
    assert torch.isfinite(res.reward).all() and torch.isfinite(res.policy).all()


def test_result_saves_and_loads(tmp_path):
    truth, feats = _frozenlake_problem("optimistic")
    rho = expected_counts(truth, pc.soft_value_iteration(truth).policy)
    res = maxent_irl(truth, feats, rho, steps=5, progress=False)
    assert res.steps == 6 and "steps=6" in repr(res)  # the initial point and 5 steps
    assert np.all(np.diff(res.history["seconds"]) >= 0) and len(res.history["seconds"]) == 6
    res.save(tmp_path / "irl.pt")
    back = IRLResult.load(tmp_path / "irl.pt")
    assert torch.equal(back.reward, res.reward) and torch.equal(back.policy, res.policy)


def test_bad_inputs_name_the_argument():
    mdp = pc.random_mdp(4, 2, 3, seed=0)
    demos = sample_demonstrations(mdp, pc.soft_value_iteration(mdp).policy, 4, seed=0)
    feats = torch.randn(4, 2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"`features` of shape \(4, 3, 3\) matches neither S"):
        maxent_irl(mdp, torch.zeros(4, 3, 3), demos, progress=False)
    with pytest.raises(ValueError, match=r"`features` of shape \(5, 3\)"):
        maxent_irl(mdp, torch.zeros(5, 3), demos, progress=False)
    with pytest.raises(ValueError, match="`features` contains NaN"):
        maxent_irl(mdp, feats.masked_fill(feats > 1, float("nan")), demos, progress=False)
    with pytest.raises(TypeError, match="`features` must be a tensor"):
        maxent_irl(mdp, "grid", demos, progress=False)
    with pytest.raises(ValueError, match="contain state .*out of range for an MDP with S = 4"):
        maxent_irl(mdp, feats, (demos.states + 4, demos.actions), progress=False)
    with pytest.raises(ValueError, match="contain action 3, out of range for an MDP with A = 2"):
        maxent_irl(mdp, feats, (demos.states, demos.actions + 2), progress=False)
    with pytest.raises(ValueError, match="horizon 2 .* T = 3"):
        maxent_irl(mdp, feats, (demos.states[:, :3], demos.actions[:, :2]), progress=False)
    with pytest.raises(ValueError, match=r"counts must have shape \(S, A, S\)"):
        maxent_irl(mdp, feats, torch.ones(4, 2), progress=False)
    with pytest.raises(ValueError, match="sum to the horizon"):
        maxent_irl(mdp, feats, torch.ones(4, 2, 4, dtype=F64), progress=False)
    with pytest.raises(ValueError, match="`optimizer`"):
        maxent_irl(mdp, feats, demos, optimizer="newton", progress=False)
    with pytest.raises(ValueError, match="`backup`"):
        maxent_irl(mdp, feats, demos, backup="pessimistic", progress=False)
    with pytest.raises(ValueError, match="`temperature`"):
        maxent_irl(mdp, feats, demos, temperature=0.0, progress=False)
    with pytest.raises(ValueError, match=r"reward module returned shape \(4, 3\)"):
        maxent_irl(mdp, torch.nn.Embedding(4, 3).double(), demos, progress=False)
    with pytest.raises(ValueError, match="`objective` must be one of"):
        maxent_irl(mdp, feats, demos, objective="joint", progress=False)
    with pytest.raises(ValueError, match="`objective='causal'` .* `backup='expected'`"):
        maxent_irl(mdp, feats, demos, objective="causal", progress=False)
    with pytest.raises(ValueError, match="`prior_scale`"):
        maxent_irl(mdp, feats, demos, prior_scale=0.0, progress=False)
    rho = expected_counts(mdp, pc.soft_value_iteration(mdp).policy)
    with pytest.raises(ValueError, match="`prior_scale` needs sampled demonstrations"):
        maxent_irl(mdp, feats, rho, prior_scale=1.0, progress=False)
    no_a1 = mdp.replace(action_prior=torch.tensor([[1.0, 0.0]] * 4, dtype=F64))
    with pytest.raises(ValueError, match="take action 1 in state .* forbids"):
        irl_log_likelihood(no_a1, torch.zeros(4), (demos.states, demos.actions * 0 + 1),
                           backup="expected", objective="causal")  # fmt: skip


# ------------------------------------------------------------------ the marginals route (issue 12)
def _few_successors_mdp(S, A, T, successors, seed, dtype=F64):
    """A stochastic MDP whose rows P[s, a, :] have ``successors`` non-zeros (dense tables)."""
    g = torch.Generator().manual_seed(seed)
    P = torch.zeros(S, A, S, dtype=dtype)
    for s in range(S):
        for a in range(A):
            nxt = torch.randperm(S, generator=g)[:successors]
            P[s, a, nxt] = -torch.rand(successors, dtype=dtype, generator=g).log()  # Dir(1)
    P = P / P.sum(-1, keepdim=True)
    p0 = torch.rand(S, dtype=dtype, generator=g)
    prior = torch.rand(S, A, dtype=dtype, generator=g) + 0.2
    return pc.TabularMDP(P, torch.zeros(S, A, dtype=dtype), p0 / p0.sum(), T,
                         action_prior=prior / prior.sum(-1, keepdim=True))  # fmt: skip


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shape", ["S", "SA", "SAS"])
@pytest.mark.parametrize("backup", ["optimistic", "expected"])
def test_marginal_counts_equal_autograd_through_the_messages(backup, shape, sparse, dtype):
    """log Z and ρ = α·∂ log Z/∂r of ``log_normaliser_and_counts`` (forward–backward marginals,
    no graph) against autograd through ``log_evidence`` / ``optimal_elbo`` (the backward
    messages), for r(s), r(s, a) and r(s, a, s'), on dense and sparse dynamics."""
    mdp = _few_successors_mdp(7, 3, 5, 3, seed=4, dtype=dtype)
    if sparse:
        mdp = mdp.replace(transition=mdp.transition.to_sparse())
    alpha, S, A = 0.7, 7, 3
    lead = {"S": (S,), "SA": (S, A), "SAS": (S, A, S)}[shape]
    r = torch.randn(*lead, dtype=dtype, generator=torch.Generator().manual_seed(5))
    table = r.reshape(*lead, *(1,) * (3 - r.ndim)).expand(S, A, S)
    if sparse and r.ndim == 3:
        with pytest.raises(ValueError, match="autograd route"):
            log_normaliser_and_counts(mdp.with_reward(table), alpha, backup, r.ndim)
        return
    log_z, rho = log_normaliser_and_counts(mdp.with_reward(table), alpha, backup, r.ndim)
    leaf = r.clone().requires_grad_(True)
    m = mdp.with_reward(leaf.reshape(*lead, *(1,) * (3 - r.ndim)).expand(S, A, S))
    route = pc.log_evidence if backup == "optimistic" else pc.optimal_elbo
    log_z_auto = route(m, temperature=alpha)
    (grad,) = torch.autograd.grad(log_z_auto, leaf)
    assert rho.shape == lead and rho.dtype == dtype and not rho.requires_grad
    tol = 1e-12 if dtype == F64 else 1e-5
    assert abs(log_z.item() - log_z_auto.item()) < tol * 10
    assert (rho - alpha * grad).abs().max().item() < tol
    assert abs(rho.sum().item() - mdp.horizon) < tol * 10  # one transition per step


@pytest.mark.parametrize("backup", ["optimistic", "expected"])
def test_both_gradient_routes_learn_the_same_reward_and_lbfgs_reuses_its_last_point(backup):
    """maxent_irl(gradient="marginals") — on the sparse layout it picks for a dense P with
    3 successors of 80 states — against gradient="autograd" on the dense tables: the same
    weights and likelihood; LBFGS's re-evaluation of its previous point is served cached."""
    truth = _few_successors_mdp(80, 3, 6, 3, seed=2)
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(80, 5, dtype=F64, generator=g)
    truth = truth.replace(reward=(feats @ torch.randn(5, dtype=F64, generator=g))[:, None]
                          .expand(80, 3))  # fmt: skip
    expert = pc.soft_value_iteration(truth, temperature=0.5, backup=backup).policy
    demos = sample_demonstrations(truth, expert, 200, seed=1)
    maxent = sys.modules["pgm_control.maxent_irl"]
    assert maxent._evaluation_layout(truth, 1).is_sparse
    assert not maxent._evaluation_layout(truth, 3).is_sparse
    kw = dict(temperature=0.5, backup=backup, steps=60, progress=False)
    fast = maxent_irl(truth, feats, demos, gradient="marginals", **kw)
    slow = maxent_irl(truth, feats, demos, gradient="autograd", **kw)
    assert fast.feature_residual[-1] < 1e-6 and slow.feature_residual[-1] < 1e-6
    assert torch.allclose(fast.params["weights"], slow.params["weights"], atol=1e-6)
    assert fast.log_likelihood[0] == pytest.approx(slow.log_likelihood[0], abs=1e-12)
    assert fast.log_likelihood[-1] == pytest.approx(slow.log_likelihood[-1], abs=1e-10)
    steps = len(fast.log_likelihood) - 1
    assert fast.extra["evaluations"] <= 1.5 * steps  # without the cache: ≥ 2 per step
    with pytest.raises(ValueError, match="`gradient` must be one of"):
        maxent_irl(truth, feats, demos, gradient="numeric", progress=False)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("shape", ["S", "SA", "SAS"])
@pytest.mark.parametrize("alpha", [1.0, 0.7])
@pytest.mark.parametrize("backup", ["optimistic", "expected"])
def test_linear_objective_equals_autograd_through_the_likelihood(backup, alpha, shape, dtype):
    """``linear_objective`` (the learner's per-iteration evaluation: marginals, no graph, its
    α = 1 shortcut) against autograd through ``irl_log_likelihood`` minus the Gaussian
    log-prior ‖ψ‖²/(2v): value, gradient in ψ and its sup norm, from sampled demonstrations."""
    mdp = _few_successors_mdp(6, 3, 4, 3, seed=7, dtype=dtype)
    S, A, F, v = 6, 3, 4, 2.5
    g = torch.Generator().manual_seed(8)
    lead = {"S": (S,), "SA": (S, A), "SAS": (S, A, S)}[shape]
    feats = torch.randn(*lead, F, dtype=dtype, generator=g)
    w = 0.5 * torch.randn(F, dtype=dtype, generator=g)
    expert = pc.soft_value_iteration(mdp, temperature=alpha, backup=backup).policy
    demos = sample_demonstrations(mdp, expert, 30, seed=2)
    counts = demos.counts(S, A, by_time=False, dtype=dtype)
    mu_hat = counts.sum((1, 2)) if len(lead) == 1 else counts.sum(2) if len(lead) == 2 else counts
    mu_hat = mu_hat.reshape(-1) @ feats.reshape(-1, F)
    values, grad = linear_objective(mdp, feats, w, mu_hat, alpha, backup, None, v)
    leaf = w.clone().requires_grad_(True)
    L = irl_log_likelihood(mdp, feats @ leaf, demos, temperature=alpha, backup=backup)
    L = L - (leaf @ leaf) / (2 * v)
    (grad_auto,) = torch.autograd.grad(L, leaf)
    tol = 1e-11 if dtype == F64 else 2e-4
    assert values.dtype == grad.dtype == dtype and not grad.requires_grad
    assert values[0].item() == pytest.approx(L.item(), abs=tol)
    assert (grad - grad_auto).abs().max().item() < tol
    assert values[1].item() == pytest.approx(grad.abs().max().item(), abs=0.0)


def test_the_inference_mode_evaluation_leaves_plain_tensors_for_autograd():
    """The marginals route evaluates in torch's inference mode; nothing it returns may be an
    inference tensor (those refuse autograd and in-place updates later): the learned weights,
    reward and policy serve a differentiable likelihood afterwards, for Adam and LBFGS."""
    truth = _tiny(seed=3)
    feats = torch.randn(2, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    rho = expected_counts(truth, pc.soft_value_iteration(truth).policy)
    for optimizer in ("adam", "lbfgs"):
        res = maxent_irl(truth, feats, rho, steps=3, optimizer=optimizer, progress=False)
        tensors = (res.params["weights"], res.reward, res.policy)
        assert not any(t.is_inference() for t in tensors)
        w = res.params["weights"].clone().requires_grad_(True)
        L = irl_log_likelihood(truth, feats @ w, rho)
        (g,) = torch.autograd.grad(L, w)
        assert torch.isfinite(g).all()


def test_step_weights_as_floats_equal_the_tensor_and_wrap_negative_steps():
    """``_step_weight_list`` (the recursion's Python weights) against the tensor form and a
    hand-written mask: step −1 is T − 1, repeats count once; bad steps raise as before."""
    backward = sys.modules["pgm_control.backward"]
    mdp = _tiny(seed=1)  # T = 3
    assert backward._step_weight_list(mdp, None) == [1.0, 1.0, 1.0]
    assert backward._step_weight_list(mdp, [-1, 0, 0]) == [1.0, 0.0, 1.0]
    w = backward._step_weights(mdp, [-1, 0, 0])
    assert w.dtype == mdp.float_dtype and w.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="observed_steps"):
        backward._step_weight_list(mdp, [3])
    with pytest.raises(TypeError, match="observed_steps"):
        backward._step_weight_list(mdp, 2)


@pytest.mark.slow
def test_compiled_evaluation_learns_the_eager_answer():
    """maxent_irl(compile=True) (torch.compile of the marginals evaluation; ~25 s to compile
    on the shared CI machine) against the eager route: the same weights and likelihood history
    to round-off for Adam and LBFGS; the compiled code is reused by the second learner."""
    truth = _tiny(seed=3)
    feats = torch.randn(2, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    rho = expected_counts(truth, pc.soft_value_iteration(truth).policy)
    for optimizer in ("adam", "lbfgs"):
        kw = dict(steps=6, optimizer=optimizer, progress=False)
        fast = maxent_irl(truth, feats, rho, compile=True, **kw)
        eager = maxent_irl(truth, feats, rho, **kw)
        assert fast.extra["compile_seconds"] > 0 and eager.extra["compile_seconds"] == 0
        assert torch.allclose(fast.params["weights"], eager.params["weights"], atol=1e-12)
        np.testing.assert_allclose(fast.log_likelihood, eager.log_likelihood, atol=1e-12)
        np.testing.assert_allclose(fast.feature_residual, eager.feature_residual, atol=1e-12)
        assert not fast.params["weights"].is_inference()


def test_compile_failure_and_the_autograd_route_give_clear_errors(monkeypatch):
    """A torch.compile that fails (here: a backend that raises, as a missing C++ compiler
    does) is reported naming ``compile=False``; the autograd route and sparse dynamics refuse
    compile=True."""
    maxent = sys.modules["pgm_control.maxent_irl"]

    def broken_backend(graph, example_inputs):
        raise OSError("no C++ compiler found")

    monkeypatch.setattr(
        maxent,
        "compiled_linear_objective",
        lambda: torch.compile(maxent.linear_objective, backend=broken_backend),
    )
    truth = _tiny(seed=3)
    feats = torch.randn(2, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    rho = expected_counts(truth, pc.soft_value_iteration(truth).policy)
    with pytest.raises(RuntimeError, match=r"no C\+\+ compiler found.*`compile=False`"):
        maxent_irl(truth, feats, rho, steps=2, progress=False, compile=True, backup="expected")
    with pytest.raises(ValueError, match="`compile=True` compiles the marginals route"):
        maxent_irl(truth, feats, rho, steps=2, progress=False, compile=True, gradient="autograd")
    sparse = truth.replace(transition=truth.transition.to_sparse())
    with pytest.raises(ValueError, match="`compile=True` serves dense dynamics"):
        maxent_irl(sparse, feats, rho, steps=2, progress=False, compile=True)
    with pytest.raises(TypeError, match="`compile` must be True or False"):
        maxent_irl(truth, feats, rho, steps=2, progress=False, compile="yes")


def test_adam_and_sgd_step_from_the_start_point_gradient_as_torch_optimisers_do():
    """Adam (torch's fused update without the Optimizer wrapper) and SGD evaluate, then step:
    the weights after n steps are those of torch.optim.Adam(fused=True) / SGD driven by the same
    gradients of L, bit for bit; inside torch.no_grad() (the autograd route needs a graph) the
    run is the same; a start point that already meets tol is kept unmoved."""
    truth = _tiny(seed=2)
    feats = torch.randn(2, 2, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    rho = expected_counts(truth, pc.soft_value_iteration(truth).policy)
    for optimizer, make in (
        ("adam", lambda p: torch.optim.Adam([p], lr=0.05, fused=True)),
        ("sgd", lambda p: torch.optim.SGD([p], lr=0.1)),
    ):
        res = maxent_irl(truth, feats, rho, steps=6, tol=0.0, optimizer=optimizer, progress=False)
        w = torch.zeros(3, dtype=F64, requires_grad=True)
        opt = make(w)
        for _ in range(6):
            opt.zero_grad()
            (-irl_log_likelihood(truth, feats @ w, rho)).backward()
            opt.step()
        torch.testing.assert_close(res.params["weights"], w.detach(), rtol=0, atol=1e-14)
        with torch.no_grad():
            again = maxent_irl(truth, feats, rho, steps=6, tol=0.0, optimizer=optimizer,
                               gradient="autograd", progress=False)  # fmt: skip
        torch.testing.assert_close(again.params["weights"], w.detach(), rtol=0, atol=1e-14)
        done = maxent_irl(truth, feats, rho, steps=6, tol=1e9, optimizer=optimizer, progress=False)
        assert done.extra["converged"] and done.steps == 1
        assert torch.equal(done.params["weights"], torch.zeros(3, dtype=F64))
