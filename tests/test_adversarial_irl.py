"""Adversarial IRL: the discriminator's optimum against its closed form, the lecture's contrast
at the GAN's equilibrium (the generator is the expert: AIRL's f becomes α·log(π_E/p), a reward
whose soft-optimal policy is π_E again; the plain classifier's logit becomes 0, no reward), and
the full loop on slippery FrozenLake against the exact expert (true tables only to evaluate)."""

import math

import gymnasium as gym
import pytest
import torch
from test_guided_cost_learning import expected_return

import pgm_control as pc
from pgm_control.adversarial_irl import (
    ShapedReward,
    adversarial_irl,
    discriminator_logits,
    discriminator_loss,
    empirical_transition,
    expected_shaping,
)
from pgm_control.demonstrations import Demonstrations, sample_demonstrations
from pgm_control.irl_result import IRLResult
from pgm_control.irl_samples import mask_after_terminal, policy_samples
from pgm_control.reward_models import TabularReward, reward_table

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tables: torch's intra-op threads only slow these down (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


T, ALPHA = 20, 0.05


def _transitions(S, A):
    """Every (s, a, s') once, as one-step trajectories (K = S·A·S rows)."""
    s, a, s1 = torch.meshgrid(torch.arange(S), torch.arange(A), torch.arange(S), indexing="ij")
    return Demonstrations(torch.stack([s.flatten(), s1.flatten()], 1), a.flatten()[:, None])


def _fit(model, expert, samples, log_pi, log_prior, kind):
    """Minimise the library's loss on visit counts: Σ over steps per trajectory equals Σ over
    the distinct transitions weighted by their counts per trajectory (same optimum, K rows)."""
    S, A = log_pi.shape
    every = _transitions(S, A)
    w_e = expert.counts(S, A).sum(0).reshape(-1, 1)  # per-trajectory visit counts of (s,a,s')
    w_p = samples.counts(S, A).sum(0).reshape(-1, 1)
    kw = {"temperature": ALPHA, "discriminator": kind, "log_prior": log_prior}
    opt = torch.optim.LBFGS(model.parameters(), max_iter=500, tolerance_grad=1e-10,
                            tolerance_change=0, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        logits = discriminator_logits(model, every, log_pi, **kw)
        loss = discriminator_loss(logits, w_e, logits, w_p)  # convex in a table
        loss.backward()
        return loss

    opt.step(closure)


def _stationary_expert():
    """A stationary expert (one table π(a|s)): the finite-horizon expert's first-step policy."""
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", T)
    return mdp, pc.soft_value_iteration(mdp, temperature=ALPHA, backup="expected").policy[0]


@pytest.mark.slow
def test_discriminator_optimum_is_the_log_count_ratio():
    """Per-trajectory cross-entropy ⇒ logit* = log(c_E(s,a)/c_π(s,a)), visit counts per episode."""
    mdp, expert_pi = _stationary_expert()
    env = gym.make("FrozenLake-v1")
    uniform = torch.full((16, 4), 0.25, dtype=F64)
    expert, terminal = policy_samples(env, expert_pi, 300, T, seed=1)
    samples, _ = policy_samples(env, uniform, 400, T, seed=2)
    model = TabularReward(16, 4)
    _fit(model, expert, samples, torch.log(uniform), None, "classifier")
    c_e = expert.counts(16, 4).sum((0, 3)) * 1.0
    c_p = samples.counts(16, 4).sum((0, 3)) * 1.0
    both = (c_e > 0.05) & (c_p > 0.05)  # well-visited pairs: the optimum is finite there
    logit = model.table.detach() / ALPHA
    torch.testing.assert_close(logit[both], torch.log(c_e / c_p)[both], rtol=0, atol=1e-5)
    assert terminal[[5, 7, 11, 12, 15]].all()


@pytest.mark.slow
def test_at_equilibrium_airl_f_is_a_reward_and_the_classifier_logit_is_not():
    """The generator is the expert: AIRL's optimum f = α·log(π_E/p) gives π_E back when
    re-optimised; the classifier's optimum logit is ≈ 0 and re-optimised gives ≈ the uniform
    policy (the lecture's contrast)."""
    mdp, expert_pi = _stationary_expert()
    env = gym.make("FrozenLake-v1")
    expert, _ = policy_samples(env, expert_pi, 3000, T, seed=1)
    generator, _ = policy_samples(env, expert_pi, 3000, T, seed=2)
    log_prior = torch.full((16, 4), -math.log(4), dtype=F64)
    airl, classifier = TabularReward(16, 4), TabularReward(16, 4)
    _fit(airl, expert, generator, torch.log(expert_pi), log_prior, "airl")
    _fit(classifier, expert, generator, torch.log(expert_pi), log_prior, "classifier")

    def reoptimised_return(model):
        learned = mdp.replace(reward=reward_table(model, 16, 4).detach())
        pi = pc.soft_value_iteration(learned, temperature=ALPHA, backup="expected").policy
        return expected_return(mdp, pi)

    ret_expert = expected_return(mdp, expert_pi)
    ret_uniform = expected_return(mdp, torch.full((16, 4), 0.25, dtype=F64))
    assert ret_expert > 3 * ret_uniform
    assert reoptimised_return(airl) > 0.9 * ret_expert
    assert reoptimised_return(classifier) < 1.5 * ret_uniform


@pytest.mark.slow
def test_airl_frozen_lake_reaches_the_experts_return(tmp_path):
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", T)
    expert = pc.soft_value_iteration(mdp, temperature=ALPHA, backup="expected").policy
    demos = sample_demonstrations(mdp, expert, 500, seed=1)
    res = adversarial_irl(
        "FrozenLake-v1", demos, temperature=ALPHA, iterations=20, policy_steps=2000,
        discriminator_steps=10, lr=1.0, progress=False,
    )  # fmt: skip
    assert res.backup == "expected"
    learned = pc.soft_value_iteration(
        res.mdp_with_reward(mdp), temperature=ALPHA, backup="expected"
    )
    ratio = expected_return(mdp, learned.policy) / expected_return(mdp, expert)
    assert ratio >= 0.9, ratio
    assert len(res.history["discriminator_loss"]) == 20
    res.save(tmp_path / "airl.pt")
    back = IRLResult.load(tmp_path / "airl.pt")
    torch.testing.assert_close(back.reward, res.reward, rtol=0, atol=0)


def test_shaped_reward_and_masking():
    g = TabularReward(3, 2, inputs="next_state")
    f = ShapedReward(g, 3, 0.9)
    with torch.no_grad():
        g.table.copy_(torch.tensor([1.0, 2.0, 3.0], dtype=F64))
        f.potential.copy_(torch.tensor([0.5, -1.0, 4.0], dtype=F64))
    f.terminal[2] = True
    s, a, s1 = torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([1, 2])
    # 0 → 1: g(1) + 0.9·h(1) − h(0) = 2 − 0.9 − 0.5; 1 → 2 (terminal): g(2) + 0 − h(1) = 3 + 1
    torch.testing.assert_close(f(s, a, s1), torch.tensor([0.6, 4.0], dtype=F64))
    demos = Demonstrations(torch.tensor([[0, 1, 2, 2, 2]]), torch.tensor([[1, 0, 1, 1]]))
    masked = mask_after_terminal(demos, torch.tensor([False, False, True]))
    assert masked.mask.tolist() == [[True, True, False, False]]


def test_airl_bad_input_and_rng():
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", T)
    expert = pc.soft_value_iteration(mdp, temperature=ALPHA).policy
    demos = sample_demonstrations(mdp, expert, 20, seed=1)
    kw = {"iterations": 1, "policy_steps": 20, "samples_per_iteration": 5, "progress": False}
    with pytest.raises(ValueError, match="discriminator"):
        adversarial_irl("FrozenLake-v1", demos, discriminator="gan", **kw)
    with pytest.raises(ValueError, match="reward_inputs"):
        adversarial_irl("FrozenLake-v1", demos, reward_inputs="action", **kw)
    with pytest.raises(ValueError, match="horizon"):
        adversarial_irl("FrozenLake-v1", demos, horizon=5, **kw)
    bad = Demonstrations(demos.states, demos.actions.clone())
    bad.actions[0, 0] = 7
    with pytest.raises(ValueError, match="action 7"):
        adversarial_irl("FrozenLake-v1", bad, **kw)
    state = torch.random.get_rng_state()
    res = adversarial_irl("FrozenLake-v1", demos, reward_inputs="next_state", **kw)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert res.extra["shaping"] and res.params["table"].shape == (16,)
    assert res.reward.shape == (16, 4, 16)
    with pytest.raises(ValueError, match="finite"):
        adversarial_irl("FrozenLake-v1", demos, lr=float("nan"), **kw)


def test_expected_shaping_with_the_soft_values_is_the_soft_advantage():
    """fₜ = E[g(s') + Vₜ₊₁(s')] − Vₜ(s) with V from soft value iteration is α·log(πₜ/p): the
    finite-horizon advantage (independent route: the backward pass's own policy), on slippery
    FrozenLake (terminal states absorb and pay 0) with a random state-only reward."""
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 6)
    terminal = torch.zeros(16, dtype=torch.bool)
    terminal[[5, 7, 11, 12, 15]] = True
    g = torch.randn(16, dtype=F64, generator=torch.Generator().manual_seed(3))
    reward = g.expand(16, 4, 16).clone()
    reward[terminal] = 0.0
    sv = pc.soft_value_iteration(mdp.replace(reward=reward), temperature=0.3, backup="expected")
    f = expected_shaping(reward, sv.v[:-1], mdp.transition, terminal)
    torch.testing.assert_close(f, 0.3 * torch.log(sv.policy * 4), rtol=0, atol=1e-12)
    no_h = expected_shaping(reward, None, mdp.transition, terminal)
    torch.testing.assert_close(no_h[0], (mdp.transition * reward).sum(-1), rtol=0, atol=0)


def test_empirical_transition_normalises_counts():
    counts = torch.zeros(3, 2, 3, dtype=F64)
    counts[0, 0] = torch.tensor([1.0, 3.0, 0.0])
    counts[2, 1, 0] = 5.0  # a terminal state's row is absorbing whatever was counted
    P = empirical_transition(counts, torch.tensor([False, False, True]))
    torch.testing.assert_close(P[0, 0], torch.tensor([0.25, 0.75, 0.0], dtype=F64))
    torch.testing.assert_close(P[0, 1], torch.tensor([1.0, 0.0, 0.0], dtype=F64))  # unseen
    torch.testing.assert_close(P[2, 1], torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    torch.testing.assert_close(P.sum(-1), torch.ones(3, 2, dtype=F64))


@pytest.mark.slow
def test_state_only_reward_transfers_across_slip_and_the_classifier_does_not():
    """Train on slippery FrozenLake (success rate 1/3), re-optimise the learned reward exactly
    under other slips and compare with each new dynamics' own soft-optimal expert (the true
    tables only evaluate). State-only AIRL with the expected shaping keeps ≥ 0.9; the plain
    classifier's logit, learned the same way, is no reward: ≤ 0.5 once the dynamics change."""
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", T)
    expert = pc.soft_value_iteration(mdp, temperature=ALPHA, backup="expected").policy
    demos = sample_demonstrations(mdp, expert, 2000, seed=1)
    kw = {"temperature": ALPHA, "dynamics": "empirical", "iterations": 30, "lr": 0.3,
          "discriminator_steps": 20, "samples_per_iteration": 250, "progress": False}  # fmt: skip
    state_only = adversarial_irl("FrozenLake-v1", demos, reward_inputs="next_state", **kw)
    classifier = adversarial_irl("FrozenLake-v1", demos, discriminator="classifier", **kw)
    assert state_only.policy.shape == (T, 16, 4) and state_only.extra["potential"].shape == (T, 16)

    def transfer(res, rate):
        new = pc.TabularMDP.from_gymnasium("FrozenLake-v1", T, success_rate=rate)
        best = pc.soft_value_iteration(new, temperature=ALPHA, backup="expected").policy
        learned = pc.soft_value_iteration(
            res.mdp_with_reward(new), temperature=ALPHA, backup="expected"
        ).policy
        return expected_return(new, learned) / expected_return(new, best)

    for rate in (0.6, 0.8, 1.0):
        assert transfer(state_only, rate) >= 0.9, (rate, transfer(state_only, rate))
        assert transfer(classifier, rate) <= 0.5, (rate, transfer(classifier, rate))


def test_airl_empirical_dynamics_float32_rng_and_bad_input():
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", T)
    expert = pc.soft_value_iteration(mdp, temperature=ALPHA).policy
    demos = sample_demonstrations(mdp, expert, 20, seed=1)
    kw = {"iterations": 2, "samples_per_iteration": 5, "progress": False, "dynamics": "empirical"}
    with pytest.raises(ValueError, match="dynamics"):
        adversarial_irl("FrozenLake-v1", demos, **dict(kw, dynamics="model"))
    state = torch.random.get_rng_state()
    model = TabularReward(16, 4, inputs="next_state", dtype=torch.float32)
    res = adversarial_irl("FrozenLake-v1", demos, reward_model=model, reward_inputs="next_state",
                          temperature=ALPHA, **kw)  # fmt: skip
    assert torch.equal(torch.random.get_rng_state(), state)
    assert res.reward.dtype == torch.float32 and torch.isfinite(res.reward).all()
    assert res.policy.shape == (T, 16, 4) and res.extra["potential"].shape == (T, 16)
    torch.testing.assert_close(res.policy.sum(-1), torch.ones(T, 16), rtol=0, atol=1e-5)
    P = res.extra["transition"]
    torch.testing.assert_close(P.sum(-1), torch.ones(16, 4, dtype=P.dtype), rtol=0, atol=1e-6)
    assert len(res.history["discriminator_loss"]) == 2
