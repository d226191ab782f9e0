"""SAC's exploration: the default target entropy in the env's units, and the correlated
exploration noise (``noise_correlation``) held to the AR(1) law it claims, by Monte Carlo."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgm_control.guides.continuous import SquashedNormal
from pgm_control.sac import SAC

SMALL = dict(hidden=(16, 16), batch_size=32, learning_starts=50, buffer_size=500, progress=False)


def test_default_target_entropy_is_minus_dim_a_on_the_unit_scaled_box():
    # Pendulum: box [−2, 2], so H̄ = log 2 − 1; MountainCarContinuous: [−1, 1], H̄ = −1
    assert SAC("Pendulum-v1", **SMALL).target_entropy == pytest.approx(math.log(2) - 1)
    assert SAC("MountainCarContinuous-v0", **SMALL).target_entropy == pytest.approx(-1.0)
    assert SAC("Pendulum-v1", target_entropy=-1.0, **SMALL).target_entropy == -1.0
    # a 2-D box of half-widths (0.5, 3): Σ (log hᵢ − 1)
    env = gym.make("Pendulum-v1")
    env.action_space = gym.spaces.Box(
        np.array([-0.5, 0.0], np.float32), np.array([0.5, 6.0], np.float32)
    )
    expected = math.log(0.5) - 1 + math.log(3.0) - 1
    model = SAC(env, **SMALL)
    assert model.target_entropy == pytest.approx(expected)


def test_entropy_in_env_units_is_the_unit_box_entropy_plus_log_half_widths():
    """The reason for the default: the same Gaussian squashed onto [−h, h] has entropy
    −E[log q] larger by log h than onto [−1, 1] (Monte Carlo, 200k draws, both boxes)."""
    g = torch.Generator().manual_seed(0)
    loc = torch.full((200_000, 1), 0.3, dtype=torch.float64)
    scale = torch.full((200_000, 1), 0.7, dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    h_unit = -SquashedNormal(loc, scale, -one, one).rsample_with_log_prob(generator=g)[1]
    g.manual_seed(0)
    h_wide = -SquashedNormal(loc, scale, -2 * one, 2 * one).rsample_with_log_prob(generator=g)[1]
    # the same ε: the difference is exactly log 2 per draw, and so is that of the means
    torch.testing.assert_close(h_wide - h_unit, torch.full_like(h_unit, math.log(2.0)))


def _noise_from_actions(model, obs, actions):
    """ε = (atanh((a − c)/h) − μ(s)) / σ(s): the noise behind each behaviour action."""
    with torch.no_grad():
        q = model.policy(torch.as_tensor(obs))
        u = torch.atanh((torch.as_tensor(actions, dtype=torch.float64) - 0.0) / 2.0)
        return ((u - q.loc.double()) / q.scale.double()).squeeze(-1).numpy()


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_correlated_noise_keeps_the_policy_marginal_and_has_lag_one_correlation_rho(rho):
    """AR(1) εₜ = ρ·εₜ₋₁ + √(1 − ρ²)·ξₜ from N(0, 1): each εₜ ~ N(0, 1) (so each action is a
    draw from q(·|s)) and corr(εₜ, εₜ₊ₖ) = ρᵏ. Monte Carlo over 10 000 steps at a fixed s,
    within 5 standard errors of the AR(1) process (effective sample size n·(1 − ρ)/(1 + ρ))."""
    model = SAC("Pendulum-v1", seed=1, noise_correlation=rho, **SMALL)
    obs = np.array([0.6, 0.8, -0.3], dtype=np.float32)
    n = 10_000
    with torch.inference_mode():
        actions = np.stack([model._explore(obs) for _ in range(n)])
    eps = _noise_from_actions(model, obs, actions)
    n_eff = n * (1 - rho) / (1 + rho)
    assert abs(eps.mean()) < 5 / math.sqrt(n_eff)
    assert abs(eps.var() - 1) < 5 * math.sqrt(2 * (1 + rho**2) / (1 - rho**2) / n)
    for lag in (1, 5):
        corr = np.corrcoef(eps[:-lag], eps[lag:])[0, 1]
        # Bartlett's variance of a lag-k sample autocorrelation of an AR(1)
        r2k = rho ** (2 * lag)
        var = ((1 + rho**2) * (1 - r2k) / (1 - rho**2) - 2 * lag * r2k) / n
        assert abs(corr - rho**lag) < 5 * math.sqrt(var)


def test_zero_correlation_is_the_usual_independent_draw_bit_for_bit():
    runs = []
    for rho in (None, 0.0):
        kw = {} if rho is None else {"noise_correlation": rho}
        model = SAC("Pendulum-v1", seed=4, **SMALL, **kw)
        model.learn(120)
        runs.append(model)
    a, b = runs
    assert torch.equal(a.buffer.actions[:120], b.buffer.actions[:120])
    for pa, pb in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(pa, pb)


def test_correlated_noise_learns_reproduces_saves_and_rejects_bad_values(tmp_path):
    runs = []
    for _ in range(2):
        model = SAC("Pendulum-v1", seed=2, noise_correlation=0.95, **SMALL)
        model.learn(120)
        runs.append(model)
    assert torch.equal(runs[0].buffer.actions[:120], runs[1].buffer.actions[:120])
    # after the 50 uniform warm-up steps, consecutive behaviour actions are strongly related
    acts = runs[0].buffer.actions[50:120, 0].numpy()
    assert np.corrcoef(acts[:-1], acts[1:])[0, 1] > 0.5
    path = tmp_path / "sac.pt"
    runs[0].save(path)
    loaded = SAC.load(path)
    assert loaded.noise_correlation == 0.95 and torch.equal(loaded._noise, runs[0]._noise)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="noise_correlation"):
            SAC("Pendulum-v1", noise_correlation=bad, **SMALL)
