"""Demonstrations: validation names the argument, counts and feature expectations equal a plain
Python loop over the data, sampled demonstrations converge to the exact occupancy measure
(Monte Carlo vs the occupancy recursion), rollouts that end early are masked, RNGs untouched.
"""

import pickle

import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.demonstrations import (
    Demonstrations,
    as_demonstrations,
    expected_counts,
    sample_demonstrations,
)

F64 = torch.float64


def _loop_counts(demos, S, A):
    """(T, S, A, S) visit frequencies by a plain loop (the independent route)."""
    N, T = demos.actions.shape
    c = np.zeros((T, S, A, S))
    for n in range(N):
        for t in range(T):
            if demos.mask is None or demos.mask[n, t]:
                s, a, s1 = demos.states[n, t], demos.actions[n, t], demos.states[n, t + 1]
                c[t, s, a, s1] += 1.0 / N
    return c


def test_counts_and_feature_expectations_equal_a_loop():
    g = torch.Generator().manual_seed(1)
    S, A, T, N = 4, 3, 5, 7
    states = torch.randint(S, (N, T + 1), generator=g)
    actions = torch.randint(A, (N, T), generator=g)
    mask = torch.arange(T).expand(N, T) < torch.tensor([5, 5, 3, 1, 5, 4, 2])[:, None]
    for m in (None, mask):
        demos = Demonstrations(states, actions, m)
        counts = demos.counts(S, A)
        np.testing.assert_allclose(counts.numpy(), _loop_counts(demos, S, A), atol=1e-15)
        summed = demos.counts(S, A, by_time=False)
        np.testing.assert_allclose(summed.numpy(), _loop_counts(demos, S, A).sum(0), atol=1e-15)
        for shape in [(S, 2), (S, A, 2), (S, A, S, 2)]:
            f = torch.randn(*shape, generator=g, dtype=F64)
            # the loop's counts contracted with f, broadcast to (S, A, S, F)
            f_full = {2: f[:, None, None], 3: f[:, :, None], 4: f}[f.ndim]
            f_full = f_full.expand(S, A, S, 2).numpy()
            expected = np.einsum("tsax,saxf->f", _loop_counts(demos, S, A), f_full)
            got = demos.feature_expectations(f)
            assert got.dtype == F64
            np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
        assert demos.feature_expectations(f.float()).dtype == torch.float32


def test_sampled_demonstrations_converge_to_the_exact_occupancy():
    """Monte Carlo frequencies of 20000 demos vs dₜ(s)·πₜ(a|s) from the occupancy recursion."""
    mdp = pc.random_mdp(5, 3, 4, seed=2)
    pi = pc.soft_value_iteration(mdp, temperature=0.7).policy
    before = torch.random.get_rng_state()
    demos = sample_demonstrations(mdp, pi, 20000, seed=3)
    assert torch.equal(before, torch.random.get_rng_state())
    d = pc.policy_state_distribution(mdp, pi)[:-1]
    exact = d[:, :, None] * pi
    empirical = demos.counts(5, 3).sum(-1)
    assert (empirical - exact).abs().max() < 4 * (0.25 / 20000) ** 0.5 * 4  # ~4 σ
    rho = expected_counts(mdp, pi)  # Σₜ dₜ·π·P, the N → ∞ limit of the summed counts
    assert torch.allclose(rho.sum(), torch.tensor(4.0, dtype=F64))
    assert (demos.counts(5, 3, by_time=False) - rho).abs().max() < 4 * 4 * (0.25 / 20000) ** 0.5
    assert len(demos) == 20000 and demos.horizon == 4 and demos.mask is None
    again = sample_demonstrations(mdp, pc.soft_value_iteration(mdp, temperature=0.7), 20000, seed=3)
    assert torch.equal(again.states, demos.states)  # same seed, same draws


def test_from_rollout_masks_episodes_that_ended_early():
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 12)
    pi = pc.soft_value_iteration(mdp, temperature=0.3).policy
    res = pc.rollout("FrozenLake-v1", pi.numpy(), episodes=30, seed=0, record=True)
    demos = Demonstrations.from_rollout(res, horizon=12)
    assert demos.mask is not None  # some episodes fell in a hole or reached the goal
    assert torch.equal(demos.lengths, torch.as_tensor(res.lengths))
    for n, ep in enumerate(res.episodes):
        k = len(ep.actions)
        assert demos.states[n, : k + 1].tolist() == list(ep.states)
        assert demos.actions[n, :k].tolist() == list(np.asarray(ep.actions).reshape(-1))
    assert demos.check(mdp) is not None
    again = Demonstrations.from_rollout(res.episodes, horizon=12)
    assert torch.equal(again.states, demos.states) and torch.equal(again.mask, demos.mask)
    assert "ended early" in repr(demos)
    with pytest.raises(ValueError, match="horizon"):
        Demonstrations.from_rollout(res, horizon=2)
    with pytest.raises(ValueError, match="record=True"):
        Demonstrations.from_rollout(pc.rollout("FrozenLake-v1", pi.numpy(), episodes=2), 12)
    with pytest.raises(TypeError, match="from_rollout"):
        as_demonstrations(res)


def test_conversions_and_pickle():
    mdp = pc.random_mdp(4, 2, 3, seed=0)
    traj = pc.sample_trajectories(mdp, pc.soft_value_iteration(mdp).policy, 6, seed=0)
    demos = as_demonstrations(traj)
    assert torch.equal(demos.states, traj.states)
    pair = as_demonstrations((traj.states.numpy(), traj.actions.numpy()))
    assert torch.equal(pair.actions, traj.actions)
    back = pickle.loads(pickle.dumps(demos))
    assert torch.equal(back.states, demos.states) and back.mask is None
    full = Demonstrations(traj.states, traj.actions, torch.ones(6, 3, dtype=torch.bool))
    assert full.mask is None  # an all-True mask is no mask


def test_bad_demonstrations_name_the_argument():
    mdp = pc.random_mdp(4, 2, 3, seed=0)
    s = torch.zeros(2, 4, dtype=torch.long)
    a = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="`states` must have shape"):
        Demonstrations(s[:, :3], a)
    with pytest.raises(TypeError, match="`actions` must hold integer"):
        Demonstrations(s, a.double())
    with pytest.raises(ValueError, match="`states` must have 2 dimensions"):
        Demonstrations(s[0], a)
    with pytest.raises(ValueError, match="non-negative"):
        Demonstrations(s - 1, a)
    with pytest.raises(ValueError, match="prefixes"):
        Demonstrations(s, a, torch.tensor([[True, False, True], [True, True, True]]))
    with pytest.raises(ValueError, match="`mask` must have shape"):
        Demonstrations(s, a, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="state 4, out of range .* S = 4"):
        Demonstrations(s + 4, a).check(mdp)
    with pytest.raises(ValueError, match="action 2, out of range .* A = 2"):
        Demonstrations(s, a + 2).check(mdp)
    with pytest.raises(ValueError, match="horizon 2 .* T = 3"):
        Demonstrations(s[:, :3], a[:, :2]).check(mdp)
    with pytest.raises(TypeError, match="`demonstrations` must be"):
        as_demonstrations("nope")
    with pytest.raises(ValueError, match="`features` must be a tensor"):
        Demonstrations(s, a).feature_expectations(torch.zeros(4))
    with pytest.raises(ValueError, match="`num_demonstrations`"):
        sample_demonstrations(mdp, torch.full((4, 2), 0.5, dtype=F64), 0)
