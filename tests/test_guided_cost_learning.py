"""Guided cost learning: the importance-sampled partition gradient converges to the exact
forward–backward gradient (autograd through log_evidence, and the posterior marginals) at the
1/√n rate; on slippery FrozenLake the learned reward's soft-optimal policy (computed exactly
from the true tables, for evaluation only) matches the expert's return; bad input is refused."""

import importlib
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.demonstrations import Demonstrations, sample_demonstrations
from pgm_control.forward import policy_state_distribution
from pgm_control.guided_cost_learning import guided_cost_learning, importance_log_partition
from pgm_control.irl_result import IRLResult
from pgm_control.reward_models import LinearReward, TabularReward, reward_table

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tables: torch's intra-op threads only slow these down (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def expected_return(mdp, policy):
    """Σₜ Σ_s dₜ(s)·Σₐ πₜ(a|s)·r̄(s,a): the exact expected true return of acting with π."""
    d = policy_state_distribution(mdp, policy)
    pi = policy.expand(mdp.horizon, *policy.shape[-2:])
    return float((d[:-1, :, None] * pi * mdp.expected_reward).sum())


def _small_problem(alpha=0.7):
    mdp = pc.random_mdp(4, 3, 4, seed=3)
    g = torch.Generator().manual_seed(1)
    features = torch.randn(4, 3, 2, generator=g, dtype=F64)
    model = LinearReward(features)
    with torch.no_grad():
        model.weights.copy_(torch.tensor([0.8, -0.5], dtype=F64))
    proposal = torch.softmax(torch.randn(4, 3, generator=g, dtype=F64), -1)  # π(a|s) > 0
    return mdp, model, proposal, alpha


def _is_gradient(mdp, model, proposal, alpha, n, seed):
    traj = pc.sample_trajectories(mdp, proposal, n, seed=seed)
    demos = Demonstrations(traj.states, traj.actions)
    s, a, s1 = traj.states[:, :-1], traj.actions, traj.states[:, 1:]
    returns = model(s, a, s1).sum(-1)
    log_q = torch.log(proposal)[s, a].sum(-1)
    log_p = mdp.log_action_prior[s, a].sum(-1)
    est = importance_log_partition(returns, log_q, log_p, temperature=alpha)
    (grad,) = torch.autograd.grad(est.log_partition, model.weights)
    assert 1 <= est.ess <= n and len(demos) == n
    return grad


def test_is_partition_gradient_converges_to_forward_backward_at_root_n():
    mdp, model, proposal, alpha = _small_problem()
    # route 1: autograd through the backward messages (log_evidence)
    log_z = pc.log_evidence(mdp.replace(reward=reward_table(model, 4, 3)), temperature=alpha)
    (exact,) = torch.autograd.grad(log_z, model.weights)
    # route 2: the forward–backward marginals, Σₜ E_{p(sₜ,aₜ|O)}[f(sₜ,aₜ)]/α
    mu = pc.state_action_marginals(
        mdp.replace(reward=reward_table(model, 4, 3).detach()), temperature=alpha
    )
    marginal = torch.einsum("tsa,saf->f", mu, model.features) / alpha
    torch.testing.assert_close(exact, marginal, rtol=1e-10, atol=1e-12)
    errors = {}
    for n in (400, 4000, 40000):
        sq = [float(((_is_gradient(mdp, model, proposal, alpha, n, seed) - exact) ** 2).sum())
              for seed in range(6)]  # fmt: skip
        errors[n] = math.sqrt(np.mean(sq))
    scaled = [errors[n] * math.sqrt(n) for n in errors]  # ≈ constant at the 1/√n rate
    assert max(scaled) / min(scaled) < 2.5, errors
    assert errors[40000] < errors[400] / 5, errors
    assert errors[40000] < 0.05 * float(exact.norm()), (errors, exact)  # 2.3% measured


def test_importance_log_partition_is_unbiased_for_z_and_refuses_nan():
    mdp, model, proposal, alpha = _small_problem()
    exact = pc.log_evidence(
        mdp.replace(reward=reward_table(model, 4, 3).detach()), temperature=alpha
    )
    # Ẑ itself is unbiased: the mean of many small-batch estimates of Z matches exp(log Z)
    z_hats = []
    for seed in range(200):
        traj = pc.sample_trajectories(mdp, proposal, 50, seed=seed)
        s, a, s1 = traj.states[:, :-1], traj.actions, traj.states[:, 1:]
        with torch.no_grad():
            est = importance_log_partition(
                model(s, a, s1).sum(-1), torch.log(proposal)[s, a].sum(-1),
                mdp.log_action_prior[s, a].sum(-1), temperature=alpha,
            )  # fmt: skip
        z_hats.append(float(torch.exp(est.log_partition)))
    z = math.exp(float(exact))
    assert abs(np.mean(z_hats) - z) < 4 * np.std(z_hats) / math.sqrt(len(z_hats)) + 1e-12
    with pytest.raises(ValueError, match="NaN"):
        importance_log_partition(
            torch.tensor([0.0, float("nan")], dtype=F64), torch.zeros(2, dtype=F64)
        )
    with pytest.raises(ValueError, match="log_proposal"):
        importance_log_partition(torch.zeros(3, dtype=F64), torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="temperature"):
        importance_log_partition(
            torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64), temperature=0
        )


def test_importance_log_partition_float32():
    returns = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32, requires_grad=True)
    est = importance_log_partition(returns, torch.zeros(3, dtype=torch.float32), temperature=0.5)
    assert est.log_partition.dtype == torch.float32
    expected = torch.logsumexp(returns.detach().double() / 0.5, 0) - math.log(3)
    assert abs(float(est.log_partition.detach()) - float(expected)) < 1e-5
    (g,) = torch.autograd.grad(est.log_partition, returns)
    torch.testing.assert_close(g, est.weights / 0.5)  # ∇ log Ẑ = w̄/α: the SNIS estimate


# ------------------------------------------------------------------ FrozenLake acceptance
T, ALPHA = 20, 0.05


def _frozen_lake_expert():
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", T)
    expert = pc.soft_value_iteration(mdp, temperature=ALPHA, backup="expected").policy
    return mdp, expert, sample_demonstrations(mdp, expert, 500, seed=1)


@pytest.mark.slow
def test_gcl_frozen_lake_reaches_the_experts_return(tmp_path):
    mdp, expert, demos = _frozen_lake_expert()
    res = guided_cost_learning(
        "FrozenLake-v1", TabularReward(16, 4), demos, temperature=ALPHA, iterations=10,
        policy_steps=2000, progress=False,
    )  # fmt: skip
    assert res.backup == "optimistic" and res.algorithm == "guided_cost_learning"
    learned = pc.soft_value_iteration(res.mdp_with_reward(mdp), temperature=ALPHA).policy
    uniform = expected_return(mdp, torch.full((16, 4), 0.25, dtype=F64))
    ratio = expected_return(mdp, learned) / expected_return(mdp, expert)
    assert ratio >= 0.95, ratio
    assert expected_return(mdp, expert) > 3 * uniform  # the expert is far from random
    # the ESS is reported every iteration and is a fraction of the batch
    assert len(res.history["ess"]) == 10 and np.all(res.history["ess_fraction"] <= 1 + 1e-12)
    assert res.extra["terminal_states"][[5, 7, 11, 12, 15]].all()
    assert (res.reward[res.extra["terminal_states"]] == 0).all()
    res.save(tmp_path / "gcl.pt")
    back = IRLResult.load(tmp_path / "gcl.pt")
    torch.testing.assert_close(back.reward, res.reward, rtol=0, atol=0)
    torch.testing.assert_close(
        reward_table(back.reward_model, 16, 4), reward_table(res.reward_model, 16, 4)
    )


def test_gcl_runs_in_float32_and_keeps_the_callers_rng():
    mdp, expert, demos = _frozen_lake_expert()
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    res = guided_cost_learning(
        "FrozenLake-v1", TabularReward(16, 4, dtype=torch.float32), demos, temperature=ALPHA,
        iterations=2, policy_steps=200, samples_per_iteration=50, progress=False,
    )  # fmt: skip
    assert res.reward.dtype == torch.float32 and torch.isfinite(res.reward).all()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    again = guided_cost_learning(
        "FrozenLake-v1", TabularReward(16, 4, dtype=torch.float32), demos, temperature=ALPHA,
        iterations=2, policy_steps=200, samples_per_iteration=50, progress=False,
    )  # fmt: skip
    torch.testing.assert_close(again.reward, res.reward, rtol=0, atol=0)  # a function of seed


def test_gcl_bad_input():
    mdp, expert, demos = _frozen_lake_expert()
    kw = {"iterations": 1, "policy_steps": 10, "samples_per_iteration": 5, "progress": False}
    bad_state = Demonstrations(demos.states.clone(), demos.actions)
    bad_state.states[0, 3] = 16
    with pytest.raises(ValueError, match="state 16, out of range"):
        guided_cost_learning("FrozenLake-v1", TabularReward(16, 4), bad_state, **kw)
    bad_action = Demonstrations(demos.states, demos.actions.clone())
    bad_action.actions[1, 0] = 4
    with pytest.raises(ValueError, match="action 4, out of range"):
        guided_cost_learning("FrozenLake-v1", TabularReward(16, 4), bad_action, **kw)
    with pytest.raises(ValueError, match="horizon"):
        guided_cost_learning("FrozenLake-v1", TabularReward(16, 4), demos, horizon=T + 1, **kw)
    with pytest.raises(ValueError, match="Discrete observation"):
        guided_cost_learning("CartPole-v1", TabularReward(16, 4), demos, **kw)
    with pytest.raises(ValueError, match="temperature"):
        guided_cost_learning("FrozenLake-v1", TabularReward(16, 4), demos, temperature=0.0, **kw)
    with pytest.raises(ValueError, match="discount"):
        guided_cost_learning("FrozenLake-v1", TabularReward(16, 4), demos, discount=1.5, **kw)
    with pytest.raises(ValueError, match="iterations"):
        guided_cost_learning("FrozenLake-v1", TabularReward(16, 4), demos, **dict(kw, iterations=0))
    nan_model = TabularReward(16, 4)
    with torch.no_grad():
        nan_model.table[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        guided_cost_learning("FrozenLake-v1", nan_model, demos, **kw)
    with pytest.raises(TypeError, match="gymnasium env"):
        guided_cost_learning(3, TabularReward(16, 4), demos, **kw)
    assert isinstance(gym.make("FrozenLake-v1").observation_space, gym.spaces.Discrete)


def test_gcl_ctrl_c_returns_what_was_learned(monkeypatch):
    # the package exports the function under the module's name: fetch the module itself
    gcl_module = importlib.import_module("pgm_control.guided_cost_learning")
    mdp, expert, demos = _frozen_lake_expert()
    calls = []
    real = gcl_module.policy_samples

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gcl_module, "policy_samples", interrupt_second)
    res = guided_cost_learning(
        "FrozenLake-v1", TabularReward(16, 4), demos, temperature=ALPHA, iterations=5,
        policy_steps=100, samples_per_iteration=20, progress=False,
    )  # fmt: skip
    assert res.extra["interrupted"] and len(res.history["ess"]) == 1
    assert "interrupted" in repr(res)
