"""Continuous guides, the continuous control model's density, and SVI on continuous MDPs.

Every number is checked against an independent route: torch's own TransformedDistribution
and numerical integration for the squashed density, a hand-rolled rollout for the model's
log-joint, the per-step model for the vectorised one, the reparameterised gradient for the
score-function one, and the torch twin for the real gymnasium env.
"""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.distributions import Uniform
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from pgm_control import envs
from pgm_control.continuous import ContinuousMDP
from pgm_control.fit_result import FitResult
from pgm_control.guides import CONTINUOUS_GUIDES, GUIDES
from pgm_control.guides.continuous import GaussianMLPGuide, SquashedNormal
from pgm_control.mdp import random_mdp
from pgm_control.models import continuous_control_model
from pgm_control.svi import fit_continuous

FAMILIES = sorted(CONTINUOUS_GUIDES)
F64 = torch.float64
ALPHA = 0.5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Rollouts are many small ops: intra-op threads only add contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _box_mdp(horizon=4):
    """A 2-D point pushed by a 2-D force in an asymmetric box: r = −|s|² − 0.1|a|²."""
    return ContinuousMDP(
        dynamics=lambda s, a: 0.9 * s + 0.1 * a,
        reward=lambda s, a: -(s**2).sum(-1) - 0.1 * (a**2).sum(-1),
        initial=Uniform(-torch.ones(2, dtype=F64), torch.ones(2, dtype=F64)).to_event(1),
        horizon=horizon,
        action_low=[-1.0, 0.0],
        action_high=[2.0, 0.5],
    )


def _elbo(num_particles):
    return Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=0)


def _traces(guide, mdp, **kwargs):
    guide_trace = poutine.trace(guide).get_trace(mdp, **kwargs)
    model = poutine.replay(continuous_control_model, trace=guide_trace)
    model_trace = poutine.trace(model).get_trace(mdp, **kwargs)
    return guide_trace, model_trace


def test_registry_holds_the_continuous_families():
    assert set(FAMILIES) == {"gaussian_mlp", "open_loop_normal"}
    for name in FAMILIES:
        assert GUIDES[name] is CONTINUOUS_GUIDES[name]


@pytest.mark.parametrize("vectorized", [True, False])
@pytest.mark.parametrize("family", FAMILIES)
def test_guides_sample_inside_the_action_box(family, vectorized):
    mdp = _box_mdp()
    guide = GUIDES[family](mdp, init_scale=3.0)  # wide: many draws near the edges
    states, actions = guide(mdp, num_particles=500, vectorized=vectorized)
    assert actions.shape == (500, mdp.horizon, 2) and states.shape == (500, mdp.horizon + 1, 2)
    assert (actions > mdp.action_low).all() and (actions < mdp.action_high).all()
    # the sampled states follow the true dynamics
    assert torch.allclose(states[:, 1:], 0.9 * states[:, :-1] + 0.1 * actions)


def test_saturated_samples_stay_inside_and_have_finite_density():
    low, high = torch.tensor([-2.0]), torch.tensor([2.0])
    q = SquashedNormal(torch.tensor([[60.0], [-60.0]]), torch.tensor([[0.1], [0.1]]), low, high)
    a = q.rsample((100,))
    assert (a > low).all() and (a < high).all()
    assert torch.isfinite(q.log_prob(a)).all()
    assert torch.isfinite(q.log_prob(a.clone())).all()  # also via the atanh route


def test_squashed_normal_density_matches_torch_transformed_distribution():
    low, high = torch.tensor([-1.0, 0.0], dtype=F64), torch.tensor([2.0, 0.5], dtype=F64)
    loc, scale = torch.tensor([0.3, -0.7], dtype=F64), torch.tensor([0.8, 1.5], dtype=F64)
    q = SquashedNormal(loc, scale, low, high)
    reference = TransformedDistribution(
        Normal(loc, scale),
        [TanhTransform(), AffineTransform((high + low) / 2, (high - low) / 2)],
    )
    a = q.sample((1000,))
    expected = reference.log_prob(a).sum(-1)
    assert torch.allclose(q.log_prob(a), expected, atol=1e-8)  # cached u
    assert torch.allclose(q.log_prob(a.clone()), expected, atol=1e-8)  # atanh round trip
    assert torch.allclose(q.median, (high + low) / 2 + (high - low) / 2 * torch.tanh(loc))


def test_squashed_normal_density_integrates_to_one_and_matches_samples():
    low, high = torch.tensor([-2.0]), torch.tensor([2.0])
    q = SquashedNormal(torch.tensor([0.8]), torch.tensor([1.3]), low, high)
    grid = torch.linspace(-2, 2, 200_001)[1:-1].unsqueeze(-1)
    density = q.log_prob(grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-3)
    # P(a < 1) by Monte Carlo vs the integral of the density
    inside = grid[:, 0] < 1.0
    p_integral = torch.trapezoid(density[inside], grid[inside, 0]).item()
    draws = q.sample((200_000,))
    p_mc = (draws < 1.0).double().mean().item()
    assert p_mc == pytest.approx(p_integral, abs=4 * math.sqrt(0.25 / 200_000))


def test_mlp_guide_log_density_matches_a_manual_computation():
    mdp = _box_mdp()
    guide = GaussianMLPGuide(mdp, hidden=(8,))
    guide_trace = poutine.trace(guide).get_trace(mdp, num_particles=50, vectorized=True)
    states, actions = guide_trace.nodes["_RETURN"]["value"]
    # recompute q(aₜ|sₜ) from the network by hand, squash inverted with atanh
    low, high = mdp.action_low, mdp.action_high
    c, h = (high + low) / 2, (high - low) / 2
    with torch.no_grad():
        out = guide.net(states[:, :-1])
        loc, raw = out[..., :2], out[..., 2:]
        log_scale = -5.0 + 0.5 * 7.0 * (torch.tanh(raw) + 1)
        y = (actions - c) / h
        u = torch.atanh(y)
        log_q = Normal(loc, log_scale.exp()).log_prob(u) - torch.log(1 - y**2) - torch.log(h)
    guide_trace.compute_log_prob()
    site = guide_trace.nodes["actions"]
    assert torch.allclose(site["log_prob"], log_q.sum((-1, -2)), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("initial_state", [None, (0.5, -0.3)])
def test_fast_and_per_step_forms_give_the_same_elbo_and_gradient(family, initial_state):
    mdp = _box_mdp(horizon=5)
    guide = GUIDES[family](mdp)
    if initial_state is not None:
        initial_state = torch.tensor(initial_state, dtype=F64)
    results = {}
    for vectorized in (True, False):
        pyro.set_rng_seed(7)  # the same noise: both forms draw one ε per step in order
        loss = _elbo(64).differentiable_loss(
            continuous_control_model,
            guide,
            mdp,
            temperature=ALPHA,
            initial_state=initial_state,
            vectorized=vectorized,
        )
        params = [p for p in guide.parameters() if p.requires_grad]
        results[vectorized] = (loss.detach(), torch.autograd.grad(loss, params))
    (loss_fast, grad_fast), (loss_step, grad_step) = results[True], results[False]
    assert loss_fast.item() == pytest.approx(loss_step.item(), rel=1e-12)
    for g_fast, g_step in zip(grad_fast, grad_step):
        assert torch.allclose(g_fast, g_step, atol=1e-10)


@pytest.mark.parametrize("vectorized", [True, False])
def test_elbo_equals_rewards_plus_prior_minus_log_q_by_hand(vectorized):
    mdp = _box_mdp(horizon=3)
    guide = GUIDES["gaussian_mlp"](mdp)
    guide_trace, model_trace = _traces(
        guide, mdp, num_particles=20, temperature=ALPHA, vectorized=vectorized
    )
    states, actions = guide_trace.nodes["_RETURN"]["value"]
    log_q = sum(
        s["fn"].log_prob(s["value"])
        for n, s in guide_trace.nodes.items()
        if s["type"] == "sample" and n != "s_0"
    )
    rewards = mdp.reward(states[:, :-1], actions)
    log_prior = -mdp.horizon * torch.log(mdp.action_high - mdp.action_low).sum()
    expected = rewards.sum(-1) / ALPHA + log_prior - log_q  # the lecture's ELBO, per particle
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    got = sum(s["log_prob"] for s in model_trace.nodes.values() if s["type"] == "sample") - sum(
        s["log_prob"] for s in guide_trace.nodes.values() if s["type"] == "sample"
    )
    assert torch.allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("vectorized", [True, False])
@pytest.mark.parametrize("fixed_start", [True, False])
def test_model_log_joint_equals_log_prior_plus_rewards_over_alpha(
    vectorized, fixed_start, terminal
):
    mdp = envs.pendulum(horizon=6, terminal_reward=terminal)
    gen = torch.Generator().manual_seed(3)
    actions = 4 * torch.rand(6, 1, generator=gen, dtype=F64) - 2
    s0 = torch.tensor([2.0, -0.5], dtype=F64)
    if vectorized:
        data = {"actions": actions}
    else:
        data = {f"a_{t}": actions[t] for t in range(6)}
    kwargs = dict(temperature=0.1, vectorized=vectorized)
    if fixed_start:
        kwargs["initial_state"] = s0
    else:
        data["s_0"] = s0
    trace = poutine.trace(poutine.condition(continuous_control_model, data)).get_trace(
        mdp, **kwargs
    )
    # by hand: step the pendulum in plain Python floats
    th, thdot, total_reward = 2.0, -0.5, 0.0
    for u in actions[:, 0].tolist():
        th_norm = (th + math.pi) % (2 * math.pi) - math.pi
        total_reward -= th_norm**2 + 0.1 * thdot**2 + 0.001 * u**2
        thdot = min(max(thdot + (15.0 * math.sin(th) + 3.0 * u) * 0.05, -8.0), 8.0)
        th = th + thdot * 0.05
    expected = 6 * -math.log(4.0) + total_reward / 0.1
    if terminal:  # p(O_T | s_T) = exp(r_T(s_T)/α), r_T the state part of the reward
        th_norm = (th + math.pi) % (2 * math.pi) - math.pi
        expected -= (th_norm**2 + 0.1 * thdot**2) / 0.1
    if not fixed_start:
        expected += -math.log(2 * math.pi * 2.0)  # p0 = U(−π, π) × U(−1, 1)
    assert trace.log_prob_sum().item() == pytest.approx(expected, rel=1e-12)
    states = trace.nodes["_RETURN"]["value"][0]
    assert states[-1].tolist() == pytest.approx([th, thdot], rel=1e-12)


def test_score_function_gradient_agrees_with_the_pathwise_gradient():
    """Two unbiased estimators of ∇ELBO: their averages over many particles must agree."""
    mdp = _box_mdp(horizon=2)
    s0 = torch.tensor([0.5, -0.5])
    grads = {}
    for reparameterized in (True, False):
        pyro.clear_param_store()
        guide = GUIDES["open_loop_normal"](mdp, init_loc=0.3, reparameterized=reparameterized)
        pyro.set_rng_seed(1)
        loss = _elbo(200_000).differentiable_loss(
            continuous_control_model,
            guide,
            mdp,
            temperature=1.0,
            initial_state=s0,
            vectorized=True,
        )
        grads[reparameterized] = torch.cat(
            [g.flatten() for g in torch.autograd.grad(loss, [guide.loc])]
        )
    assert torch.allclose(grads[False], grads[True], atol=0.02), grads
    assert grads[True].abs().max() > 0.1  # not trivially zero


def test_autonormal_runs_svi_on_the_per_step_model():
    mdp = envs.pendulum(horizon=5)
    kwargs = dict(temperature=1.0, initial_state=torch.tensor([1.0, 0.0]), vectorized=False)
    guide = AutoNormal(continuous_control_model)
    svi = SVI(continuous_control_model, guide, pyro.optim.Adam({"lr": 0.1}), _elbo(32))
    history = [-svi.step(mdp, **kwargs) for _ in range(60)]
    assert np.isfinite(history).all()
    assert np.mean(history[-20:]) > np.mean(history[:20]) + 1.0
    actions = guide.median(mdp, **kwargs)
    assert set(actions) == {f"a_{t}" for t in range(5)}
    assert all((-2 < a).all() and (a < 2).all() for a in actions.values())


def _elbo_estimate(guide, mdp, seed=11, **kwargs):
    """A many-particle ELBO on fixed noise (common random numbers for before/after)."""
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        return -_elbo(2000).loss(continuous_control_model, guide, mdp, vectorized=True, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_svi_steps_increase_the_elbo_on_a_short_pendulum(family):
    mdp = envs.pendulum(horizon=10)
    kwargs = dict(temperature=0.5, initial_state=torch.tensor([1.0, 0.0]))
    pyro.set_rng_seed(0)
    before = _elbo_estimate(GUIDES[family](mdp), mdp, **kwargs)  # the guide fit starts from
    names = set(pyro.get_param_store().keys())
    result = fit_continuous(
        mdp, family, steps=40, num_particles=32, lr=2e-2, seed=0, progress=False, **kwargs
    )
    # fit trains in its own param-store scope: the global store is left as it was
    assert set(pyro.get_param_store().keys()) == names
    assert isinstance(result, FitResult) and result.elbo.shape == (40,)
    assert result.estimator == "reparam" and result.guide_name == family
    after = _elbo_estimate(result.guide, mdp, **kwargs)  # the weights live in the guide
    assert after > before + 5.0, (before, after)
    guide, params = result.guide, result.params
    # params is the guide's state_dict: it loads into a freshly built guide of the family
    assert params.keys() == guide.state_dict().keys()
    fresh = GUIDES[family](mdp)
    fresh.load_state_dict(params)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), guide.parameters()))
    assert _elbo_estimate(fresh, mdp, **kwargs) == after


def test_score_estimator_runs_and_learns():
    mdp = _box_mdp(horizon=3)
    result = fit_continuous(
        mdp,
        "open_loop_normal",
        estimator="score",
        steps=100,
        num_particles=256,
        lr=0.05,
        temperature=1.0,
        progress=False,
    )
    assert result.estimator == "score" and result.guide.reparameterized is False
    # a guide object is switched to the estimator's kind of sample
    again = fit_continuous(mdp, result.guide, steps=2, num_particles=8, progress=False)
    assert again.estimator == "reparam" and again.guide.reparameterized is True
    assert result.elbo[-10:].mean() > result.elbo[:10].mean()


def test_keyboard_interrupt_returns_what_was_fitted():
    def interrupt(step, elbo, guide):
        if step == 2:
            raise KeyboardInterrupt

    mdp = envs.pendulum(horizon=3)
    result = fit_continuous(mdp, steps=50, num_particles=4, callback=interrupt, progress=False)
    assert result.extra["interrupted"] and len(result.elbo) == 3
    assert callable(result.guide.act)


def test_callback_can_stop_training():
    mdp = envs.pendulum(horizon=3)
    result = fit_continuous(
        mdp, steps=50, num_particles=4, progress=False, callback=lambda step, elbo, guide: step == 4
    )
    assert len(result.elbo) == 5 and not result.extra["interrupted"]


def test_fit_is_reproducible_under_a_seed():
    mdp = envs.pendulum(horizon=4)
    runs = [
        fit_continuous(mdp, steps=5, num_particles=8, seed=3, progress=False).elbo for _ in range(2)
    ]
    assert np.array_equal(runs[0], runs[1])


def test_evaluate_policy_in_gymnasium_matches_the_torch_twin():
    mdp = envs.pendulum(horizon=50)

    def policy(state, t):  # a fixed, state-dependent torque
        return torch.tensor([1.5 * math.sin(t / 7.0) - 0.3 * state[1].item()])

    start = torch.tensor([math.pi, 0.0])
    ret = envs.evaluate_policy("Pendulum-v1", policy, episodes=1, initial_state=start, steps=50)
    s, expected = start, 0.0
    for t in range(50):
        a = policy(s, t).to(torch.float32).double()  # the env receives float32 actions
        expected += mdp.reward(s, a).item()
        s = mdp.dynamics(s, a)
    assert ret.shape == (1,) and ret[0] == pytest.approx(expected, abs=1e-4)
    # seeded reset draws: the same seed, the same starts
    zero = lambda state, t: torch.zeros(1)  # noqa: E731
    first = envs.evaluate_policy(mdp, zero, episodes=3, seed=5, steps=20)
    again = envs.evaluate_policy(mdp, zero, episodes=3, seed=5, steps=20)
    assert np.array_equal(first, again) and len(set(first.tolist())) == 3
    # a fitted guide is evaluated through its deterministic `act`
    guide = GUIDES["gaussian_mlp"](mdp)
    by_guide = envs.evaluate_policy(mdp, guide, episodes=2, seed=1, steps=10)
    by_act = envs.evaluate_policy(mdp, guide.act, episodes=2, seed=1, steps=10)
    assert np.array_equal(by_guide, by_act)


def test_bad_inputs_raise_clear_errors():
    mdp = envs.pendulum(horizon=3)
    with pytest.raises(ValueError, match="estimator"):
        fit_continuous(mdp, estimator="enum", steps=1, progress=False)
    with pytest.raises(ValueError, match="continuous families"):
        fit_continuous(mdp, "tabular", steps=1, progress=False)
    with pytest.raises(ValueError, match="steps"):
        fit_continuous(mdp, steps=0, progress=False)
    with pytest.raises(ValueError, match="temperature"):
        fit_continuous(mdp, steps=1, temperature=-1.0, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fit_continuous(mdp, steps=1, optimizer="adamw", progress=False)
    with pytest.raises(ValueError, match="initial_state"):
        fit_continuous(mdp, steps=1, initial_state=[0.0, 0.0, 0.0], progress=False)
    with pytest.raises(TypeError, match="ContinuousMDP"):
        fit_continuous(random_mdp(3, 2, 4, seed=0), steps=1, progress=False)
    with pytest.raises(ValueError, match="reparameterized"):
        fit_continuous(
            mdp, AutoNormal(continuous_control_model), estimator="score", steps=1, progress=False
        )
    with pytest.raises(TypeError, match="estimator"):
        fit_continuous(mdp, steps=1, reparameterized=False, progress=False)
    with pytest.raises(TypeError, match="only accepted with a guide"):
        fit_continuous(mdp, AutoNormal(continuous_control_model), steps=1, hidden=(4,))
    # a guide must match the MDP it is run on
    guide = GUIDES["gaussian_mlp"](mdp)
    with pytest.raises(ValueError, match="action_dim"):
        guide(_box_mdp())
    plan = GUIDES["open_loop_normal"](mdp)
    with pytest.raises(ValueError, match="horizon"):
        plan(mdp.replace(horizon=4))
    with pytest.raises(ValueError, match="initial_state"):
        guide(mdp, initial_state=torch.zeros(3))
    with pytest.raises(ValueError, match="init_scale"):
        GUIDES["gaussian_mlp"](mdp, init_scale=100.0)
    with pytest.raises(ValueError, match="low"):
        SquashedNormal(torch.zeros(2), torch.ones(2), torch.zeros(1), torch.ones(1))
    # the real-env evaluator
    with pytest.raises(ValueError, match="no torch twin"):
        envs.evaluate_policy("CartPole-v1", lambda s, t: 0)
    with pytest.raises(ValueError, match="initial_state"):
        envs.evaluate_policy(mdp, lambda s, t: torch.zeros(1), initial_state=[0.0])
    with pytest.raises(ValueError, match="episodes"):
        envs.evaluate_policy(mdp, lambda s, t: torch.zeros(1), episodes=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_gives_a_python_initial_state_the_mdps_dtype(dtype):
    """s₀ given as Python numbers takes the MDP's dtype, not torch's default; the rollout
    matches the MDP's own dynamics applied to that s₀ in that dtype."""
    mdp = envs.pendulum(horizon=3, dtype=dtype)
    trace = poutine.trace(continuous_control_model).get_trace(
        mdp, initial_state=(0.1, -0.3), vectorized=True
    )
    states, actions, _ = trace.nodes["_RETURN"]["value"]
    s0 = torch.tensor([0.1, -0.3], dtype=dtype)
    assert states.dtype == actions.dtype == dtype
    assert torch.equal(states[0], s0)
    assert torch.equal(states[1], mdp.dynamics(s0, actions[0]))
