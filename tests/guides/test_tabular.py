"""Tabular guide families: their sites, their exact ELBO, and the lecture's identities.

Independent routes used here: Pyro's own Monte-Carlo ELBO of the traced model and guide;
brute-force sums over every trajectory of a tiny MDP (numpy, by definition); the core's
``policy_elbo`` / ``elbo_terms`` (separate code for the structured ELBO); ``log_evidence``.
"""

import itertools

import numpy as np
import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro import poutine

import pgm_control as pc
from pgm_control.estimators import EnumELBO, ExactELBO
from pgm_control.guide_tables import TableGuide
from pgm_control.guides import GUIDES, TABULAR_GUIDES
from pgm_control.guides.tabular import TabularGuide, trajectory_elbo
from pgm_control.svi import fit

FAMILIES = sorted(TABULAR_GUIDES)
STRUCTURED = [f for f in FAMILIES if f != "full_posterior"]


def _randomise(guide, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in guide.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return guide


def _guide_log_tables(guide, mdp):
    """log q(s0) (S,), log qₜ(a|s) (T,S,A), log qₜ(s'|s,a) (T,S,A,S) as numpy arrays."""
    with torch.no_grad():
        log_q0 = guide.log_initial(mdp)
        log_pi = guide.log_policy()
        log_qd = guide.log_dynamics(mdp)
        if log_qd is None:
            log_qd = mdp.log_transition.expand(mdp.horizon, -1, -1, -1)
    return log_q0.numpy(), log_pi.numpy(), log_qd.numpy()


def _brute_force(mdp, guide, alpha):
    """(ELBO, KL(q(τ) ‖ p(τ|O)), log p(O)) by summing over every trajectory, by definition."""
    S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
    p0, P = mdp.initial.numpy(), mdp.transition.numpy()
    prior, r = mdp.action_prior.numpy(), mdp.reward.numpy()
    log_q0, log_pi, log_qd = _guide_log_tables(guide, mdp)
    log_joint, log_q = [], []
    with np.errstate(divide="ignore"):
        for s_seq in itertools.product(range(S), repeat=T + 1):
            for a_seq in itertools.product(range(A), repeat=T):
                lp = np.log(p0[s_seq[0]])
                lq = log_q0[s_seq[0]]
                for t in range(T):
                    s, a, s1 = s_seq[t], a_seq[t], s_seq[t + 1]
                    lp += np.log(prior[s, a]) + np.log(P[s, a, s1]) + r[s, a, s1] / alpha
                    lq += log_pi[t, s, a] + log_qd[t, s, a, s1]
                log_joint.append(lp)
                log_q.append(lq)
    log_joint, log_q = np.array(log_joint), np.array(log_q)
    finite = np.isfinite(log_joint)
    log_z = np.log(np.exp(log_joint[finite]).sum())
    q = np.exp(log_q)
    on = q > 0
    elbo = (q[on] * (log_joint[on] - log_q[on])).sum()
    kl = (q[on] * (log_q[on] - (log_joint[on] - log_z))).sum()
    return elbo, kl, log_z


def _tiny_mdp(seed, S=3, A=2, T=3, **kw):
    return pc.random_mdp(S, A, T, seed=seed, **kw)


# ------------------------------------------------------------------- the registry, the sites


def test_registry_lists_every_tabular_family_under_guides():
    assert set(FAMILIES) == {
        "tabular",
        "tabular_time_varying",
        "neural",
        "open_loop",
        "full_posterior",
    }
    for name in FAMILIES:
        assert GUIDES[name] is TABULAR_GUIDES[name]
        assert issubclass(TABULAR_GUIDES[name], TabularGuide)


@pytest.mark.parametrize("family", FAMILIES)
def test_guide_samples_the_models_latent_sites_with_shared_dynamics(family):
    mdp = pc.random_mdp(4, 3, 5, seed=1)
    guide = _randomise(TABULAR_GUIDES[family](mdp), 0)
    g_tr = poutine.trace(guide).get_trace(mdp, temperature=0.5, num_particles=7)
    m_tr = poutine.trace(poutine.replay(pc.control_model, trace=g_tr)).get_trace(
        mdp, temperature=0.5, num_particles=7
    )

    def sites(tr):
        return {n for n, s in tr.nodes.items() if s["type"] == "sample" and n != "particles"}

    latent = {n for n in sites(m_tr) if not n.startswith("O_")}
    sampled = sites(g_tr)
    assert sampled == latent
    assert g_tr.nodes["s_3"]["value"].shape == (7,)
    if family != "full_posterior":  # s_0 and s_{t+1} are drawn from the true p0 and P
        for t in range(mdp.horizon):
            site = g_tr.nodes[f"s_{t + 1}"]
            s, a = g_tr.nodes[f"s_{t}"]["value"], g_tr.nodes[f"a_{t}"]["value"]
            torch.testing.assert_close(site["fn"].probs, mdp.transition[s, a])
    pol = guide.policy()
    assert pol.shape == (mdp.horizon, 4, 3)
    torch.testing.assert_close(pol.sum(-1), torch.ones(mdp.horizon, 4, dtype=torch.float64))


@pytest.mark.parametrize("family", STRUCTURED)
def test_guides_start_at_the_action_prior(family):
    mdp = pc.random_mdp(4, 3, 5, seed=2, random_action_prior=family != "open_loop")
    pol = TABULAR_GUIDES[family](mdp).policy()
    target = mdp.action_prior if family != "open_loop" else torch.full((4, 3), 1 / 3)
    torch.testing.assert_close(pol, target.expand_as(pol).to(pol.dtype))


def test_params_are_announced_as_sites_but_never_written_to_the_param_store():
    mdp = pc.random_mdp(3, 2, 4, seed=0)
    a, b = TABULAR_GUIDES["tabular"](mdp), TABULAR_GUIDES["tabular"](mdp)
    with poutine.trace(param_only=True) as tr:
        a(mdp)
    assert set(tr.trace.nodes) == {"tabular.logits"}
    assert tr.trace.nodes["tabular.logits"]["value"].unconstrained() is a.logits
    assert len(pyro.get_param_store()) == 0
    # a stale store entry of another shape under the same name cannot leak in
    pyro.param("tabular.logits", torch.zeros(7))
    with torch.no_grad():
        a.logits.fill_(1.0)
    a(mdp)
    assert a.logits.shape == (3, 2) and b.logits.abs().sum() == 0


def test_guides_train_under_pyros_own_svi():
    mdp = pc.random_mdp(4, 2, 4, seed=3, reward_scale=2.0)
    guide = TABULAR_GUIDES["tabular_time_varying"](mdp)
    # Pyro's Trace_ELBO finds the module-local parameters and pyro.optim updates them
    svi = pyro.infer.SVI(
        pc.control_model,
        guide,
        pyro.optim.Adam({"lr": 0.1}),
        pyro.infer.Trace_ELBO(num_particles=50, vectorize_particles=True, max_plate_nesting=0),
    )
    loss = svi.step(mdp, temperature=1.0)
    assert np.isfinite(loss) and guide.logits.abs().max() > 0.05
    # and with the exact loss, SVI climbs to the optimum
    gap_before = guide.optimum(mdp).item() - guide.exact_elbo(mdp).item()
    svi = pyro.infer.SVI(pc.control_model, guide, pyro.optim.Adam({"lr": 0.1}), ExactELBO())
    for _ in range(40):
        svi.step(mdp, temperature=1.0)
    gap_after = guide.optimum(mdp).item() - guide.exact_elbo(mdp).item()
    assert 0 < gap_after < 0.2 * gap_before


# ------------------------------------------------------------------- the exact ELBO


@pytest.mark.parametrize("family", FAMILIES)
def test_pyro_monte_carlo_elbo_matches_the_exact_elbo(family):
    """Pyro's own log-densities of traced model and guide, averaged over many trajectories."""
    mdp = pc.random_mdp(4, 3, 5, seed=4)
    alpha, n = 0.7, 20_000
    guide = _randomise(TABULAR_GUIDES[family](mdp), 5)
    pyro.set_rng_seed(6)
    with torch.no_grad(), pyro.validation_enabled(False):
        g_tr = poutine.trace(guide).get_trace(mdp, temperature=alpha, num_particles=n)
        m_tr = poutine.trace(poutine.replay(pc.control_model, trace=g_tr)).get_trace(
            mdp, temperature=alpha, num_particles=n
        )
    g_tr.compute_log_prob()
    m_tr.compute_log_prob()
    per = sum(s["log_prob"] for s in m_tr.nodes.values() if "log_prob" in s)
    per = per - sum(s["log_prob"] for s in g_tr.nodes.values() if "log_prob" in s)
    exact = guide.exact_elbo(mdp, temperature=alpha).item()
    se = per.std().item() / n**0.5
    assert abs(per.mean().item() - exact) < 4.5 * se, (per.mean().item(), exact, se)


@pytest.mark.parametrize("family", STRUCTURED)
def test_exact_elbo_is_line_5_and_matches_the_core_policy_elbo(family):
    """ELBO = E_q[Σ r/α] + Σₜ E[H(qₜ(·|sₜ))] + E[Σ log p(a|s)]: the core's separate code."""
    mdp = pc.random_mdp(5, 3, 6, seed=7, random_action_prior=family != "open_loop")
    guide = _randomise(TABULAR_GUIDES[family](mdp), 8)
    pol = guide.policy()
    terms = pc.elbo_terms(mdp, pol, temperature=0.3)
    elbo = guide.exact_elbo(mdp, temperature=0.3)
    torch.testing.assert_close(elbo, terms.reward + terms.entropy + terms.cross_entropy)
    # line 5 by Monte Carlo over states, exactly over actions: Σₜ r̄/α + H(qₜ(·|sₜ)) + prior
    traj = pc.sample_trajectories(mdp, pol, 40_000, seed=9)
    t = torch.arange(mdp.horizon)
    s = traj.states[:, :-1]
    q_ts = pol[t, s]  # (N, T, A)
    log_q = torch.log(q_ts)
    per = (q_ts * (mdp.expected_reward[s] / 0.3 + mdp.log_action_prior[s] - log_q)).sum(-1).sum(-1)
    se = per.std().item() / len(per) ** 0.5
    assert abs(per.mean().item() - elbo.item()) < 4.5 * se


def test_full_posterior_with_the_true_dynamics_is_the_structured_guide():
    mdp = pc.random_mdp(4, 3, 5, seed=10)
    full = _randomise(TABULAR_GUIDES["full_posterior"](mdp), 11)
    with torch.no_grad():
        full.initial_logits.zero_()
        full.dynamics_logits.zero_()
    structured = TABULAR_GUIDES["tabular_time_varying"](mdp)
    with torch.no_grad():
        structured.logits.copy_(full.logits)
    torch.testing.assert_close(full.exact_elbo(mdp), structured.exact_elbo(mdp))
    torch.testing.assert_close(
        full.exact_elbo(mdp), pc.policy_elbo(mdp, structured.policy(), temperature=1.0)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_elbo_and_kl_identity_by_brute_force(family):
    """ELBO by definition, and log p(O) − ELBO = KL(q(τ) ‖ p(τ|O)) ≥ 0, summed exactly."""
    mdp = _tiny_mdp(12, random_action_prior=family != "open_loop")
    guide = _randomise(TABULAR_GUIDES[family](mdp), 13)
    elbo_bf, kl_bf, log_z_bf = _brute_force(mdp, guide, 0.8)
    exact = guide.exact_elbo(mdp, temperature=0.8).item()
    log_z = pc.log_evidence(mdp, temperature=0.8).item()
    assert exact == pytest.approx(elbo_bf, abs=1e-10)
    assert log_z == pytest.approx(log_z_bf, abs=1e-10)
    assert log_z - exact == pytest.approx(kl_bf, abs=1e-10)
    assert kl_bf > 0


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    S=st.integers(1, 3),
    A=st.integers(1, 3),
    T=st.integers(1, 3),
    alpha=st.sampled_from([0.3, 1.0, 2.5]),
    family=st.sampled_from(["tabular_time_varying", "full_posterior", "tabular"]),
)
def test_property_kl_identity_on_random_mdps(seed, S, A, T, alpha, family):
    mdp = pc.random_mdp(S, A, T, seed=seed, random_action_prior=True)
    guide = _randomise(TABULAR_GUIDES[family](mdp), seed + 1, scale=2.0)
    elbo_bf, kl_bf, log_z_bf = _brute_force(mdp, guide, alpha)
    exact = guide.exact_elbo(mdp, temperature=alpha).item()
    assert exact == pytest.approx(elbo_bf, abs=1e-9)
    assert kl_bf >= -1e-12
    assert pc.log_evidence(mdp, temperature=alpha).item() - exact == pytest.approx(kl_bf, abs=1e-9)


def test_exact_elbo_has_finite_gradients_with_forbidden_actions_and_impossible_moves():
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 6)  # many zero transitions
    prior = torch.full((16, 4), 0.25, dtype=torch.float64)
    prior[0] = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    mdp = mdp.replace(action_prior=prior)
    for family in ("tabular", "tabular_time_varying", "neural", "full_posterior"):
        guide = _randomise(TABULAR_GUIDES[family](mdp), 14)
        elbo = guide.exact_elbo(mdp, temperature=0.2)
        elbo.backward()
        assert torch.isfinite(elbo)
        for p in guide.parameters():
            assert torch.isfinite(p.grad).all(), family
        assert guide.policy()[:, 0, 2:].abs().max() == 0


def test_trajectory_elbo_is_minus_inf_where_the_guide_leaves_the_models_support():
    mdp = pc.random_mdp(3, 2, 2, seed=15, deterministic=True)
    log_pi = torch.log_softmax(torch.zeros(2, 3, 2, dtype=torch.float64), -1)
    bad_initial = torch.log(torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    assert trajectory_elbo(mdp, log_pi, log_initial=bad_initial) == -torch.inf
    with pytest.raises(ValueError, match="log_dynamics"):
        trajectory_elbo(mdp, log_pi, log_dynamics=torch.zeros(2, 3, 2, 2))


# ------------------------------------------------------------------- optima


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 1000), alpha=st.sampled_from([0.5, 1.0]))
def test_structured_optimum_closes_the_gap_with_deterministic_dynamics(seed, alpha):
    mdp = pc.random_mdp(5, 3, 6, seed=seed, deterministic=True)
    res = fit(mdp, "tabular_time_varying", temperature=alpha, progress=False)
    log_z = pc.log_evidence(mdp, temperature=alpha).item()
    # the identity: the best structured ELBO is log p(O) itself (no optimism to give up) …
    assert pc.optimal_elbo(mdp, temperature=alpha).item() == pytest.approx(log_z, abs=1e-10)
    # … and SVI gets there (natural-gradient ascent, the default, to ~machine precision)
    assert res.exact_elbo == pytest.approx(log_z, abs=1e-9)
    assert abs(res.gap) < 1e-9


def test_with_stochastic_dynamics_only_the_full_posterior_reaches_log_evidence():
    mdp = pc.random_mdp(4, 3, 4, seed=16)
    log_z = pc.log_evidence(mdp).item()
    structured = fit(mdp, "tabular_time_varying", progress=False)
    full = fit(mdp, "full_posterior", progress=False)
    assert structured.exact_elbo < log_z - 1e-3  # the optimism gap the structured guide keeps
    assert structured.exact_elbo == pytest.approx(pc.optimal_elbo(mdp).item(), abs=1e-8)
    assert full.exact_elbo == pytest.approx(log_z, abs=1e-7)
    assert full.optimum == pytest.approx(log_z)


def test_full_posterior_learns_the_optimistic_lottery_dynamics():
    mdp = pc.lottery_mdp()
    res = fit(mdp, "full_posterior", progress=False)
    learned_win = res.guide.dynamics()[0, 0, 0, 1].item()
    true_win = mdp.transition[0, 0, 1].item()
    assert learned_win > 1000 * true_win  # ≈ 0.69 vs 1e-4
    exact_post = pc.posterior_dynamics(mdp)[0, 0, 0, 1].item()
    assert learned_win == pytest.approx(exact_post, abs=1e-6)
    # while the structured guide, sharing P, keeps the money
    structured = fit(mdp, "tabular_time_varying", progress=False)
    assert structured.policy[0, 0, 1] > 0.5


def test_open_loop_plan_falls_short_under_stochastic_dynamics():
    mdp = pc.random_mdp(5, 3, 5, seed=17)
    closed = fit(mdp, "tabular_time_varying", progress=False)
    plan = fit(mdp, "open_loop", progress=False)
    assert plan.exact_elbo < closed.exact_elbo - 1e-2
    assert (plan.policy[:, :1] == plan.policy).all()  # the same qₜ(a) in every state


# ------------------------------------------------------------------- options and bad inputs


def test_neural_guide_features_and_stationary_option():
    mdp = pc.random_mdp(4, 3, 5, seed=18)
    feats = torch.randn(4, 2, dtype=torch.float64)
    guide = TABULAR_GUIDES["neural"](mdp, features=feats, hidden=(8, 8), time_input=False)
    _randomise(guide, 19)
    pol = guide.policy()
    torch.testing.assert_close(pol[0], pol[-1])  # no time input: stationary
    a = TABULAR_GUIDES["neural"](mdp, seed=3).state_dict()
    b = TABULAR_GUIDES["neural"](mdp, seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_raise_clear_errors():
    mdp = pc.random_mdp(4, 3, 5, seed=20)
    guide = TABULAR_GUIDES["tabular"](mdp)
    with pytest.raises(ValueError, match="built for"):
        guide(pc.random_mdp(5, 3, 5, seed=0))
    with pytest.raises(TypeError, match="TabularMDP"):
        TABULAR_GUIDES["tabular"]("FrozenLake-v1")
    with pytest.raises(ValueError, match="features"):
        TABULAR_GUIDES["neural"](mdp, features=torch.ones(3, 2))
    with pytest.raises(ValueError, match="hidden"):
        TABULAR_GUIDES["neural"](mdp, hidden=(0,))
    prior = torch.tensor([[1.0, 0.0, 0.0]] * 4)
    with pytest.raises(ValueError, match="full support"):
        TABULAR_GUIDES["open_loop"](mdp.replace(action_prior=prior))
    with pytest.raises(ValueError, match="name"):
        TABULAR_GUIDES["tabular"](mdp, name="")
    with pytest.raises(ValueError, match="num_particles"):
        EnumELBO().loss(pc.control_model, guide, mdp, num_particles=3)
    with pytest.raises(ValueError, match="optimality"):
        guide.exact_elbo(mdp, optimality="nope")


def test_bernoulli_optimality_shifts_the_exact_elbo_like_the_model():
    mdp = pc.random_mdp(3, 2, 3, seed=21)
    guide = _randomise(TABULAR_GUIDES["tabular_time_varying"](mdp), 22)
    enum = pyro.infer.TraceEnum_ELBO(max_plate_nesting=0)
    for form in ("factor", "bernoulli"):
        with torch.no_grad():
            got = guide.exact_elbo(mdp, temperature=0.5, optimality=form).item()
            want = -enum.loss(
                pc.control_model, TableGuide(guide), mdp, temperature=0.5, optimality=form
            )
        assert got == pytest.approx(want, abs=1e-9)
