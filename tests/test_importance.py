"""Importance sampling of p(τ | O) against exact routes: soft value iteration (tabular),
softmax of returns (deterministic dynamics), a closed-form Gaussian posterior (linear-quadratic)."""

import math
import warnings

import pyro.distributions as dist
import pytest
import torch

from pgm_control import random_mdp, soft_value_iteration
from pgm_control.backward import log_evidence
from pgm_control.continuous import ContinuousMDP
from pgm_control.envs import pendulum
from pgm_control.forward import state_action_marginals
from pgm_control.importance import (
    ImportanceResult,
    WeightDegeneracyWarning,
    importance_posterior,
)

ALPHA = 1.5
H = 3


def _from(mdp, s_0, horizon):
    onehot = torch.zeros(mdp.num_states, dtype=mdp.float_dtype)
    onehot[s_0] = 1.0
    return mdp.replace(initial=onehot, horizon=horizon)


@pytest.fixture(scope="module")
def small_mdp():
    return random_mdp(4, 3, H, seed=3, random_action_prior=True)


@pytest.mark.parametrize("proposal", ["prior", "random policy"])
def test_tabular_estimate_converges_to_exact_posterior(small_mdp, proposal):
    s_0 = 1
    exact_mdp = _from(small_mdp, s_0, H)
    # p(aₜ | s₀, O) for every t, from forward–backward messages (independent of the sampler)
    exact_plan = state_action_marginals(exact_mdp, temperature=ALPHA).sum(1)
    exact_pi0 = soft_value_iteration(exact_mdp, temperature=ALPHA, backup="optimistic").policy[
        0, s_0
    ]
    torch.testing.assert_close(exact_plan[0], exact_pi0)
    exact_log_z = log_evidence(exact_mdp, temperature=ALPHA).item()
    q = None
    if proposal == "random policy":
        g = torch.Generator().manual_seed(0)
        q = torch.rand(H, 4, 3, generator=g, dtype=torch.float64) + 0.2
        q = q / q.sum(-1, keepdim=True)
    errors = []
    for K in (200, 2_000, 20_000):
        r = importance_posterior(
            small_mdp, s_0, horizon=H, num_samples=K, temperature=ALPHA, proposal=q, seed=K
        )
        assert r.plan.shape == (H, 3) and r.first_action.shape == (3,)
        torch.testing.assert_close(r.plan.sum(-1), torch.ones(H, dtype=torch.float64))
        err = (r.plan - exact_plan).abs().max().item()
        # self-normalised IS: sd of p̂(a) ≈ √(p(1−p)/ESS) ≤ 0.5/√ESS; allow 4 sd
        assert err < 2.0 / math.sqrt(r.ess), (K, err, r.ess)
        assert abs(r.log_evidence - exact_log_z) < 4.0 / math.sqrt(r.ess), (K, r.log_evidence)
        errors.append(err)
    assert errors[-1] < errors[0] / 3  # ~1/√K: 100× the particles, ~10× smaller error


@pytest.mark.parametrize("random_prior", [False, True])
def test_deterministic_dynamics_prior_proposal_weights_are_softmax_of_returns(random_prior):
    mdp = random_mdp(6, 3, 5, seed=7, deterministic=True, random_action_prior=random_prior)
    alpha = 0.7
    r = importance_posterior(mdp, 2, horizon=5, num_samples=500, temperature=alpha, seed=1)
    # returns recomputed by walking the deterministic table with the sampled actions
    next_state = mdp.transition.argmax(-1)
    s = torch.full((500,), 2)
    returns = torch.zeros(500, dtype=torch.float64)
    for t in range(5):
        a = r.actions[:, t]
        s_next = next_state[s, a]
        returns += mdp.reward[s, a, s_next]
        s = s_next
    torch.testing.assert_close(r.returns, returns, rtol=0, atol=1e-12)
    torch.testing.assert_close(r.log_weights, returns / alpha, rtol=0, atol=1e-12)
    torch.testing.assert_close(r.weights, torch.softmax(returns / alpha, 0), rtol=0, atol=1e-14)


def _integrator(q=0.5, sigma=1.0, s_0=1.0, horizon=3, dtype=torch.float64):
    """s' = s + a, r = −½·q·s², prior a ~ N(0, σ²): a Gaussian posterior over a₀:H₋₁."""
    mdp = ContinuousMDP(
        lambda s, a: s + a,
        lambda s, a: -0.5 * q * s[..., 0] ** 2,
        dist.Normal(torch.zeros(1, dtype=dtype), 1.0).to_event(1),
        horizon, -10.0, 10.0, name="integrator",
    )  # fmt: skip
    # s = s₀·1 + L·a with L strictly lower-triangular ones (sₜ = s₀ + Σ_{j<t} aⱼ)
    L = torch.tril(torch.ones(horizon, horizon, dtype=torch.float64), -1)
    ones = torch.ones(horizon, dtype=torch.float64)
    precision = torch.eye(horizon, dtype=torch.float64) / sigma**2 + q * L.T @ L / ALPHA
    cov = torch.linalg.inv(precision)
    mean = cov @ (-q * s_0 * L.T @ ones / ALPHA)
    return mdp, mean, cov


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("use_proposal", [False, True])
def test_continuous_linear_gaussian_posterior_mean(use_proposal, dtype):
    """The closed-form posterior mean (computed in float64) is recovered in either dtype."""
    mdp, mean, cov = _integrator(dtype=dtype)
    assert mdp.dtype == dtype
    prior = dist.Normal(torch.zeros(1, dtype=dtype), 1.0).to_event(1)
    proposal = None
    if use_proposal:  # a shifted, wider Gaussian: the log q term must be subtracted right
        proposal = dist.Normal(mean[:, None].to(dtype) + 0.3, 1.3).to_event(2)
    r = importance_posterior(
        mdp, torch.tensor([1.0], dtype=dtype), horizon=3, num_samples=40_000,
        temperature=ALPHA, proposal=proposal, seed=0, action_prior=prior,
    )  # fmt: skip
    assert r.plan.shape == (3, 1) and r.first_action.shape == (1,)
    assert r.plan.dtype == r.log_weights.dtype == dtype and torch.isfinite(r.log_weights).all()
    sd = cov.diagonal().sqrt()
    assert ((r.plan[:, 0] - mean).abs() < 4 * sd / math.sqrt(r.ess)).all(), (r.plan, mean)


def test_stochastic_model_sites_are_left_to_the_model():
    # a learned-model-like dynamics returning a Distribution: its s_{t+1} sites are drawn from
    # the model itself, so with the prior as proposal the weights are still exp(Σ r/α)
    base = pendulum(5)
    mdp = base.replace(dynamics=lambda s, a: dist.Normal(base.dynamics(s, a), 0.05).to_event(1))
    r = importance_posterior(
        mdp, torch.tensor([3.0, 0.0]), horizon=5, num_samples=64, temperature=2.0, seed=0
    )
    torch.testing.assert_close(r.log_weights, r.returns / 2.0, rtol=0, atol=1e-12)


def test_result_fields_and_ess(small_mdp):
    r = importance_posterior(small_mdp, 0, horizon=2, num_samples=300, temperature=3.0, seed=0)
    assert isinstance(r, ImportanceResult)
    assert r.log_weights.shape == r.weights.shape == r.returns.shape == (300,)
    assert r.actions.shape == (300, 2) and r.actions.dtype == torch.long
    torch.testing.assert_close(r.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert 1.0 <= r.ess <= 300 and r.ess == pytest.approx(1 / (r.weights**2).sum().item())
    assert 0 < r.ess_fraction <= 1
    assert "ESS" in repr(r)


def test_degenerate_weights_warn_and_high_temperature_does_not():
    mdp = pendulum(20)
    s = torch.tensor([math.pi, 0.0])
    with pytest.warns(WeightDegeneracyWarning, match="ESS"):
        importance_posterior(mdp, s, horizon=20, num_samples=256, temperature=0.1, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeightDegeneracyWarning)
        r = importance_posterior(mdp, s, horizon=20, num_samples=256, temperature=1e4, seed=0)
    assert r.ess_fraction > 0.5


def test_seeded_reproducible_and_global_rng_untouched(small_mdp):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = importance_posterior(small_mdp, 0, horizon=3, num_samples=50, temperature=1.0, seed=4)
    b = importance_posterior(small_mdp, 0, horizon=3, num_samples=50, temperature=1.0, seed=4)
    c = importance_posterior(small_mdp, 0, horizon=3, num_samples=50, temperature=1.0, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.log_weights, b.log_weights)
    assert not torch.equal(a.actions, c.actions)


def test_dtype_follows_the_state():
    mdp = pendulum(4)
    r = importance_posterior(
        mdp, torch.tensor([1.0, 0.0], dtype=torch.float32), horizon=4, num_samples=16,
        temperature=10.0, seed=0,
    )  # fmt: skip
    assert r.plan.dtype == r.log_weights.dtype == r.actions.dtype == torch.float32


def test_bad_inputs_raise_clear_errors(small_mdp):
    cont = pendulum(5)
    s = torch.zeros(2)
    ok = dict(horizon=3, num_samples=10, temperature=1.0)
    for bad, err, match in [
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(temperature=-1.0), ValueError, "temperature"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(num_samples=2.5), TypeError, "num_samples"),
        (dict(horizon=0), ValueError, "horizon"),
        (dict(horizon=1.5), TypeError, "horizon"),
    ]:
        for mdp, state in ((small_mdp, 0), (cont, s)):
            with pytest.raises(err, match=match):
                importance_posterior(mdp, state, **{**ok, **bad})
    with pytest.raises(ValueError, match="state"):
        importance_posterior(cont, torch.zeros(3), **ok)
    with pytest.raises(ValueError, match="state"):
        importance_posterior(cont, torch.tensor([float("nan"), 0.0]), **ok)
    with pytest.raises(ValueError, match="state"):
        importance_posterior(small_mdp, 4, **ok)
    with pytest.raises(TypeError, match="state"):
        importance_posterior(small_mdp, 1.0, **ok)
    with pytest.raises(ValueError, match="proposal"):
        importance_posterior(
            cont, s, proposal=dist.Normal(torch.zeros(4, 1), 1.0).to_event(2), **ok
        )
    with pytest.raises(TypeError, match="proposal"):
        importance_posterior(cont, s, proposal=torch.zeros(3, 1), **ok)
    zero = torch.zeros(4, 3, dtype=torch.float64)
    zero[:, 0] = 1.0
    with pytest.raises(ValueError, match="proposal"):
        importance_posterior(small_mdp, 0, proposal=zero, **ok)
    with pytest.raises(TypeError, match="mdp"):
        importance_posterior("FrozenLake-v1", 0, **ok)


def test_float32_pendulum_weights_match_float64_arithmetic():
    """A float32 twin and state: with the prior as proposal log wₖ = Σₜ r/α, and each
    particle's weight equals the float64 twin stepped by hand with the same actions, to
    float32 precision."""
    mdp = pendulum(10, dtype=torch.float32)
    s_0 = torch.tensor([3.0, 0.2], dtype=torch.float32)
    r = importance_posterior(mdp, s_0, horizon=10, num_samples=256, temperature=5.0, seed=0)
    assert r.log_weights.dtype == r.plan.dtype == torch.float32
    twin = pendulum(10)
    s, returns = s_0.double().expand(256, 2), torch.zeros(256, dtype=torch.float64)
    for a in r.actions.double().unbind(-2):
        returns += twin.reward(s, a)
        s = twin.dynamics(s, a)
    eps = torch.finfo(torch.float32).eps
    tol = 100 * eps * returns.abs().max()  # 10 steps, ~10 rounded ops each
    assert (r.returns.double() - returns).abs().max() < tol
    assert (r.log_weights.double() - returns / 5.0).abs().max() < tol / 5.0


def test_float32_tabular_estimate_matches_the_exact_posterior(small_mdp):
    mdp32 = small_mdp.replace(dtype=torch.float32)
    assert mdp32.transition.dtype == torch.float32
    exact_plan = state_action_marginals(_from(small_mdp, 1, H), temperature=ALPHA).sum(1)
    r = importance_posterior(mdp32, 1, horizon=H, num_samples=20_000, temperature=ALPHA, seed=0)
    assert r.plan.dtype == r.log_weights.dtype == torch.float32
    assert (r.plan.double() - exact_plan).abs().max() < 2.0 / math.sqrt(r.ess)
