"""The guide contract (pgm_control.guides.contract): any Pyro guide works with `fit`.

Independent routes: the tables read off a guide's sites vs the guide's own parameters; the
exact ELBO of any guide vs the core's `policy_elbo` (separate code), vs Pyro's enumeration
(`TraceEnum_ELBO`) and vs a Monte-Carlo average; fitted guides vs soft value iteration.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam

import pgm_control as pc
from pgm_control.estimators import EnumELBO, ExactELBO, RaoBlackwellELBO, ScoreFunctionELBO
from pgm_control.guide_tables import read_guide_tables
from pgm_control.guides import TABULAR_GUIDES, particles_plate
from pgm_control.svi import fit, gradient_variance

DT = torch.float64


def softmax_linear_guide(mdp, *, num_particles=None, **model_kwargs):
    """A student's guide: qₜ(a|s) ∝ p(a|s)·exp(φ(s)ᵀ Wₜ[:, a]), one-hot φ, W in pyro.param."""
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    w = pyro.param("w", torch.zeros(T, S, A, dtype=mdp.float_dtype))
    features = torch.eye(S, dtype=mdp.float_dtype)
    with particles_plate(num_particles):
        s = pyro.sample("s_0", dist.Categorical(logits=mdp.log_initial))
        for t in range(T):
            logits = mdp.log_action_prior[s] + features[s] @ w[t]
            a = pyro.sample(f"a_{t}", dist.Categorical(logits=logits))
            s = pyro.sample(f"s_{t + 1}", dist.Categorical(logits=mdp.log_transition[s, a]))


class ModuleGuide(PyroModule):
    """The same family as a PyroModule with a PyroParam (Pyro's global param store)."""

    def __init__(self, mdp):
        super().__init__()
        shape = (mdp.horizon, mdp.num_states, mdp.num_actions)
        self.theta = PyroParam(torch.zeros(shape, dtype=mdp.float_dtype))

    def forward(self, mdp, *, num_particles=None, **model_kwargs):
        theta = self.theta
        with particles_plate(num_particles):
            s = pyro.sample("s_0", dist.Categorical(logits=mdp.log_initial))
            for t in range(mdp.horizon):
                a = pyro.sample(
                    f"a_{t}", dist.Categorical(logits=mdp.log_action_prior[s] + theta[t, s])
                )
                s = pyro.sample(f"s_{t + 1}", dist.Categorical(logits=mdp.log_transition[s, a]))


def _random_w(mdp, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (mdp.horizon, mdp.num_states, mdp.num_actions)
    return torch.randn(shape, generator=g, dtype=DT)


def test_tables_read_off_any_guide_are_its_policy():
    mdp = pc.random_mdp(4, 3, 5, seed=1, random_action_prior=True)
    w = _random_w(mdp, 2)
    pyro.param("w", w.clone())
    tables = read_guide_tables(softmax_linear_guide, mdp)
    want = torch.log_softmax(mdp.log_action_prior + w, -1)
    torch.testing.assert_close(tables.log_policy, want, atol=1e-14, rtol=0)
    assert tables.log_initial is None and tables.log_dynamics is None
    assert not tables.learns_dynamics
    for family, guide in ((f, TABULAR_GUIDES[f](mdp)) for f in sorted(TABULAR_GUIDES)):
        with torch.no_grad():
            for p in guide.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3), dtype=DT))
        tables = read_guide_tables(guide, mdp)
        torch.testing.assert_close(tables.log_policy.exp(), guide.policy(), atol=1e-14, rtol=0)
        assert tables.learns_dynamics == (family == "full_posterior")
        if family == "full_posterior":
            torch.testing.assert_close(
                tables.log_dynamics.exp(), guide.dynamics(), atol=1e-14, rtol=0
            )
            torch.testing.assert_close(
                tables.log_initial.exp(), guide.initial(), atol=1e-14, rtol=0
            )


@pytest.mark.parametrize("family", sorted(TABULAR_GUIDES))
def test_the_log_tables_speed_up_returns_exactly_what_the_sites_give(family):
    mdp = pc.random_mdp(4, 3, 4, seed=17, random_action_prior=family != "open_loop")
    guide = TABULAR_GUIDES[family](mdp)
    g = torch.Generator().manual_seed(18)
    with torch.no_grad():
        for p in guide.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT))
    fast = read_guide_tables(guide, mdp)
    read = read_guide_tables(guide, mdp, use_capability=False)
    assert fast.learns_dynamics == read.learns_dynamics
    for a, b in zip(fast[:3], read[:3]):
        assert (a is None and b is None) or torch.equal(a, b)


def test_exact_elbo_of_a_plain_function_guide_by_three_routes_with_gradients():
    mdp = pc.random_mdp(3, 2, 4, seed=4, random_action_prior=True)
    w = _random_w(mdp, 5)
    pyro.param("w", w.clone())
    policy = torch.softmax(mdp.log_action_prior + w, -1)
    exact = ExactELBO().differentiable_loss(
        pc.control_model, softmax_linear_guide, mdp, temperature=0.7
    )
    core = pc.policy_elbo(mdp, policy, temperature=0.7)  # the core's own code
    assert -exact.item() == pytest.approx(core.item(), abs=1e-12)
    enum = EnumELBO().loss(pc.control_model, softmax_linear_guide, mdp, temperature=0.7)
    assert enum == pytest.approx(exact.item(), abs=1e-10)
    pyro.set_rng_seed(6)
    mc = -RaoBlackwellELBO(20000).loss(pc.control_model, softmax_linear_guide, mdp, temperature=0.7)
    assert mc == pytest.approx(core.item(), abs=0.05)
    # gradient w.r.t. the guide's pyro.param equals autograd through the core's policy_elbo
    (g_exact,) = torch.autograd.grad(exact, pyro.param("w").unconstrained())
    w_leaf = w.clone().requires_grad_()
    core = pc.policy_elbo(mdp, torch.softmax(mdp.log_action_prior + w_leaf, -1), temperature=0.7)
    (g_core,) = torch.autograd.grad(-core, w_leaf)
    torch.testing.assert_close(g_exact, g_core, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("estimator", ["exact", "enum"])
def test_fit_a_plain_function_guide_to_the_optimum(estimator):
    mdp = pc.random_mdp(5, 3, 4, seed=7)
    res = fit(mdp, softmax_linear_guide, estimator=estimator, temperature=0.5, progress=False)
    assert res.guide_name == "softmax_linear_guide" and res.extra["optimizer"] == "lbfgs"
    assert res.optimum == pytest.approx(pc.optimal_elbo(mdp, temperature=0.5).item(), abs=1e-12)
    assert res.gap < 1e-8
    pi_star = pc.soft_value_iteration(mdp, temperature=0.5, backup="expected").policy
    torch.testing.assert_close(res.policy, pi_star, atol=1e-5, rtol=0)
    assert set(res.params) == {"w"}  # a function guide's pyro.param values, by name
    torch.testing.assert_close(
        torch.softmax(mdp.log_action_prior + res.params["w"], -1), res.policy, atol=1e-14, rtol=0
    )


def test_fit_a_pyro_module_guide_exactly_and_by_monte_carlo():
    mdp = pc.random_mdp(4, 2, 4, seed=8)
    exact = fit(mdp, ModuleGuide(mdp), temperature=0.8, progress=False)
    assert exact.guide_name == "ModuleGuide" and exact.gap < 1e-8
    pyro.clear_param_store()
    mc = fit(
        mdp, ModuleGuide(mdp), estimator="rao_blackwell", num_particles=500, steps=60, lr=0.1,
        optimizer="adam", temperature=0.8, progress=False,
    )  # fmt: skip
    start = pc.policy_elbo(mdp, mdp.action_prior, temperature=0.8).item()
    assert mc.exact_elbo > start + 0.8 * (mc.optimum - start)


@pytest.mark.slow
@pytest.mark.parametrize(
    "family, estimator, optimizer",
    [
        ("tabular_time_varying", "exact", "lbfgs"),
        ("full_posterior", "exact", "adam"),
        ("neural", "enum", "lbfgs"),
        ("tabular", "rao_blackwell", "adam"),
        ("open_loop", "score", "sgd"),
    ],
)
def test_a_library_guide_behind_a_plain_lambda_fits_the_same(family, estimator, optimizer):
    """fit treats the built-in families through the generic path: no special methods used."""
    mdp = pc.random_mdp(4, 3, 4, seed=9)
    kw = dict(estimator=estimator, optimizer=optimizer, steps=8, temperature=0.6, progress=False)
    if estimator in ("score", "rao_blackwell"):
        kw["num_particles"] = 200
    direct = fit(mdp, TABULAR_GUIDES[family](mdp), **kw)
    inner = TABULAR_GUIDES[family](mdp)
    wrapped = fit(mdp, lambda mdp, **k: inner(mdp, **k), **kw)
    np.testing.assert_array_equal(direct.elbo, wrapped.elbo)
    assert direct.exact_elbo == wrapped.exact_elbo and direct.optimum == wrapped.optimum
    torch.testing.assert_close(direct.policy, wrapped.policy, atol=0, rtol=0)


def test_default_optimiser_reaches_the_same_optimum_with_or_without_the_capability():
    mdp = pc.random_mdp(5, 3, 5, seed=10)
    natural = fit(mdp, TABULAR_GUIDES["full_posterior"](mdp), progress=False)
    inner = TABULAR_GUIDES["full_posterior"](mdp)
    plain = fit(mdp, lambda mdp, **k: inner(mdp, **k), progress=False)
    assert natural.extra["optimizer"] == "natural" and plain.extra["optimizer"] == "lbfgs"
    assert natural.optimum == plain.optimum == pytest.approx(pc.log_evidence(mdp).item())
    assert natural.gap < 1e-7 and plain.gap < 1e-7


def test_a_guide_that_learns_its_dynamics_is_measured_against_log_evidence():
    mdp = pc.random_mdp(3, 2, 3, seed=11)

    def learn_dynamics(mdp, *, num_particles=None, **kw):
        theta = pyro.param(
            "theta", torch.zeros(mdp.num_states, mdp.num_actions, mdp.num_states, dtype=DT)
        )
        with particles_plate(num_particles):
            s = pyro.sample("s_0", dist.Categorical(logits=mdp.log_initial))
            for t in range(mdp.horizon):
                a = pyro.sample(f"a_{t}", dist.Categorical(logits=mdp.log_action_prior[s]))
                logits = mdp.log_transition[s, a] + theta[s, a]
                s = pyro.sample(f"s_{t + 1}", dist.Categorical(logits=logits))

    res = fit(mdp, learn_dynamics, steps=3, progress=False)
    assert res.optimum == pytest.approx(pc.log_evidence(mdp).item(), abs=1e-12)


def test_monte_carlo_estimators_pass_particles_through_the_model_and_refuse_mismatched_plates():
    mdp = pc.random_mdp(3, 2, 3, seed=12)

    def fixed_plate(mdp, *, num_particles=None, **kw):  # ignores num_particles: 7 always
        with pyro.plate("particles", 7, dim=-1):
            softmax_linear_guide(mdp, **kw)

    def no_particles(mdp, *, num_particles=None, **kw):  # one trajectory, whatever is asked
        softmax_linear_guide(mdp, **kw)

    def broadcasting(mdp, *, num_particles=None, **kw):  # no plate, (N,) draws: allowed
        s = pyro.sample("s_0", dist.Categorical(logits=mdp.log_initial).expand([num_particles]))
        for t in range(mdp.horizon):
            a = pyro.sample(f"a_{t}", dist.Categorical(logits=mdp.log_action_prior[s]))
            s = pyro.sample(f"s_{t + 1}", dist.Categorical(logits=mdp.log_transition[s, a]))

    for est in (ScoreFunctionELBO(10), RaoBlackwellELBO(10)):
        with pytest.raises(ValueError, match="particles"):
            est.loss(pc.control_model, fixed_plate, mdp)
        with pytest.raises(ValueError, match="batch shape"):
            est.loss(pc.control_model, no_particles, mdp)
        assert np.isfinite(est.loss(pc.control_model, broadcasting, mdp))


def test_rao_blackwell_reads_the_baseline_context_from_site_names_or_refuses():
    mdp = pc.random_mdp(3, 2, 3, seed=13)

    def model(mdp, *, num_particles=None, **kw):
        with particles_plate(num_particles):
            x = pyro.sample("x", dist.Categorical(logits=torch.zeros(3, dtype=DT)))
            pyro.factor("f", (x == 1).to(DT))

    def guide(mdp, *, num_particles=None, **kw):
        logits = pyro.param("g", torch.zeros(3, dtype=DT))
        with particles_plate(num_particles):
            pyro.sample("x", dist.Categorical(logits=logits))

    with pytest.raises(ValueError, match="baseline='mean'"):
        RaoBlackwellELBO(20).loss(model, guide, mdp)
    assert np.isfinite(RaoBlackwellELBO(20, baseline="mean", critic=False).loss(model, guide, mdp))
    # for the control model, a user guide needs no hint: unbiased against the exact gradient
    pyro.param("w", _random_w(mdp, 14))
    stats = gradient_variance(
        mdp, softmax_linear_guide, "rao_blackwell", num_particles=2000, repeats=6
    )
    assert stats.bias_sq < 4 * stats.variance / 6 + 1e-12 and stats.variance > 0
    score = gradient_variance(mdp, softmax_linear_guide, "score", num_particles=2000, repeats=6)
    assert stats.variance < score.variance


def test_exact_estimator_checks_the_model_from_its_trace():
    mdp = pc.random_mdp(3, 2, 3, seed=15)
    other = pc.random_mdp(3, 2, 3, seed=16)

    def wrong_dynamics(mdp, **kw):
        return pc.control_model(other, **kw)

    with pytest.raises(TypeError, match="other distributions"):
        ExactELBO().loss(wrong_dynamics, softmax_linear_guide, mdp)
    with pytest.raises(TypeError, match="control_model"):
        ExactELBO().loss(lambda mdp, **kw: None, softmax_linear_guide, mdp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rao_blackwell_surrogate_follows_the_mdp_dtype_without_pathwise_terms(dtype):
    """A guide with no parameters and no reparameterised site leaves the pathwise part the
    float 0.0: the surrogate must still come out in the MDP's dtype, not torch's default
    (the per-particle ELBO against the exact log-weight computed from the guide's trace)."""
    mdp = pc.random_mdp(3, 2, 3, seed=5, dtype=dtype)

    def prior_guide(mdp, *, num_particles=None, **kw):  # q = the prior policy: no parameters
        with particles_plate(num_particles):
            s = pyro.sample("s_0", dist.Categorical(logits=mdp.log_initial))
            for t in range(mdp.horizon):
                a = pyro.sample(f"a_{t}", dist.Categorical(logits=mdp.log_action_prior[s]))
                s = pyro.sample(f"s_{t + 1}", dist.Categorical(logits=mdp.log_transition[s, a]))

    elbo, surrogate = RaoBlackwellELBO(8)._surrogate(pc.control_model, prior_guide, (mdp,), {})
    assert elbo.dtype == dtype and surrogate.dtype == dtype
    assert surrogate.shape == (8,) and not surrogate.any()
    loss = RaoBlackwellELBO(8).differentiable_loss(pc.control_model, prior_guide, mdp)
    assert loss.dtype == dtype
