"""The ELBO estimators and the `fit` driver.

Independent routes: the guide's analytic ELBO vs Pyro's TraceEnum_ELBO (a sum over every
trajectory by variable elimination); the score-function gradient vs REINFORCE with an
entropy bonus written out by hand on the same samples; Monte-Carlo gradients vs the exact
gradient; fitted policies vs soft value iteration.
"""

import functools
import warnings

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

import pgm_control as pc
from pgm_control.continuous import ContinuousMDP
from pgm_control.estimators import (
    ESTIMATORS,
    EnumELBO,
    ExactELBO,
    RaoBlackwellELBO,
    ScoreFunctionELBO,
    make_estimator,
)
from pgm_control.fit_result import FitResult
from pgm_control.guides import TABULAR_GUIDES
from pgm_control.svi import fit, fit_continuous, gradient_variance

FAMILIES = sorted(TABULAR_GUIDES)


def _randomise(guide, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in guide.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return guide


def _grad(guide, elbo, mdp, **kw):
    for p in guide.parameters():
        p.grad = None
    loss = elbo.loss_and_grads(pc.control_model, guide, mdp, **kw)
    return loss, torch.cat([p.grad.reshape(-1) for p in guide.parameters()])


# ------------------------------------------------------------------- exact estimators


@pytest.mark.parametrize("family", FAMILIES)
def test_enum_estimator_agrees_with_exact_in_value_and_gradient(family):
    mdp = pc.random_mdp(3, 2, 4, seed=1, random_action_prior=family != "open_loop")
    guide = _randomise(TABULAR_GUIDES[family](mdp), 2)
    loss_exact, g_exact = _grad(guide, ExactELBO(), mdp, temperature=0.6)
    loss_enum, g_enum = _grad(guide, EnumELBO(), mdp, temperature=0.6)
    assert loss_enum == pytest.approx(loss_exact, abs=1e-10)
    torch.testing.assert_close(g_enum, g_exact, atol=1e-10, rtol=1e-8)
    assert loss_exact == pytest.approx(-guide.exact_elbo(mdp, temperature=0.6).item())


def test_enum_estimator_refuses_where_it_is_not_exact():
    long = pc.random_mdp(2, 2, 32, seed=0)
    guide = TABULAR_GUIDES["tabular"](long)
    with pytest.raises(ValueError, match="T ≤ 31"):
        EnumELBO().loss(pc.control_model, guide, long)
    short = pc.random_mdp(2, 2, 3, seed=0)
    guide = TABULAR_GUIDES["tabular"](short)
    with pytest.raises(ValueError, match="num_particles"):
        EnumELBO().loss(pc.control_model, guide, short, num_particles=10)
    with pytest.raises(TypeError, match="must sample exactly its latent sites"):
        EnumELBO().loss(pc.control_model, lambda *a, **k: None, short)


def test_exact_estimator_refuses_other_models_and_guides():
    mdp = pc.random_mdp(2, 2, 3, seed=0)
    guide = TABULAR_GUIDES["tabular"](mdp)
    with pytest.raises(TypeError, match="control_model"):
        ExactELBO().loss(lambda mdp, **kw: None, guide, mdp)
    with pytest.raises(TypeError, match="must sample exactly its latent sites"):
        ExactELBO().loss(pc.control_model, lambda *a, **k: None, mdp)
    # a partial of the control model is the control model
    model = functools.partial(pc.control_model)
    assert np.isfinite(ExactELBO().loss(model, guide, mdp))


def test_guide_side_markov_enumeration_would_be_wrong_which_is_why_it_is_not_used():
    """The pitfall the enum estimator avoids: enumerating the guide under pyro.markov."""
    mdp = pc.random_mdp(3, 2, 5, seed=3)
    guide = _randomise(TABULAR_GUIDES["tabular_time_varying"](mdp), 4)

    def markov_guide(mdp, **kw):  # the same sites, enumerated inside pyro.markov
        log_pi = guide.log_policy()
        s = pyro.sample("s_0", pyro.distributions.Categorical(logits=mdp.log_initial))
        for t in pyro.markov(range(mdp.horizon)):
            a = pyro.sample(f"a_{t}", pyro.distributions.Categorical(logits=log_pi[t, s]))
            s = pyro.sample(
                f"s_{t + 1}", pyro.distributions.Categorical(logits=mdp.log_transition[s, a])
            )

    enum = pyro.infer.TraceEnum_ELBO(max_plate_nesting=0)
    wrong = -enum.loss(pc.control_model, pyro.infer.config_enumerate(markov_guide), mdp)
    right = -EnumELBO().loss(pc.control_model, guide, mdp)
    exact = guide.exact_elbo(mdp).item()
    assert right == pytest.approx(exact, abs=1e-10)
    assert abs(wrong - exact) > 1e-3


# ------------------------------------------------------------------- score-function estimators


def test_score_gradient_is_reinforce_with_an_entropy_bonus_on_the_same_samples():
    mdp = pc.random_mdp(4, 3, 5, seed=5, random_action_prior=True)
    alpha, n = 0.7, 64
    guide = _randomise(TABULAR_GUIDES["tabular_time_varying"](mdp), 6)
    pyro.set_rng_seed(7)
    loss, g_pyro = _grad(guide, ScoreFunctionELBO(n), mdp, temperature=alpha)
    # the same samples: same seed, same plate
    pyro.set_rng_seed(7)
    with torch.no_grad():
        tr = poutine.trace(pyro.plate("num_particles_vectorized", n, dim=-1)(guide)).get_trace(mdp)
    T = mdp.horizon
    s = torch.stack([tr.nodes[f"s_{t}"]["value"] for t in range(T + 1)], -1)  # (N, T+1)
    a = torch.stack([tr.nodes[f"a_{t}"]["value"] for t in range(T)], -1)  # (N, T)
    t_idx = torch.arange(T)
    log_q = guide.log_policy()[t_idx, s[:, :-1], a]  # log qₜ(aₜ|sₜ), (N, T), differentiable
    reward = mdp.reward[s[:, :-1], a, s[:, 1:]] / alpha
    ret = (reward + mdp.log_action_prior[s[:, :-1], a] - log_q.detach()).sum(-1)  # R(τ)
    # REINFORCE on the entropy-regularised return R(τ) = Σₜ r/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ)
    surrogate = (log_q.sum(-1) * ret).mean()
    (g_hand,) = torch.autograd.grad(-surrogate, guide.logits)
    torch.testing.assert_close(g_pyro, g_hand.reshape(-1), atol=1e-12, rtol=1e-10)
    assert loss == pytest.approx(-ret.mean().item(), abs=1e-12)


@pytest.mark.parametrize("estimator", ["score", "rao_blackwell"])
@pytest.mark.parametrize("family", FAMILIES)
def test_monte_carlo_gradients_equal_the_exact_gradient_in_expectation(estimator, family):
    mdp = pc.random_mdp(3, 2, 3, seed=8, random_action_prior=family != "open_loop")
    guide = _randomise(TABULAR_GUIDES[family](mdp), 9, scale=0.5)
    repeats = 6
    stats = gradient_variance(
        mdp, guide, estimator, num_particles=2000, repeats=repeats, temperature=0.8, seed=10
    )
    # unbiased: E‖mean − exact‖² = variance / repeats; allow a generous chi-square margin
    assert stats.bias_sq < 4 * stats.variance / repeats + 1e-12, stats
    assert stats.variance > 0


def test_rao_blackwell_has_lower_variance_than_plain_score_function():
    mdp = pc.random_mdp(6, 3, 8, seed=11)
    guide = _randomise(TABULAR_GUIDES["tabular_time_varying"](mdp), 12, scale=0.3)
    kw = dict(repeats=6, seed=13)
    score = gradient_variance(mdp, guide, "score", num_particles=1000, **kw)
    rb = gradient_variance(mdp, guide, "rao_blackwell", num_particles=1000, **kw)
    plain = gradient_variance(mdp, guide, RaoBlackwellELBO(1000, critic=False), **kw)
    exact = gradient_variance(mdp, guide, "exact", repeats=2)
    assert rb.variance < plain.variance < score.variance
    assert rb.variance < score.variance / 4
    assert exact.variance < 1e-25 and exact.bias_sq < 1e-25


def test_rao_blackwell_elbo_value_is_the_monte_carlo_elbo():
    mdp = pc.random_mdp(4, 2, 4, seed=14)
    guide = _randomise(TABULAR_GUIDES["full_posterior"](mdp), 15)
    pyro.set_rng_seed(16)
    values = [-RaoBlackwellELBO(4000).loss(pc.control_model, guide, mdp) for _ in range(2)]
    assert np.mean(values) == pytest.approx(guide.exact_elbo(mdp).item(), abs=0.05)


def test_estimators_work_as_torch_modules_through_pyros_elbo_call():
    mdp = pc.random_mdp(4, 2, 4, seed=24)
    guide = _randomise(TABULAR_GUIDES["tabular"](mdp), 25)
    for est in (RaoBlackwellELBO(300), ExactELBO()):
        pyro.set_rng_seed(26)
        loss_value, g_ref = _grad(guide, est, mdp)
        pyro.set_rng_seed(26)
        loss = est(pc.control_model, guide)(mdp)  # an nn.Module, as in Pyro's ELBO docs
        guide.logits.grad = None
        loss.backward()
        assert loss.item() == pytest.approx(loss_value, abs=1e-12)
        torch.testing.assert_close(guide.logits.grad.reshape(-1), g_ref)


def test_estimator_registry_and_bad_inputs():
    assert set(ESTIMATORS) == {"exact", "enum", "score", "rao_blackwell"}
    name, est = make_estimator("score", 10)
    assert name == "score" and est.num_particles == 10
    with pytest.raises(ValueError, match="draws no particles"):
        make_estimator("exact", 10)
    with pytest.raises(ValueError, match="reparam"):
        make_estimator("reparam")
    with pytest.raises(ValueError, match="estimator"):
        make_estimator("nope")
    with pytest.raises(ValueError, match="num_particles"):
        RaoBlackwellELBO(0)
    with pytest.raises(ValueError, match="baseline"):
        RaoBlackwellELBO(10, baseline="median")
    mdp = pc.random_mdp(2, 2, 2, seed=0)
    with pytest.raises(ValueError, match="own particles"):
        RaoBlackwellELBO(10).loss(
            pc.control_model, TABULAR_GUIDES["tabular"](mdp), mdp, num_particles=3
        )


# ------------------------------------------------------------------- fit


def _occupancy_kl(mdp, pi, alpha):
    pi_star = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected").policy
    d = pc.policy_state_distribution(mdp, pi_star)[:-1]
    kl = (pi_star * (torch.log(pi_star) - torch.log(pi))).sum(-1)
    return float((d * kl).sum() / mdp.horizon)


def test_fit_exact_recovers_the_soft_optimal_policy():
    mdp = pc.random_mdp(6, 3, 8, seed=17)
    res = fit(mdp, temperature=0.5, progress=False)
    assert isinstance(res, FitResult)
    assert res.guide_name == "tabular_time_varying" and res.estimator == "exact"
    assert res.gap < 1e-8 and res.extra["converged"]
    assert res.optimum == pytest.approx(pc.optimal_elbo(mdp, temperature=0.5).item())
    assert res.exact_elbo == pytest.approx(res.optimum - res.gap)
    assert _occupancy_kl(mdp, res.policy, 0.5) < 1e-8
    assert isinstance(res.elbo, np.ndarray) and res.elbo[-1] <= res.optimum + 1e-12
    assert set(res.params) == {"logits"}  # the guide's state_dict
    assert res.seconds > 0 and res.policy.shape == (8, 6, 3)


def test_natural_scale_is_the_occupancy_times_the_policy():
    mdp = pc.random_mdp(4, 3, 5, seed=27)
    guide = _randomise(TABULAR_GUIDES["tabular_time_varying"](mdp), 28)
    d = pc.policy_state_distribution(mdp, guide.policy())[:-1]
    torch.testing.assert_close(guide.natural_scale(mdp)["logits"], d[:, :, None] * guide.policy())
    assert TABULAR_GUIDES["neural"](mdp).natural_scale(mdp) is None
    full = _randomise(TABULAR_GUIDES["full_posterior"](mdp), 29)
    scale = full.natural_scale(mdp)
    assert {n: tuple(v.shape) for n, v in scale.items()} == {
        n: tuple(p.shape) for n, p in full.named_parameters()
    }
    torch.testing.assert_close(scale["initial_logits"], full.initial())


def test_natural_gradient_step_of_one_is_soft_policy_iteration():
    """From any policy, one step sets qₜ ∝ p(a|s)·exp Qₜ^q: after T steps, exactly π*."""
    mdp = pc.random_mdp(5, 3, 4, seed=30, random_action_prior=True)
    guide = _randomise(TABULAR_GUIDES["tabular_time_varying"](mdp), 31)
    res = fit(mdp, guide, steps=mdp.horizon + 1, progress=False)
    pi_star = pc.soft_value_iteration(mdp, backup="expected").policy
    d = pc.policy_state_distribution(mdp, pi_star)[:-1, :, None]
    torch.testing.assert_close(d * res.policy, d * pi_star, atol=1e-10, rtol=0)
    assert res.extra["optimizer"] == "natural" and res.gap < 1e-12


@pytest.mark.parametrize("family", ["tabular", "open_loop", "full_posterior"])
def test_natural_gradient_reaches_the_same_optimum_as_lbfgs(family):
    mdp = pc.random_mdp(5, 3, 5, seed=32)
    natural = fit(mdp, family, optimizer="natural", progress=False)
    lbfgs = fit(mdp, family, optimizer="lbfgs", progress=False)
    assert natural.exact_elbo == pytest.approx(lbfgs.exact_elbo, abs=1e-7)
    assert natural.exact_elbo >= lbfgs.exact_elbo - 1e-12


def test_natural_gradient_does_not_stall_at_low_temperature():
    mdp = pc.random_mdp(8, 3, 8, seed=486, deterministic=True, reward_scale=2.0)
    res = fit(mdp, temperature=0.05, progress=False)
    assert res.gap < 1e-10 and res.extra["converged"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lbfgs = fit(mdp, temperature=0.05, optimizer="lbfgs", progress=False)
    if lbfgs.extra["converged"] and lbfgs.gap > 1e-6:  # a stall must not pass silently
        assert any("short of the optimum" in str(w.message) for w in caught)


@pytest.mark.parametrize("estimator", ["score", "rao_blackwell", "enum"])
def test_fit_with_other_estimators_improves_the_elbo(estimator):
    mdp = pc.random_mdp(4, 3, 4, seed=18)
    kw = {} if estimator == "enum" else {"num_particles": 500, "lr": 0.1}
    res = fit(mdp, "tabular", estimator=estimator, steps=15, progress=False, **kw)
    start = TABULAR_GUIDES["tabular"](mdp).exact_elbo(mdp).item()
    assert res.exact_elbo > start + 0.5 * (res.optimum - start)
    assert res.estimator == estimator and 1 <= len(res.elbo) <= 15


def test_fit_under_pyro_optim_and_torch_optimisers():
    mdp = pc.random_mdp(4, 2, 4, seed=19)
    a = fit(mdp, optimizer=pyro.optim.Adam({"lr": 0.2}), steps=60, progress=False)
    b = fit(mdp, optimizer=torch.optim.Adam, lr=0.2, steps=60, progress=False)
    assert a.gap < 1e-3 and a.extra["optimizer"] == "Adam"
    np.testing.assert_allclose(a.elbo, b.elbo, rtol=1e-10)  # the same algorithm twice
    c = fit(mdp, optimizer="sgd", lr=0.5, steps=30, progress=False)
    assert c.exact_elbo > a.elbo[0]


def test_fit_is_seeded_and_reports_progress(capsys):
    mdp = pc.random_mdp(4, 2, 4, seed=20)
    kw = dict(estimator="rao_blackwell", num_particles=100, steps=5, seed=3)
    a = fit(mdp, "neural", progress=True, **kw)
    b = fit(mdp, "neural", progress=False, **kw)
    np.testing.assert_array_equal(a.elbo, b.elbo)
    assert "neural/rao_blackwell" in capsys.readouterr().err


def test_fit_callback_can_stop_and_ctrl_c_returns_what_was_fitted():
    mdp = pc.random_mdp(4, 2, 4, seed=21)
    seen = []
    res = fit(mdp, callback=lambda step, elbo, g: seen.append(elbo) or step == 1, progress=False)
    assert len(res.elbo) == 2 and seen == list(res.elbo)

    def interrupt(step, elbo, guide):
        if step == 2:
            raise KeyboardInterrupt

    res = fit(
        mdp, estimator="score", num_particles=50, steps=100, callback=interrupt, progress=False
    )
    assert res.extra["interrupted"] and len(res.elbo) == 3
    assert res.policy is not None and np.isfinite(res.gap)


def test_fit_continues_training_a_built_guide():
    mdp = pc.random_mdp(4, 2, 4, seed=22)
    first = fit(mdp, "tabular", estimator="score", num_particles=200, steps=10, progress=False)
    more = fit(mdp, first.guide, progress=False)
    assert more.guide is first.guide and 0 < more.gap < first.gap  # stationary: a gap remains


def test_fit_runs_continuous_mdps_through_the_same_loop_as_fit_continuous():
    cmdp = ContinuousMDP(
        dynamics=lambda s, a: s + a,
        reward=lambda s, a: -(s**2).sum(-1),
        initial=pyro.distributions.Normal(torch.zeros(1), 1.0).to_event(1),
        horizon=3,
        action_low=-1.0,
        action_high=1.0,
    )
    kw = dict(steps=7, num_particles=64, lr=1e-3, hidden=(4,), progress=False)
    a = fit(cmdp, "gaussian_mlp", **kw)
    b = fit_continuous(cmdp, "gaussian_mlp", **kw)
    assert a.estimator == "reparam" and a.guide_name == "gaussian_mlp" and len(a.elbo) == 7
    np.testing.assert_array_equal(a.elbo, b.elbo)
    assert a.extra["optimizer"] == "adam" and a.extra["temperature"] == 1.0


def test_fit_bad_inputs_raise_clear_errors():
    mdp = pc.random_mdp(3, 2, 3, seed=23)
    with pytest.raises(ValueError, match="tabular families"):
        fit(mdp, "gaussian_mlp", progress=False)
    with pytest.raises(ValueError, match="draws no particles"):
        fit(mdp, estimator="exact", num_particles=10, progress=False)
    with pytest.raises(ValueError, match="LBFGS"):
        fit(mdp, estimator="score", optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="steps"):
        fit(mdp, steps=0, progress=False)
    with pytest.raises(ValueError, match="temperature"):
        fit(mdp, temperature=0.0, progress=False)
    with pytest.raises(ValueError, match="lr"):
        fit(mdp, lr=-1.0, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fit(mdp, optimizer="rmsprop", progress=False)
    with pytest.raises(ValueError, match="natural"):
        fit(mdp, estimator="score", optimizer="natural", progress=False)
    with pytest.raises(ValueError, match="natural"):
        fit(mdp, "neural", optimizer="natural", progress=False)
    with pytest.raises(TypeError, match="callback"):
        fit(mdp, callback=3, progress=False)
    with pytest.raises(TypeError, match="must sample exactly its latent sites"):
        fit(mdp, lambda *a, **k: None, progress=False)
    with pytest.raises(TypeError, match="guide"):
        fit(mdp, 3, progress=False)
    with pytest.raises(TypeError, match="only accepted with a guide"):
        fit(mdp, TABULAR_GUIDES["tabular"](mdp), hidden=(3,), progress=False)
    with pytest.raises(ValueError, match="built for"):
        fit(mdp, TABULAR_GUIDES["tabular"](pc.random_mdp(4, 2, 3, seed=0)), progress=False)
    with pytest.raises(TypeError, match="TabularMDP"):
        fit("FrozenLake-v1", progress=False)
