"""MPPI as receding-horizon importance sampling: its control cost comes out of the
prior/proposal ratio, its iterations target the same (closed-form) posterior, it swings up."""

import math

import gymnasium as gym
import pyro.distributions as dist
import pytest
import torch

import pgm_control.importance
from pgm_control.continuous import ContinuousMDP
from pgm_control.envs import angle_normalize, pendulum
from pgm_control.importance import (
    WeightDegeneracyWarning,
    _continuous_posterior,
    importance_posterior,
)
from pgm_control.mppi import MPPI, AutoregressiveNormal, DiagonalNormal, Episode, run_episode

F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore::pgm_control.importance.WeightDegeneracyWarning")


@pytest.mark.parametrize("family", ["torch Normal", "DiagonalNormal"])
def test_control_cost_comes_out_of_the_prior_proposal_ratio(family):
    """log w = Σr/λ + log p(v) − log q(v) = Σr/λ − Σₜ Uₜᵀ Σ⁻¹ εₜ − ½ Σₜ Uₜᵀ Σ⁻¹ Uₜ.

    MPPI's weight with its control cost λ·Uᵀ Σ⁻¹ ε (Williams et al. 2017, Alg. 2).
    """
    mdp = pendulum(12)
    lam, H, K = 0.7, 12, 64
    sigma = torch.tensor([0.8], dtype=F64)
    U = torch.linspace(-1.5, 1.5, H, dtype=F64)[:, None]  # a nonzero plan
    if family == "torch Normal":
        prior = dist.Normal(torch.zeros(1, dtype=F64), sigma).to_event(1)
        proposal = dist.Normal(U, sigma).to_event(2)
    else:
        prior = DiagonalNormal(torch.zeros(1, dtype=F64), sigma)
        proposal = AutoregressiveNormal(U, sigma, 0.0)
    r = importance_posterior(
        mdp, torch.tensor([3.0, 0.5], dtype=F64), horizon=H, num_samples=K, temperature=lam,
        proposal=proposal, action_prior=prior, seed=0,
    )  # fmt: skip
    eps = r.actions - U
    control_cost = lam * (U * eps / sigma**2).sum((-1, -2))  # pytorch_mppi's λ·Uᵀ Σ⁻¹ ε
    constant = 0.5 * (U**2 / sigma**2).sum()
    torch.testing.assert_close(
        r.log_weights, r.returns / lam - control_cost / lam - constant, rtol=0, atol=1e-10
    )
    # hence the same normalised weights as MPPI's exp(−(S + λ Uᵀ Σ⁻¹ ε)/λ) with cost S = −Σr
    cost = -r.returns + control_cost
    torch.testing.assert_close(r.weights, torch.softmax(-cost / lam, 0), rtol=0, atol=1e-12)


def test_controller_weights_carry_the_control_cost():
    mdp = pendulum()
    ctrl = MPPI(mdp, horizon=10, num_samples=128, temperature=0.5, noise_scale=0.6, seed=1)
    s = torch.tensor([2.5, -0.3], dtype=F64)
    ctrl.act(s)
    U = ctrl.plan  # the warm-started proposal mean of the next step
    ctrl.act(s)
    r = ctrl.result
    eps = r.actions - U
    expected = r.returns / 0.5 - (U * eps / 0.36).sum((-1, -2)) - 0.5 * (U**2 / 0.36).sum()
    torch.testing.assert_close(r.log_weights, expected, rtol=0, atol=1e-10)


def test_distributions_match_closed_forms():
    loc, sigma = torch.randn(6, 2, dtype=F64), torch.tensor([0.5, 2.0], dtype=F64)
    v = torch.randn(9, 6, 2, dtype=F64)
    torch.testing.assert_close(
        DiagonalNormal(loc, sigma).log_prob(v), dist.Normal(loc, sigma).to_event(1).log_prob(v)
    )
    for rho in (0.0, 0.8):
        i = torch.arange(6)
        corr = rho ** (i[:, None] - i[None, :]).abs().double()  # AR(1): corr(εₜ, εₜ₊ₖ) = ρᵏ
        exact = sum(
            dist.MultivariateNormal(loc[:, j], sigma[j] ** 2 * corr).log_prob(v[..., j])
            for j in range(2)
        )
        d = AutoregressiveNormal(loc, sigma, rho)
        torch.testing.assert_close(d.log_prob(v), exact)
        x = d.expand((40_000,)).sample()
        eps = (x - loc) / sigma
        assert eps.std(0).sub(1).abs().max() < 0.05
        assert (eps[:, 1:] * eps[:, :-1]).mean().sub(rho).abs() < 0.03


def test_autoregressive_samples_have_the_ar1_covariance_and_gradients():
    """The sampler runs the AR(1) recursion as one matrix product: check it against the
    recursion itself (same draws) and check reparameterised gradients flow through loc and σ,
    also after the filter was first built under ``torch.inference_mode`` (as MPPI does)."""
    horizon, rho = 7, 0.9
    with torch.inference_mode():
        AutoregressiveNormal(torch.zeros(horizon, 2), 1.0, rho).sample((3,))
    loc = torch.randn(horizon, 2, requires_grad=True)
    sigma = torch.tensor([0.5, 2.0], requires_grad=True)
    d = AutoregressiveNormal(loc, sigma, rho)
    torch.manual_seed(0)
    x = d.rsample((5,))
    torch.manual_seed(0)
    xi = torch.randn(horizon, 5, 2) * sigma  # the sampler draws its noise time-first
    c, steps = math.sqrt(1 - rho**2), [xi[0]]
    for t in range(1, horizon):
        steps.append(rho * steps[-1] + c * xi[t])
    torch.testing.assert_close(x, loc + torch.stack(steps, 1))
    x.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full_like(loc, 5.0))
    assert sigma.grad is not None and torch.isfinite(sigma.grad).all()


def test_terminal_reward_scores_the_state_the_last_action_reaches():
    """With r_T, the plan's weights see s_H: a terminal reward that prefers a high final
    velocity moves the posterior-mean plan towards positive torque."""
    base = pendulum(4)
    s_0 = torch.tensor([0.0, 0.0])
    plans = {}
    for name, mdp in [("none", base), ("fast", base.replace(terminal_reward=lambda s: s[..., 1]))]:
        r = importance_posterior(
            mdp, s_0, horizon=4, num_samples=4096, temperature=0.05, seed=0,
            proposal=AutoregressiveNormal(torch.zeros(4, 1), 1.0, 0.0),
            action_prior=DiagonalNormal(torch.zeros(1), 1.0),
        )  # fmt: skip
        plans[name] = r.plan
    assert plans["fast"].sum() > plans["none"].sum() + 1.0
    with pytest.raises(TypeError, match="terminal_reward"):
        base.replace(terminal_reward=1.0)
    with pytest.raises(TypeError, match="terminal_reward.*replace"):
        pendulum(4, terminal_reward=lambda s: s[..., 1])


def _integrator(horizon=3, q=0.5, sigma=1.0, s_0=1.0, alpha=1.0):
    mdp = ContinuousMDP(
        lambda s, a: s + a, lambda s, a: -0.5 * q * s[..., 0] ** 2,
        dist.Normal(torch.zeros(1), 1.0).to_event(1), horizon, -50.0, 50.0,
    )  # fmt: skip
    L = torch.tril(torch.ones(horizon, horizon), -1)
    precision = torch.eye(horizon) / sigma**2 + q * L.T @ L / alpha
    return mdp, torch.linalg.solve(precision, -q * s_0 * L.T @ torch.ones(horizon) / alpha)


def test_iterations_refit_the_proposal_and_target_the_same_posterior():
    # the posterior mean (−2.4, −0.8, 0) is far from the first proposal's mean 0
    mdp, exact_mean = _integrator(q=1.0, s_0=4.0)
    s = torch.tensor([4.0])
    ess, errors = {}, {}
    for iterations in (1, 4):
        errs, e = [], []
        for seed in range(8):
            ctrl = MPPI(
                mdp, horizon=3, num_samples=2000, temperature=1.0, noise_scale=1.0,
                iterations=iterations, seed=seed,
            )  # fmt: skip
            a_0 = ctrl.act(s)
            errs.append(abs(a_0.item() - exact_mean[0].item()))
            e.append(ctrl.result.ess)
        errors[iterations], ess[iterations] = sum(errs) / len(errs), sum(e) / len(e)
    # the refitted proposal sits near the posterior: many more effective samples, same target
    assert ess[4] > 10 * ess[1]
    assert errors[4] < errors[1] and errors[4] < 0.05


def test_swings_up_the_pendulum_twin():
    mdp = pendulum()
    ctrl = MPPI(mdp, horizon=20, num_samples=256, temperature=0.5, noise_scale=1.0, seed=0)
    s = torch.tensor([math.pi, 0.0])
    total = 0.0
    for _ in range(100):
        a = ctrl.act(s)
        assert a.shape == (1,) and -2 <= a.item() <= 2
        s, r = mdp.step(s, a)
        total += r.item()
    assert abs(angle_normalize(s[0]).item()) < 0.2 and abs(s[1].item()) < 1.0
    assert total > -400
    assert len(ctrl.ess_history) == 100


def test_warm_start_shift_and_reset():
    ctrl = MPPI(pendulum(), horizon=6, num_samples=32, temperature=1.0, noise_scale=1.0, seed=0)
    assert ctrl.plan is None
    s = torch.tensor([1.0, 0.0])
    a = ctrl.act(s)
    posterior_mean = ctrl.result.plan.clamp(-2, 2)
    torch.testing.assert_close(a, posterior_mean[0])
    torch.testing.assert_close(ctrl.plan[:-1], posterior_mean[1:])
    assert ctrl.plan[-1].abs().max() == 0
    ctrl.reset()
    assert ctrl.plan is None and ctrl.ess_history == [] and ctrl.result is None


def test_seeded_reproducible_and_global_rng_untouched():
    s = torch.tensor([2.0, 0.0])
    before = torch.get_rng_state()
    runs = []
    for seed in (3, 3, 4):
        ctrl = MPPI(
            pendulum(), horizon=5, num_samples=16, temperature=1.0, noise_scale=1.0, seed=seed
        )
        runs.append(torch.stack([ctrl.act(s) for _ in range(3)]))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_dtype_follows_the_state_and_warns_once_per_episode():
    ctrl = MPPI(pendulum(), horizon=8, num_samples=256, temperature=0.01, noise_scale=1.0, seed=0)
    with pytest.warns(WeightDegeneracyWarning) as record:
        for _ in range(3):
            a = ctrl.act(torch.tensor([3.0, 0.0], dtype=torch.float32))
    assert a.dtype == torch.float32 and ctrl.plan.dtype == torch.float32
    assert len([w for w in record if w.category is WeightDegeneracyWarning]) == 1
    assert not a.is_inference()


def test_run_episode_in_the_real_env():
    mdp = pendulum()
    ctrl = MPPI(mdp, horizon=5, num_samples=16, temperature=1.0, noise_scale=1.0, seed=0)
    env = gym.make("Pendulum-v1")
    ep = run_episode(env, ctrl.act, steps=4, seed=0, mdp=mdp, initial_state=[math.pi, 0.0])
    assert isinstance(ep, Episode)
    assert ep.states.shape == (5, 2) and ep.actions.shape == (4, 1) and ep.rewards.shape == (4,)
    assert ep.states[0] == pytest.approx([math.pi, 0.0])
    # the first reward is gymnasium's for hanging at rest: −(π² + 0.001·u²)
    assert ep.rewards[0] == pytest.approx(-(math.pi**2) - 0.001 * ep.actions[0, 0] ** 2, abs=1e-4)
    assert ep.ms_per_step > 0 and not ep.terminated
    ep = run_episode(env, lambda x: torch.zeros(1), steps=2, seed=0, mdp=mdp, observations=True)
    assert ep.states.shape == (3, 3)  # (cos θ, sin θ, θ̇) as the env observes


def test_bad_inputs_raise_clear_errors():
    mdp = pendulum()
    ok = dict(horizon=5, num_samples=8, temperature=1.0, noise_scale=1.0)
    for bad, err, match in [
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(horizon=0), ValueError, "horizon"),
        (dict(horizon=2.0), TypeError, "horizon"),
        (dict(noise_scale=0.0), ValueError, "noise_scale"),
        (dict(noise_scale=[1.0, 1.0]), ValueError, "noise_scale"),
        (dict(iterations=0), ValueError, "iterations"),
        (dict(noise_correlation=1.0), ValueError, "noise_correlation"),
        (dict(seed=1.5), TypeError, "seed"),
    ]:
        with pytest.raises(err, match=match):
            MPPI(mdp, **{**ok, **bad})
    with pytest.raises(TypeError, match="ContinuousMDP"):
        from pgm_control import chain_mdp

        MPPI(chain_mdp(), **ok)
    ctrl = MPPI(mdp, **ok)
    with pytest.raises(ValueError, match="state"):
        ctrl.act(torch.zeros(3))
    with pytest.raises(ValueError, match="state"):
        ctrl.act(torch.tensor([float("inf"), 0.0]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("correlation", [0.0, 0.9])
def test_closed_form_weights_equal_the_pyro_trace(correlation, terminal, dtype):
    """MPPI's hot path evaluates the model density in closed form; it must equal the trace
    (the check the controller used to run on its first plan, now here)."""
    mdp = pendulum(12, terminal_reward=terminal, dtype=dtype)
    s_0 = torch.tensor([3.0, -0.5], dtype=dtype)
    sigma = torch.tensor([0.7], dtype=dtype)
    prior = DiagonalNormal(torch.zeros(1, dtype=dtype), sigma)
    proposal = AutoregressiveNormal(0.3 * torch.ones(12, 1, dtype=dtype), sigma, correlation)
    runs = []
    for traced in (True, False):
        torch.manual_seed(5)
        runs.append(_continuous_posterior(mdp, s_0, 256, 0.4, prior, proposal, 0, traced=traced))
    traced, fast = runs
    assert fast.log_weights.dtype == traced.log_weights.dtype == dtype
    # the same operations in the same order: equal to the last bit, in either dtype
    assert torch.equal(fast.log_weights, traced.log_weights)
    assert torch.equal(fast.plan, traced.plan)
    assert torch.equal(fast.returns, traced.returns)


def test_route_is_decided_once_from_the_dynamics():
    """Stochastic (learned) dynamics keep the traced route, deterministic ones the closed form;
    the controller decides it when it is built, from ``mdp.stochastic``."""
    base = pendulum(5)
    noisy = base.replace(dynamics=lambda s, a: dist.Normal(base.dynamics(s, a), 0.01).to_event(1))
    assert noisy.stochastic and not base.stochastic
    ctl = MPPI(noisy, horizon=5, num_samples=32, temperature=1.0, noise_scale=1.0, seed=0)
    assert ctl.closed_form is False
    assert ctl.act(torch.tensor([3.0, 0.0])).shape == (1,)
    ctl2 = MPPI(base, horizon=5, num_samples=32, temperature=1.0, noise_scale=1.0, seed=0)
    assert ctl2.closed_form is True and "closed_form=True" in repr(ctl2)


def test_the_hot_path_never_traces_deterministic_dynamics(monkeypatch):
    """No self-check on the first plan any more: with deterministic dynamics every plan,
    the first included, is weighed in closed form (Pyro's trace is never run)."""

    def no_trace(*args, **kwargs):
        raise AssertionError("the Pyro trace ran on MPPI's hot path")

    monkeypatch.setattr(pgm_control.importance, "_weigh", no_trace)
    ctrl = MPPI(pendulum(), horizon=8, num_samples=64, temperature=1.0, noise_scale=1.0, seed=0)
    for _ in range(3):
        ctrl.act(torch.tensor([3.0, 0.0]))
    checked = MPPI(pendulum(), horizon=8, num_samples=64, temperature=1.0, noise_scale=1.0,
                   check=True)  # fmt: skip
    with pytest.raises(AssertionError, match="hot path"):
        checked.act(torch.tensor([3.0, 0.0]))


@pytest.mark.parametrize("terminal", [False, True])
def test_check_compares_the_routes_and_changes_no_action(terminal):
    """``check=True`` weighs the first plan both ways on the same draws: the actions are the
    ones the unchecked controller takes, bit for bit (the routes agree to the last bit)."""
    mdp = pendulum(terminal_reward=terminal)
    s = torch.tensor([3.0, -0.5])
    runs = []
    for check in (False, True):
        ctrl = MPPI(mdp, horizon=8, num_samples=64, temperature=0.7, noise_scale=1.0, seed=2,
                    noise_correlation=0.5, check=check)  # fmt: skip
        runs.append(torch.stack([ctrl.act(s) for _ in range(3)]))
    assert torch.equal(runs[0], runs[1])


def test_check_catches_dynamics_that_are_not_functions_of_the_state():
    """A reward with hidden state differs between the two routes: the check says so."""

    class Drifting:
        def __init__(self):
            self.calls = 0

        def __call__(self, s, a):
            self.calls += 1
            return -(s**2).sum(-1) + self.calls

    mdp = pendulum(4).replace(reward=Drifting())
    ctrl = MPPI(mdp, horizon=4, num_samples=16, temperature=1.0, noise_scale=1.0, check=True)
    with pytest.raises(ValueError, match="closed-form weights disagree"):
        ctrl.act(torch.tensor([1.0, 0.0]))


def _float64_log_weights(mdp, s_0, actions, plan, sigma, lam, rho):
    """log w of given particles recomputed in float64 from the twin and the densities."""
    mdp64 = pendulum(mdp.horizon, terminal_reward=mdp.terminal_reward is not None)
    a = actions.double()
    states, s = [], s_0.double()
    for a_t in a.unbind(-2):
        states.append(s)
        s = mdp64.dynamics(s, a_t)
    states = torch.stack(torch.broadcast_tensors(*states), -2)
    log_w = mdp64.reward(states, a).sum(-1) / lam
    if mdp.terminal_reward is not None:
        log_w = log_w + mdp64.terminal_reward(s) / lam
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    prior = dist.Normal(torch.zeros(1, dtype=torch.float64), sigma)
    log_w = log_w + prior.log_prob(a).sum((-1, -2))
    return log_w - AutoregressiveNormal(plan.double(), sigma, rho).log_prob(a)


@pytest.mark.parametrize("terminal", [False, True])
def test_float32_twin_plans_with_float32_weights_that_match_float64_arithmetic(terminal):
    """A float32 pendulum and state: the plan and weights are float32, finite, and each
    particle's log-weight equals the float64 recomputation from the same sampled actions to
    float32 precision (relative error of a sum of H·(dynamics, reward) terms)."""
    mdp = pendulum(dtype=torch.float32, terminal_reward=terminal)
    assert mdp.dtype == torch.float32
    lam, rho, H = 0.5, 0.9, 15
    ctrl = MPPI(mdp, horizon=H, num_samples=256, temperature=lam, noise_scale=1.0, seed=0,
                noise_correlation=rho)  # fmt: skip
    s = torch.tensor([3.0, 0.0], dtype=torch.float32)
    for _ in range(3):
        plan = ctrl.plan if ctrl.plan is not None else torch.zeros(H, 1, dtype=torch.float32)
        a = ctrl.act(s)
        r = ctrl.result
        assert a.dtype == r.log_weights.dtype == r.plan.dtype == torch.float32
        assert torch.isfinite(r.log_weights).all() and torch.isfinite(a).all()
        exact = _float64_log_weights(mdp, s, r.actions, plan, 1.0, lam, rho)
        eps = torch.finfo(torch.float32).eps
        # each term is rounded once per op; 50·H ops of magnitude ≤ |log w| bound the error
        tol = 50 * H * eps * exact.abs().max()
        assert (r.log_weights.double() - exact).abs().max() < tol
        s = mdp.step(s, a)[0]


def test_an_underflowing_temperature_is_named_as_the_cause():
    ctl = MPPI(pendulum(), horizon=5, num_samples=16, temperature=1e-300,
                  noise_scale=1.0, seed=0)  # fmt: skip
    with pytest.raises(ValueError) as exc:
        ctl.act(torch.tensor([math.pi, 0.0], dtype=torch.float32))  # Σr/α overflows float32
    message = str(exc.value)
    assert "`temperature` = 1e-300 is too small" in message and "torch.float32" in message
    assert "proposal put no mass" not in message
