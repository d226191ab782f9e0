"""FitResult: pickles with its guide, saves and loads (in a fresh process), reloads its params
into a fresh guide, says plainly when no step completed; `fit` keeps the caller's RNGs.

Independent route for save/load: a separate Python process reloads the file and recomputes the
policy table and sampled actions, which must equal the parent's bit for bit.
"""

import os
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pgm_control as pc
from pgm_control.continuous import ContinuousMDP
from pgm_control.fit_result import FitResult
from pgm_control.guides import GUIDES, TABULAR_GUIDES
from pgm_control.svi import fit, fit_continuous, gradient_variance

HERE = Path(__file__).resolve().parent
DT = torch.float64


def drift(s, a):
    """Module-level dynamics (picklable by reference): sₜ₊₁ = sₜ + aₜ/2."""
    return s + 0.5 * a


def cost(s, a):
    return -(s**2).sum(-1) - 0.1 * (a**2).sum(-1)


def _cmdp(horizon=4):
    initial = dist.Normal(torch.zeros(1, dtype=DT), torch.ones(1, dtype=DT)).to_event(1)
    return ContinuousMDP(
        dynamics=drift, reward=cost, initial=initial, horizon=horizon,
        action_low=-1.0, action_high=1.0,
    )  # fmt: skip


def _signature(res, mdp):
    """What a reloaded result must reproduce: its policy table and a seeded draw of actions."""
    torch.manual_seed(123)
    if res.policy is not None:
        actions = torch.distributions.Categorical(probs=res.policy[0]).sample((5,))
        return res.policy, actions
    states = torch.linspace(-1, 1, 6, dtype=DT)[:, None]
    return res.guide.act(states, 0), res.guide.act(states, 0, deterministic=False)


def test_results_pickle_with_their_guides():
    mdp = pc.random_mdp(4, 3, 5, seed=0)
    for family in sorted(TABULAR_GUIDES):
        res = fit(mdp, family, steps=3, progress=False)
        again = pickle.loads(pickle.dumps(res))
        assert torch.equal(again.policy, res.policy) and again.gap == res.gap
        assert torch.equal(again.guide.policy(), res.guide.policy())
    cres = fit(_cmdp(), steps=3, num_particles=8, progress=False)
    again = pickle.loads(pickle.dumps(cres))
    for a, b in zip(_signature(again, None), _signature(cres, None)):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_save_and_load_reproduce_policy_and_actions_in_a_fresh_process(tmp_path):
    mdp = pc.random_mdp(4, 3, 5, seed=1)
    results = {
        "neural": fit(mdp, "neural", steps=5, progress=False),
        "full_posterior": fit(mdp, "full_posterior", progress=False),
        "gaussian_mlp": fit(_cmdp(), "gaussian_mlp", steps=5, num_particles=8, progress=False),
        "open_loop_normal": fit(_cmdp(), "open_loop_normal", steps=5, progress=False),
    }
    for name, res in results.items():
        res.save(tmp_path / f"{name}.pt")
        torch.save(_signature(res, None), tmp_path / f"{name}.want.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(HERE)!r})
        from test_fit_result import _signature
        from pgm_control.fit_result import FitResult
        for name in {sorted(results)!r}:
            res = FitResult.load({str(tmp_path)!r} + f"/{{name}}.pt")
            torch.save(_signature(res, None), {str(tmp_path)!r} + f"/{{name}}.got.pt")
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in results:
        want = torch.load(tmp_path / f"{name}.want.pt")
        got = torch.load(tmp_path / f"{name}.got.pt")
        for a, b in zip(want, got):
            assert torch.equal(a, b), name
    with pytest.raises(TypeError, match="not a FitResult"):
        torch.save({"a": 1}, tmp_path / "other.pt")
        FitResult.load(tmp_path / "other.pt")


def test_params_load_into_a_freshly_built_guide_of_the_family():
    mdp = pc.random_mdp(4, 3, 5, seed=2)
    res = fit(mdp, "neural", hidden=(8,), steps=4, progress=False)
    fresh = TABULAR_GUIDES["neural"](mdp, hidden=(8,), seed=99)  # other initial weights
    fresh.load_state_dict(res.params)
    assert torch.equal(fresh.policy(), res.guide.policy())
    torch.testing.assert_close(fresh.policy(), res.policy, atol=1e-15, rtol=0)
    cmdp = _cmdp()
    cres = fit(cmdp, "gaussian_mlp", hidden=(8,), steps=4, num_particles=8, progress=False)
    fresh = GUIDES["gaussian_mlp"](cmdp, hidden=(8,))
    fresh.load_state_dict(cres.params)
    states = torch.linspace(-1, 1, 5, dtype=DT)[:, None]
    assert torch.equal(fresh.act(states), cres.guide.act(states))


def test_an_interrupt_during_set_up_returns_a_result_marked_interrupted():
    mdp = pc.random_mdp(3, 2, 3, seed=3)

    def interrupted_guide(mdp, **kwargs):  # Ctrl-C while fit reads the guide
        raise KeyboardInterrupt

    res = fit(mdp, interrupted_guide, progress=False)
    assert res.extra["interrupted"] and len(res.elbo) == 0 and res.gap is None
    assert "no step completed (interrupted)" in repr(res) and "nan" not in repr(res)
    cres = fit_continuous(_cmdp(), interrupted_guide, steps=5, progress=False)
    assert cres.extra["interrupted"] and len(cres.elbo) == 0
    assert "no step completed" in repr(cres) and "nan" not in repr(cres)

    def stop_first_step(step, elbo, guide):
        raise KeyboardInterrupt

    res = fit(mdp, steps=5, callback=stop_first_step, progress=False)
    assert res.extra["interrupted"] and len(res.elbo) == 1 and "interrupted" in repr(res)


def _global_states():
    return (
        torch.get_rng_state(),
        np.random.get_state()[1].copy(),
        random.getstate(),
    )


@pytest.mark.parametrize("kind", ["exact", "rao_blackwell", "continuous"])
def test_fit_keeps_the_callers_generators_and_is_reproducible(kind):
    torch.manual_seed(2024)
    np.random.seed(7)
    random.seed(11)
    before = _global_states()
    if kind == "continuous":
        run = lambda: fit(_cmdp(), steps=4, num_particles=8, seed=5, progress=False)  # noqa: E731
    else:
        mdp = pc.random_mdp(4, 2, 4, seed=4)
        kw = {"num_particles": 50, "steps": 4} if kind != "exact" else {}
        run = lambda: fit(mdp, "neural", estimator=kind, seed=5, progress=False, **kw)  # noqa: E731
    a, b = run(), run()
    after = _global_states()
    assert torch.equal(before[0], after[0])
    assert np.array_equal(before[1], after[1]) and before[2] == after[2]
    np.testing.assert_array_equal(a.elbo, b.elbo)
    for p, q in zip(a.guide.parameters(), b.guide.parameters()):
        assert torch.equal(p, q)


def test_gradient_variance_keeps_the_callers_generators():
    mdp = pc.random_mdp(3, 2, 3, seed=5)
    guide = TABULAR_GUIDES["tabular"](mdp)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    gradient_variance(mdp, guide, "score", num_particles=20, repeats=2)
    assert torch.equal(before, torch.get_rng_state())
    assert len(pyro.get_param_store()) == 0


# --------------------------------------------------------------------------- the repr (issue 14)
def test_repr_prints_the_exact_elbo_and_gap_not_an_estimate():
    mdp = pc.random_mdp(5, 3, 4, seed=0)
    res = fit(mdp, "tabular_time_varying", temperature=0.5, progress=False)
    text = repr(res)
    exact = pc.exact_elbo(res.guide, mdp, temperature=0.5).item()  # recomputed from the guide
    best = pc.optimal_elbo(mdp, temperature=0.5).item()
    assert f"exact_elbo={exact:.6g}" in text and f"optimal_elbo={best:.6g}" in text
    assert f"gap={best - exact:.3g}" in text
    assert "estimate" not in text and "cannot reach" not in text


def test_repr_labels_a_monte_carlo_value_as_an_estimate():
    mdp = pc.random_mdp(5, 3, 4, seed=0)
    res = fit(mdp, "tabular_time_varying", estimator="score", steps=3, num_particles=50,
              temperature=0.5, progress=False)  # fmt: skip
    text = repr(res)
    assert f"last_estimate={res.elbo[-1]:.6g} (Monte Carlo, noisy)" in text
    exact = pc.exact_elbo(res.guide, mdp, temperature=0.5).item()
    assert f"exact_elbo={exact:.6g}" in text


def test_repr_of_a_continuous_fit_has_only_the_labelled_estimate():
    res = fit_continuous(_cmdp(), steps=2, num_particles=4, progress=False)
    text = repr(res)
    assert "last_estimate=" in text and "(Monte Carlo, noisy)" in text
    assert "exact_elbo" not in text and "gap" not in text


def test_full_posterior_is_measured_against_log_evidence():
    mdp = pc.random_mdp(4, 2, 3, seed=1)
    res = fit(mdp, "full_posterior", progress=False)
    assert res.extra["optimum_name"] == "log_evidence"
    assert f"log_evidence={pc.log_evidence(mdp).item():.6g}" in repr(res)


def test_the_stationary_family_names_its_own_limit():
    """One q(a|s) for every t cannot hold a policy that depends on the steps left: with T > 1
    the gap stays open at convergence; with T = 1 (nothing to depend on) it closes."""
    mdp = pc.random_mdp(6, 3, 8, seed=0)
    soft = pc.soft_value_iteration(mdp, backup="expected")
    assert (soft.policy[0] - soft.policy[-1]).abs().max() > 1e-2  # π*ₜ changes with t
    res = fit(mdp, "tabular", progress=False)
    assert res.extra["converged"] and res.gap > 1e-4
    assert res.extra["limit"] == GUIDES["tabular"].limit
    assert "which this family cannot reach (one q(a|s) for every t" in repr(res)
    one_step = fit(mdp.replace(horizon=1), "tabular", progress=False)
    assert one_step.gap < 1e-9  # T = 1: the stationary family holds the optimum
    assert fit(mdp, "tabular_time_varying", progress=False).extra["limit"] is None
    assert "cannot react to the state" in repr(fit(mdp, "open_loop", progress=False))
