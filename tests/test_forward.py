"""Forward messages, posterior marginals and posterior dynamics vs brute force and Monte Carlo."""

import numpy as np
import pytest
import torch

import pgm_control as pc

import brute


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_state_and_state_action_marginals_equal_brute_force(seed):
    mdp = pc.random_mdp(3, 2, 4, seed=seed, random_action_prior=True)
    m = pc.state_marginals(mdp, temperature=0.6, include_final=True)
    np.testing.assert_allclose(m.numpy(), brute.state_marginals(mdp, 0.6), atol=1e-12)
    assert pc.state_marginals(mdp, temperature=0.6).shape == (4, 3)
    sa = pc.state_action_marginals(mdp, temperature=0.6)
    np.testing.assert_allclose(sa.numpy(), brute.state_action_marginals(mdp, 0.6), atol=1e-12)


def test_posterior_dynamics_are_distributions_and_tilted():
    mdp = pc.lottery_mdp()
    post = pc.posterior_dynamics(mdp)
    torch.testing.assert_close(post.sum(-1), torch.ones(1, 4, 2))
    # true chance of winning 1e-4; the posterior believes ≈ 0.69
    p, J, c = 1e-4, 10.0, 1.0
    expect = p * np.exp(J - c) / (p * np.exp(J - c) + (1 - p) * np.exp(-c))
    assert post[0, 0, 0, 1].item() == pytest.approx(expect, rel=1e-12)
    assert mdp.transition[0, 0, 1].item() == pytest.approx(1e-4)


def test_posterior_dynamics_first_step_brute_force():
    mdp = pc.random_mdp(3, 2, 3, seed=4)
    rows = brute.table(mdp, 1.0)
    joint = np.zeros((3, 2, 3))
    for s_seq, a_seq, dyn, pa, ret, _ in rows:
        joint[s_seq[0], a_seq[0], s_seq[1]] += dyn * pa * np.exp(ret)
    expect = joint / joint.sum(-1, keepdims=True)
    np.testing.assert_allclose(pc.posterior_dynamics(mdp)[0].numpy(), expect, atol=1e-12)


def test_posterior_samples_match_marginals_by_monte_carlo():
    mdp = pc.random_mdp(5, 3, 6, seed=2, random_action_prior=True)
    n = 100_000
    traj = pc.sample_posterior_trajectories(mdp, n, temperature=0.8, seed=3)
    assert traj.states.shape == (n, 7) and traj.actions.shape == (n, 6)
    m = pc.state_marginals(mdp, temperature=0.8, include_final=True)
    freq = torch.nn.functional.one_hot(traj.states, 5).double().mean(0)
    se = (m * (1 - m) / n).sqrt()
    assert ((freq - m).abs() <= 5 * se + 1e-12).all()
    sa = pc.state_action_marginals(mdp, temperature=0.8)
    idx = traj.states[:, :-1] * 3 + traj.actions
    sa_freq = torch.nn.functional.one_hot(idx, 15).double().mean(0).view(6, 5, 3)
    assert ((sa_freq - sa).abs() <= 5 * (sa * (1 - sa) / n).sqrt() + 1e-12).all()
    # sampled rewards are the r(s, a, s') of the sampled transitions
    r = mdp.reward[traj.states[:, :-1], traj.actions, traj.states[:, 1:]]
    torch.testing.assert_close(traj.rewards, r)


def test_lottery_posterior_samples_win_far_too_often():
    mdp = pc.lottery_mdp()
    traj = pc.sample_posterior_trajectories(mdp, 20_000, seed=0)
    bought = traj.actions[:, 0] == 0
    win_rate = (traj.states[bought, 1] == 1).double().mean().item()
    true_rollouts = pc.sample_trajectories(mdp, pc.soft_value_iteration(mdp).policy, 20_000, seed=0)
    true_win = (true_rollouts.states[:, 1] == 1).double().mean().item()
    assert win_rate > 0.6 and true_win < 0.01


def test_policy_state_distribution_matches_rollouts():
    mdp = pc.random_mdp(4, 2, 5, seed=6)
    pi = pc.soft_value_iteration(mdp, backup="expected").policy
    d = pc.policy_state_distribution(mdp, pi)
    torch.testing.assert_close(d.sum(-1), torch.ones(6))
    traj = pc.sample_trajectories(mdp, pi, 100_000, seed=2)
    freq = torch.nn.functional.one_hot(traj.states, 4).double().mean(0)
    assert ((freq - d).abs() <= 5 * (d * (1 - d) / 100_000).sqrt() + 1e-12).all()


def test_sampling_validation():
    mdp = pc.random_mdp(3, 2, 2)
    with pytest.raises(ValueError, match="`num_samples`"):
        pc.sample_posterior_trajectories(mdp, 0)
    with pytest.raises(ValueError, match="`policy` must have shape"):
        pc.sample_trajectories(mdp, torch.ones(3, 3) / 3, 10)
