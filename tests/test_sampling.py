"""Sampling whole trajectories: exact posterior samples and policy rollouts.

Independent routes: the forward–backward marginals (Monte Carlo frequencies within 5 standard
errors), the lottery's closed form, and the argument checks shared by every public routine.
"""

import numpy as np
import pytest
import torch

import pgm_control as pc


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


def test_sampling_validation():
    mdp = pc.random_mdp(3, 2, 2)
    with pytest.raises(ValueError, match="`num_samples`"):
        pc.sample_posterior_trajectories(mdp, 0)
    with pytest.raises(ValueError, match="`policy` must have shape"):
        pc.sample_trajectories(mdp, torch.ones(3, 3, dtype=torch.float64) / 3, 10)


@pytest.mark.parametrize("n", [np.int64(5), np.int32(5), torch.tensor(5)])
def test_numpy_and_tensor_integers_are_accepted(n):
    mdp = pc.random_mdp(3, 2, 2, seed=0, dtype=torch.float64)
    pi = torch.full((3, 2), 0.5, dtype=torch.float64)
    post = pc.sample_posterior_trajectories(mdp, n, seed=np.int64(1))
    roll = pc.sample_trajectories(mdp, pi, n, seed=np.int64(1))
    assert post.states.shape == roll.states.shape == (5, 3)
    assert torch.equal(post.states, pc.sample_posterior_trajectories(mdp, 5, seed=1).states)


@pytest.mark.parametrize("bad, err", [(0, ValueError), (-3, ValueError), (2.5, TypeError)])
def test_bad_num_samples_are_refused_with_the_argument_named(bad, err):
    mdp = pc.random_mdp(3, 2, 2, seed=0, dtype=torch.float64)
    pi = torch.full((3, 2), 0.5, dtype=torch.float64)
    with pytest.raises(err, match="`num_samples`"):
        pc.sample_posterior_trajectories(mdp, bad)
    with pytest.raises(err, match="`num_samples`"):
        pc.sample_trajectories(mdp, pi, bad)
    with pytest.raises(TypeError, match="`num_samples`"):
        pc.sample_trajectories(mdp, pi, True)
    with pytest.raises(TypeError, match="`seed`"):
        pc.sample_trajectories(mdp, pi, 3, seed=1.5)


def test_sampling_leaves_the_global_rng_alone_and_is_reproducible():
    mdp = pc.random_mdp(4, 2, 3, seed=1, dtype=torch.float64)
    before = torch.get_rng_state()
    a = pc.sample_posterior_trajectories(mdp, 100, seed=7)
    b = pc.sample_posterior_trajectories(mdp, 100, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = pc.sample_posterior_trajectories(mdp, 100, seed=8)
    assert not torch.equal(a.states, c.states)


def test_samples_of_a_differentiable_mdp_are_detached():
    mdp = pc.random_mdp(3, 2, 3, seed=2, dtype=torch.float64)
    r = mdp.reward.clone().requires_grad_(True)
    m = mdp.replace(reward=r)
    post = pc.sample_posterior_trajectories(m, 10)
    roll = pc.sample_trajectories(m, torch.full((3, 2), 0.5, dtype=torch.float64), 10)
    assert not post.rewards.requires_grad and not roll.rewards.requires_grad
