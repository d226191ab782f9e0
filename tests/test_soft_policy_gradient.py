"""The entropy-regularised policy gradient against the exact ELBO gradient and REINFORCE."""

import itertools
import math

import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.estimators import ScoreFunctionELBO
from pgm_control.guide_tables import read_guide_tables
from pgm_control.guides.tabular import (
    FullPosteriorGuide,
    NeuralGuide,
    StationaryGuide,
    TimeVaryingGuide,
)
from pgm_control.soft_policy_gradient import (
    GuideEpisodes,
    SoftPolicyGradientResult,
    play_guide,
    score_function_surrogate,
    soft_policy_gradient,
    soft_returns_to_go,
)
from pgm_control.tabular_env import TabularEnv

ALPHA = 0.7


def _guide(family, mdp, seed=0):
    guide = family(mdp)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in guide.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return guide


def _all_trajectories(mdp, guide):
    """Every trajectory as one GuideEpisodes batch (log q from the guide's tables) and q(τ)."""
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    log_pi = read_guide_tables(guide, mdp).log_policy  # differentiable, (T, S, A)
    P, r, p0 = mdp.transition, mdp.reward, mdp.initial
    rows = []
    for s_seq in itertools.product(range(S), repeat=T + 1):
        for a_seq in itertools.product(range(A), repeat=T):
            rows.append((s_seq, a_seq))
    s = torch.tensor([row[0] for row in rows])
    a = torch.tensor([row[1] for row in rows])
    t = torch.arange(T)
    log_q = log_pi[t, s[:, :-1], a]
    dyn = p0[s[:, 0]] * P[s[:, :-1], a, s[:, 1:]].prod(1)
    weight = dyn * log_q.detach().exp().prod(1)  # q(τ)
    rewards = r[s[:, :-1], a, s[:, 1:]]
    ep = GuideEpisodes(s, a, rewards, torch.ones_like(rewards), log_q, 0)
    return ep, weight, log_pi


def _expected_gradient(mdp, guide, discount, baseline_table=None):
    """E_q[ĝ(τ)] summed exactly over every trajectory, ĝ the library's estimator."""
    ep, weight, _ = _all_trajectories(mdp, guide)
    g = soft_returns_to_go(ep, mdp.log_action_prior, temperature=ALPHA, discount=discount)
    b = 0.0 if baseline_table is None else baseline_table[ep.states[:, :-1]]
    n = len(weight)
    advantages = (g - b) * (n * weight)[:, None]  # mean over τ of n·q(τ)·ĝ(τ) = E_q[ĝ]
    surrogate = score_function_surrogate(ep, advantages, discount=discount)
    return torch.autograd.grad(surrogate, list(guide.parameters()))


@pytest.mark.parametrize("family", [StationaryGuide, TimeVaryingGuide, NeuralGuide])
def test_expected_gradient_is_the_gradient_of_the_exact_elbo(family):
    mdp = pc.random_mdp(3, 2, 3, seed=1, random_action_prior=True)
    guide = _guide(family, mdp)
    exact = torch.autograd.grad(
        pc.exact_elbo(guide, mdp, temperature=ALPHA), list(guide.parameters())
    )
    b = torch.randn(3, dtype=torch.float64)  # any state baseline leaves it unbiased
    for baseline in (None, b):
        ours = _expected_gradient(mdp, guide, 1.0, baseline)
        for x, y in zip(ours, exact):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11)


def test_discounted_expected_gradient_is_the_gradient_of_the_discounted_elbo():
    # the discounted ELBO E_q[Σ γᵗ cₜ], summed over trajectories and differentiated by autograd
    mdp = pc.random_mdp(3, 2, 3, seed=2)
    guide = _guide(StationaryGuide, mdp, seed=3)
    gamma = 0.8
    ep, _, log_pi = _all_trajectories(mdp, guide)
    s, a = ep.states, ep.actions
    log_q_tau = log_pi[torch.arange(3), s[:, :-1], a]
    q_tau = mdp.initial[s[:, 0]] * mdp.transition[s[:, :-1], a, s[:, 1:]].prod(1)
    q_tau = q_tau * log_q_tau.exp().prod(1)
    cost = ep.rewards / ALPHA + mdp.log_action_prior[s[:, :-1], a] - log_q_tau
    elbo = (q_tau * (cost * gamma ** torch.arange(3.0, dtype=torch.float64)).sum(1)).sum()
    exact = torch.autograd.grad(elbo, list(guide.parameters()))
    ours = _expected_gradient(mdp, guide, gamma)
    torch.testing.assert_close(ours[0], exact[0], rtol=1e-9, atol=1e-11)


def _per_episode_gradients(ep, guide, mdp, advantages, discount):
    """Closed form for the stationary table: ∂log q(a|s)/∂θ[s, a'] = 1[a = a'] − q(a'|s)."""
    q = guide.policy()[0]  # (S, A)
    N, L = ep.actions.shape
    grads = torch.zeros(N, *q.shape, dtype=q.dtype)
    for t in range(L):
        s, a = ep.states[:, t], ep.actions[:, t]
        score = torch.nn.functional.one_hot(a, q.shape[1]).to(q.dtype) - q[s]
        w = (discount**t) * ep.mask[:, t] * advantages[:, t]
        grads[torch.arange(N), s] += w[:, None] * score
    return grads


def test_env_rollouts_estimate_the_exact_gradient_within_clt_tolerance():
    mdp = pc.random_mdp(3, 2, 3, seed=1, random_action_prior=True)
    guide = _guide(StationaryGuide, mdp, seed=4)
    exact = torch.autograd.grad(pc.exact_elbo(guide, mdp, temperature=ALPHA), [guide.logits])[0]
    n = 6_000
    envs = [TabularEnv(mdp) for _ in range(n)]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ep = play_guide(envs, guide, seeds=range(n))
    assert ep.env_steps == 3 * n and ep.actions.shape == (n, 3)
    g = soft_returns_to_go(ep, mdp.log_action_prior, temperature=ALPHA, discount=1.0)
    surrogate = score_function_surrogate(ep, g, discount=1.0)
    (ours,) = torch.autograd.grad(surrogate, [guide.logits])
    per = _per_episode_gradients(ep, guide, mdp, g, 1.0)
    torch.testing.assert_close(ours, per.mean(0), rtol=1e-9, atol=1e-12)  # same samples
    se = per.std(0) / math.sqrt(n)
    assert ((ours - exact).abs() <= 5 * se + 1e-12).all(), (ours, exact, se)
    # the model's score estimator (fit(..., estimator="score")) agrees with the same exact value
    elbo = ScoreFunctionELBO(num_particles=n)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        loss = elbo.differentiable_loss(pc.control_model, guide, mdp, temperature=ALPHA)
    (model_grad,) = torch.autograd.grad(-loss, [guide.logits])
    assert ((model_grad - exact).abs() <= 10 * se + 1e-12).all(), (model_grad, exact)


def test_it_is_reinforce_on_the_entropy_regularised_reward():
    # same episodes: REINFORCE with r̃ = r − α·log(q/p) (rewards treated as constants), in
    # reward units, equals α × our gradient of the ELBO (nats) without a baseline
    mdp = pc.random_mdp(4, 3, 5, seed=5, random_action_prior=True)
    guide = _guide(TimeVaryingGuide, mdp, seed=6)
    envs = [TabularEnv(mdp) for _ in range(200)]
    gamma = 0.9
    ep = play_guide(envs, guide, seeds=range(200))
    g = soft_returns_to_go(ep, mdp.log_action_prior, temperature=ALPHA, discount=gamma)
    (ours,) = torch.autograd.grad(score_function_surrogate(ep, g, discount=gamma), [guide.logits])
    log_pi = torch.log_softmax(mdp.log_action_prior + guide.logits, -1)  # the table itself
    t = torch.arange(5)
    log_q = log_pi[t, ep.states[:, :-1], ep.actions]
    r_tilde = ep.rewards - ALPHA * (log_q - mdp.log_action_prior[ep.states[:, :-1], ep.actions])
    r_tilde = r_tilde.detach()
    total = 0.0
    for n in range(200):
        for k in range(5):
            ret = sum(gamma ** (j - k) * r_tilde[n, j] for j in range(k, 5))
            total = total + gamma**k * log_q[n, k] * ret
    (reinforce,) = torch.autograd.grad(total / 200, [guide.logits])
    torch.testing.assert_close(ALPHA * ours, reinforce, rtol=1e-9, atol=1e-12)


def test_learning_reaches_the_soft_optimal_policy_on_a_small_mdp(tmp_path):
    mdp = pc.random_mdp(3, 2, 4, seed=7)
    guide = TimeVaryingGuide(mdp)
    before = pc.exact_elbo(guide, mdp, temperature=ALPHA).item()
    res = soft_policy_gradient(
        TabularEnv(mdp), guide, ALPHA, 1.0, steps=150, episodes_per_step=64, lr=0.1,
        lr_final=0.02, baseline="time_state", progress=False, seed=3,
    )  # fmt: skip
    after = pc.exact_elbo(guide, mdp, temperature=ALPHA).item()
    best = pc.optimal_elbo(mdp, temperature=ALPHA).item()
    assert best - after < 0.02 * (best - before), (before, after, best)
    assert res.steps == 150 and res.env_steps == 150 * 64 * 4
    assert len(res.history.losses["elbo"]) == 150
    res.save(tmp_path / "pg.pt")
    again = SoftPolicyGradientResult.load(tmp_path / "pg.pt")
    assert torch.equal(again.guide.logits, guide.logits) and "env_steps" in repr(again)


def test_seeded_runs_repeat_and_leave_global_rngs_alone():
    mdp = pc.random_mdp(3, 2, 3, seed=0)
    torch.manual_seed(5)
    np.random.seed(5)
    before_t, before_np = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    runs = []
    for _ in range(2):
        guide = StationaryGuide(mdp)
        soft_policy_gradient(TabularEnv(mdp), guide, steps=5, episodes_per_step=8, progress=False)
        runs.append(guide.logits.detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(torch.random.get_rng_state(), before_t)
    assert np.array_equal(np.random.get_state()[1], before_np)


def test_bad_input_names_the_argument():
    mdp = pc.random_mdp(3, 2, 3, seed=0)
    guide = StationaryGuide(mdp)
    env = TabularEnv(mdp)
    with pytest.raises(ValueError, match="Discrete observation"):
        soft_policy_gradient("CartPole-v1", guide)
    with pytest.raises(ValueError, match="temperature"):
        soft_policy_gradient(env, guide, temperature=-1.0)
    with pytest.raises(ValueError, match="discount"):
        soft_policy_gradient(env, guide, discount=1.5)
    with pytest.raises(ValueError, match="steps"):
        soft_policy_gradient(env, guide, steps=0)
    with pytest.raises(ValueError, match="baseline"):
        soft_policy_gradient(env, guide, baseline="value")
    with pytest.raises(ValueError, match="own dynamics"):
        soft_policy_gradient(env, FullPosteriorGuide(mdp))


def test_float32_guide_and_ctrl_c_keeps_what_was_learned():
    mdp = pc.random_mdp(3, 2, 3, seed=0, dtype=torch.float32)
    guide = StationaryGuide(mdp)

    def stop_at_third(step, result):
        if step == 2:
            raise KeyboardInterrupt

    res = soft_policy_gradient(TabularEnv(mdp), guide, steps=10, episodes_per_step=8,
                               progress=False, callback=stop_at_third)  # fmt: skip
    assert res.interrupted and res.steps == 3 and res.history.interrupted
    assert guide.logits.dtype == torch.float32 and torch.isfinite(guide.logits).all()
    assert not torch.equal(guide.logits, torch.zeros_like(guide.logits))


def test_episodes_stop_counting_when_the_env_ends_them():
    # FrozenLake's holes terminate an episode; the guide keeps T = 30 steps of sites
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 30)
    envs = [TabularEnv(mdp) for _ in range(50)]
    ep = play_guide(envs, StationaryGuide(mdp), seeds=range(50))
    lengths = ep.mask.sum(1)
    assert ep.env_steps == int(lengths.sum()) and (lengths < 30).any()
    for n in range(50):
        k = int(lengths[n])
        assert ep.mask[n, :k].all() and not ep.mask[n, k:].any()
        assert (ep.rewards[n, k:] == 0).all()
        if k < 30:  # ended in a terminal state: a hole or the goal
            assert bool(mdp.terminal[ep.states[n, k]])
