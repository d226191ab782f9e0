"""The entropy-regularised LQR's closed form, each piece against an independent route."""

import math

import gymnasium as gym
import numpy as np
import pytest
import scipy.linalg
import torch

from pgm_control.soft_lqr import (
    LINEAR_QUADRATIC_ENV_ID,
    LinearQuadraticEnv,
    compare_with_soft_lqr,
    soft_lqr,
)

A2 = np.array([[1.0, 0.2], [0.0, 0.9]])
B2 = np.array([[0.0], [0.5]])
B22 = np.array([[0.3, 0.0], [0.1, 0.6]])


def _grid_soft_value_iteration(a, b, q, r, alpha, gamma, w_var, iterations=70):
    """1-D soft VI on a fine (s, a) grid, with Gauss–Hermite noise and interpolated V:
    V(s) = α·log Σ_a Δa·exp(Q(s,a)/α), Q = r + γ·E_w V(a·s + b·a + w). Shares no code with
    the closed form."""
    s = np.linspace(-6, 6, 241)  # linear interpolation of V costs ≈ P·Δs²/8/(1 − γ) ≈ 2e-3
    act = np.linspace(-6, 6, 321)
    da = act[1] - act[0]
    nodes, weights = np.polynomial.hermite_e.hermegauss(7)
    weights = weights / weights.sum()
    nxt = a * s[:, None, None] + b * act[None, :, None] + math.sqrt(w_var) * nodes
    reward = -(q * s[:, None] ** 2 + r * act[None, :] ** 2)
    v = np.zeros_like(s)
    for _ in range(iterations):
        ev = (np.interp(nxt, s, v) * weights).sum(-1)
        qsa = reward + gamma * ev
        m = qsa.max(1, keepdims=True)
        v = alpha * np.log(np.exp((qsa - m) / alpha).sum(1) * da) + m[:, 0]
    pi = np.exp((qsa - qsa.max(1, keepdims=True)) / alpha)
    pi /= pi.sum(1, keepdims=True)
    mean = (pi * act).sum(1)
    var = (pi * act**2).sum(1) - mean**2
    return s, v, qsa, act, mean, var


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_1d_closed_form_matches_fine_grid_soft_value_iteration(alpha):
    a, b, q, r, gamma, w = 0.9, 0.5, 1.0, 0.5, 0.8, 0.04
    sol = soft_lqr(a, b, q, r, temperature=alpha, discount=gamma, noise_covariance=w)
    s, v, qsa, act, mean, var = _grid_soft_value_iteration(a, b, q, r, alpha, gamma, w)
    inner = np.abs(s) <= 2
    st = torch.as_tensor(s[inner, None])
    np.testing.assert_allclose(sol.value(st).numpy(), v[inner], rtol=2e-3, atol=5e-3)
    np.testing.assert_allclose(mean[inner], sol.gain.item() * s[inner], atol=2e-3)
    np.testing.assert_allclose(var[inner], sol.covariance.item(), rtol=2e-3)
    near = inner[:, None] & (np.abs(act) <= 3)[None, :]
    q_closed = sol.q_value(st[:, None, :], torch.as_tensor(act[None, :, None])).numpy()
    np.testing.assert_allclose(q_closed[near[inner]], qsa[inner][near[inner]], rtol=2e-3, atol=5e-3)


@pytest.mark.parametrize("B", [B2, B22], ids=["m=1", "m=2"])
def test_2d_soft_bellman_equation_by_numerical_integration(B):
    """Q(s, a) = r + γ·E_w[α·log ∫ exp(Q(s', a')/α) da'] at random (s, a), with the inner
    integral on a fine action grid and E_w by Gauss–Hermite."""
    alpha, gamma, W = 0.3, 0.9, np.diag([0.02, 0.05])
    m = B.shape[1]
    R = np.eye(m) * 0.5
    sol = soft_lqr(A2, B, np.eye(2), R, temperature=alpha, discount=gamma, noise_covariance=W)
    grid = np.linspace(-5, 5, 401 if m == 1 else 161)
    acts = np.stack(np.meshgrid(*[grid] * m, indexing="ij"), -1).reshape(-1, m)
    cell = (grid[1] - grid[0]) ** m
    nodes, weights = np.polynomial.hermite_e.hermegauss(5)
    weights = weights / weights.sum()
    rng = np.random.default_rng(0)
    for _ in range(2):
        s, a = rng.uniform(-1.5, 1.5, 2), rng.uniform(-1, 1, m)
        ev = 0.0
        for i, wi in enumerate(nodes):
            for j, wj in enumerate(nodes):
                s_next = A2 @ s + B @ a + np.sqrt(np.diag(W)) * np.array([wi, wj])
                q_next = sol.q_value(torch.as_tensor(s_next), torch.as_tensor(acts)).numpy()
                top = q_next.max()
                v_next = alpha * np.log(np.exp((q_next - top) / alpha).sum() * cell) + top
                ev += weights[i] * weights[j] * v_next
        rhs = -(s @ s + a @ R @ a) + gamma * ev
        lhs = sol.q_value(torch.as_tensor(s), torch.as_tensor(a)).item()
        assert lhs == pytest.approx(rhs, rel=1e-6, abs=1e-6)


def test_2d_monte_carlo_soft_policy_evaluation_of_the_closed_form_policy():
    """E[Σₜ γᵗ (r − α·log π(aₜ|sₜ))] from s₀ (and from (s₀, a₀) for Q), sampled."""
    alpha, gamma, W = 0.5, 0.9, np.diag([0.02, 0.05])
    sol = soft_lqr(A2, B22, np.eye(2), np.eye(2) * 0.5, temperature=alpha, discount=gamma,
                   noise_covariance=W)  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    n, steps = 4000, 120  # γ¹²⁰ ≈ 3e-6
    A, B = torch.as_tensor(A2), torch.as_tensor(B22)
    chol_w = torch.as_tensor(np.sqrt(W))
    chol_pi = torch.linalg.cholesky(sol.covariance)
    log_norm = -0.5 * torch.logdet(2 * math.pi * sol.covariance)
    s0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    a0 = torch.tensor([0.3, 0.8], dtype=torch.float64)
    for fixed_first in (False, True):
        s = s0.expand(n, 2).clone()
        ret = torch.zeros(n, dtype=torch.float64)
        for t in range(steps):
            eps = torch.randn(n, 2, generator=gen, dtype=torch.float64)
            a = s @ sol.gain.T + eps @ chol_pi.T
            log_pi = log_norm - 0.5 * (eps**2).sum(-1)
            bonus = -alpha * log_pi
            if t == 0 and fixed_first:
                a, bonus = a0.expand(n, 2), 0.0  # Q(s₀, a₀): no entropy at the fixed step
            r = -((s**2).sum(-1) + 0.5 * (a**2).sum(-1))
            ret += gamma**t * (r + bonus)
            s = s @ A.T + a @ B.T + torch.randn(n, 2, generator=gen, dtype=torch.float64) @ chol_w
        exact = sol.q_value(s0, a0) if fixed_first else sol.value(s0)
        stderr = ret.std() / math.sqrt(n)
        assert abs(ret.mean() - exact) < 4 * stderr + 1e-3, (ret.mean(), exact, stderr)


def test_alpha_to_zero_is_the_classical_discounted_riccati_solution():
    gamma, Q, R = 0.95, np.diag([1.0, 0.5]), np.array([[0.2]])
    P = scipy.linalg.solve_discrete_are(np.sqrt(gamma) * A2, np.sqrt(gamma) * B2, Q, R)
    K = -np.linalg.solve(R + gamma * B2.T @ P @ B2, gamma * B2.T @ P @ A2)
    for alpha in (1e-8, 1.0):  # P and K do not depend on α; Σ ∝ α
        sol = soft_lqr(A2, B2, Q, R, temperature=alpha, discount=gamma)
        np.testing.assert_allclose(sol.P.numpy(), P, rtol=1e-9)
        np.testing.assert_allclose(sol.gain.numpy(), K, rtol=1e-9)
        np.testing.assert_allclose(
            sol.covariance.numpy(), alpha / 2 * np.linalg.inv(R + gamma * B2.T @ P @ B2),
            rtol=1e-9,
        )  # fmt: skip
    tiny = soft_lqr(A2, B2, Q, R, temperature=1e-8, discount=gamma)
    s, a = torch.tensor([0.7, -0.2], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)
    # hard Q of the classical LQR: −sᵀQs − aᵀRa − γ·s'ᵀPs'
    s_next = A2 @ s.numpy() + B2 @ a.numpy()
    hard_q = -(s @ torch.as_tensor(Q) @ s + 0.2 * a @ a).item() - gamma * s_next @ P @ s_next
    assert tiny.q_value(s, a).item() == pytest.approx(hard_q, abs=1e-5)  # + α·O(log α)


def test_float32_and_bad_input():
    sol = soft_lqr(torch.tensor([[1.0]]), 1.0, 1.0, 1.0, temperature=0.5, discount=0.9)
    assert sol.P.dtype == torch.float32 and sol.gain.dtype == torch.float32
    ref = soft_lqr(1.0, 1.0, 1.0, 1.0, temperature=0.5, discount=0.9)
    assert sol.P.item() == pytest.approx(ref.P.item(), rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        soft_lqr(1.0, 1.0, 1.0, 1.0, temperature=0.0)
    with pytest.raises(ValueError, match="discount"):
        soft_lqr(1.0, 1.0, 1.0, 1.0, discount=1.0)
    with pytest.raises(ValueError, match="`R` must be positive definite"):
        soft_lqr(1.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        soft_lqr(np.eye(2), np.ones((3, 1)), np.eye(2), 1.0)
    with pytest.raises(ValueError, match="stabilisable"):
        soft_lqr(2.0, 0.0, 1.0, 1.0, discount=0.9, max_iterations=500)


def test_linear_quadratic_env_steps_the_same_problem():
    env = LinearQuadraticEnv(A2, B2, np.eye(2), 0.5, action_bound=5.0, max_episode_steps=3)
    obs, _ = env.reset(seed=0)
    s = env.state.copy()
    nxt, r, term, trunc, _ = env.step(np.array([0.4], dtype=np.float32))
    np.testing.assert_allclose(nxt, A2 @ s + B2 @ [0.4], rtol=1e-6)
    assert r == pytest.approx(-(s @ s + 0.5 * 0.16)) and not term and not trunc
    env.step(np.zeros(1, np.float32))
    assert env.step(np.zeros(1, np.float32))[3]  # truncated at the time limit
    made = gym.make(LINEAR_QUADRATIC_ENV_ID, A=0.5)
    assert made.observation_space.shape == (1,)


def test_compare_with_soft_lqr_reads_the_exact_answer_as_exact():
    """Fed the closed form's own policy (sampled) and soft Q, the comparison reads K and Σ
    back to Monte-Carlo accuracy and the critic error as 0; a critic off by δ = 0.1 at every
    point reads δ / min |Q*| (the per-point normalisation) and δ / max |Q*|; a perturbed policy
    reads its perturbation."""
    sol = soft_lqr([[0.8, 0.4], [0.0, 0.7]], [[0.5], [1.0]], np.eye(2), 1.0, temperature=0.5,
                   discount=0.8, noise_covariance=0.05 * np.eye(2))  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    states = torch.empty(500, 2, dtype=torch.float64).uniform_(-2, 2, generator=gen)
    chol = torch.linalg.cholesky(sol.covariance)

    def sample(s, gain=sol.gain):
        eps = torch.randn(2000, s.shape[0], 1, generator=gen, dtype=torch.float64)
        return s @ gain.T + eps @ chol.T

    r = compare_with_soft_lqr(sol, states, sample, sol.q_value, grid_points=5)
    assert r.gain_error < 0.01 and r.offset.abs().max() < 0.01
    assert r.covariance_error < 0.01 and r.critic_error == 0.0
    assert r.grid_states.shape == (25 * 7, 2) and r.grid_actions.shape == (25 * 7, 1)
    r = compare_with_soft_lqr(sol, states, sample, lambda s, a: sol.q_value(s, a) + 0.1,
                              grid_points=5)  # fmt: skip
    assert r.critic_error == pytest.approx(0.1 / r.q_exact.abs().min().item())
    assert r.critic_error_of_max == pytest.approx(0.1 / r.q_exact.abs().max().item())
    r = compare_with_soft_lqr(sol, states, lambda s: sample(s, 1.1 * sol.gain), sol.q_value)
    assert r.gain_error == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="states"):
        compare_with_soft_lqr(sol, states[:, :1], sample, sol.q_value)
    with pytest.raises(ValueError, match="sample_actions"):
        compare_with_soft_lqr(sol, states, lambda s: s, sol.q_value)
