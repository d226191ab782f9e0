"""Forward messages, posterior marginals and posterior dynamics vs brute force and Monte Carlo."""

import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.forward import _state_distribution

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
    torch.testing.assert_close(post.sum(-1), torch.ones(1, 4, 2, dtype=torch.float64))
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


def test_policy_state_distribution_matches_rollouts():
    mdp = pc.random_mdp(4, 2, 5, seed=6)
    pi = pc.soft_value_iteration(mdp, backup="expected").policy
    d = pc.policy_state_distribution(mdp, pi)
    torch.testing.assert_close(d.sum(-1), torch.ones(6, dtype=torch.float64))
    traj = pc.sample_trajectories(mdp, pi, 100_000, seed=2)
    freq = torch.nn.functional.one_hot(traj.states, 4).double().mean(0)
    assert ((freq - d).abs() <= 5 * (d * (1 - d) / 100_000).sqrt() + 1e-12).all()


@pytest.mark.parametrize("stationary", [False, True])
def test_policy_state_distribution_with_learned_initial_and_dynamics_by_brute_force(stationary):
    """dₜ(s) = Σ_τ q(τ)·1[sₜ = s] over every trajectory, for q(s₀) and qₜ(s'|s,a) ≠ p0, P."""
    mdp = pc.random_mdp(3, 2, 3, seed=8, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    pi = torch.softmax(torch.randn(3, 3, 2, generator=g, dtype=torch.float64), -1)
    q0 = torch.softmax(torch.randn(3, generator=g, dtype=torch.float64), -1)
    shape = (3, 2, 3) if stationary else (3, 3, 2, 3)
    qd = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1)
    d = pc.policy_state_distribution(mdp, pi, initial=q0, dynamics=qd)
    qd_t = qd.expand(3, 3, 2, 3).numpy()
    expect = np.zeros((4, 3))
    for s_seq, a_seq in brute.trajectories(mdp):
        prob = q0[s_seq[0]].item()
        for t in range(3):
            prob *= pi[t, s_seq[t], a_seq[t]].item() * qd_t[t, s_seq[t], a_seq[t], s_seq[t + 1]]
        for t, s in enumerate(s_seq):
            expect[t, s] += prob
    np.testing.assert_allclose(d.numpy(), expect, atol=1e-14)
    # the defaults are the MDP's own p0 and P
    torch.testing.assert_close(
        pc.policy_state_distribution(mdp, pi),
        pc.policy_state_distribution(mdp, pi, initial=mdp.initial, dynamics=mdp.transition),
        rtol=0,
        atol=0,
    )


def test_policy_state_distribution_checks_learned_factors():
    mdp = pc.random_mdp(3, 2, 3, seed=8, dtype=torch.float64)
    pi = torch.full((3, 2), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="`initial` must have shape"):
        pc.policy_state_distribution(mdp, pi, initial=torch.ones(4, dtype=torch.float64) / 4)
    with pytest.raises(ValueError, match="`dynamics` rows must be probabilities"):
        pc.policy_state_distribution(mdp, pi, dynamics=torch.ones(3, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`dynamics` must have shape"):
        pc.policy_state_distribution(mdp, pi, dynamics=torch.ones(2, 3, dtype=torch.float64))


def _occupancy_by_the_plain_loop(initial, pi, kernel):
    """dₜ₊₁ = (dₜ·πₜ) flattened @ P flattened, stacked: the recursion as first written."""
    T, S, A = pi.shape
    d = [initial]
    for t in range(T):
        k_t = (kernel if kernel.ndim == 3 else kernel[t]).reshape(S * A, S)
        d.append((d[t][:, None] * pi[t]).reshape(S * A) @ k_t)
    return torch.stack(d)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_distribution_is_the_plain_loop_bit_for_bit_in_every_layout(dtype):
    """``_state_distribution`` steps as (1, S) rows through one mm per step; every layout of
    its inputs (strided p0, a policy with permuted strides or broadcast over t, per-step
    kernels) gives the bits of the plain loop."""
    S, A, T = 6, 3, 5
    g = torch.Generator().manual_seed(0)
    P = torch.softmax(torch.randn(S, A, S, generator=g, dtype=dtype), -1)
    P_t = torch.softmax(torch.randn(T, S, A, S, generator=g, dtype=dtype), -1)
    pi = torch.softmax(torch.randn(T, S, A, generator=g, dtype=dtype), -1)
    p0 = torch.softmax(torch.randn(2 * S, generator=g, dtype=dtype), -1)[::2]  # stride 2
    layouts = {
        "plain": pi,
        "permuted": pi.transpose(1, 2).contiguous().transpose(1, 2),
        "broadcast": pi[0].expand(T, S, A),
    }
    for name, policy in layouts.items():
        for kernel in (P, P_t):
            got = _state_distribution(p0, policy, kernel)
            assert got.shape == (T + 1, S)
            assert torch.equal(got, _occupancy_by_the_plain_loop(p0, policy, kernel)), name
