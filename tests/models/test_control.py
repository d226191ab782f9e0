"""The Pyro model: Pyro's own enumeration and trace log-densities vs the exact recursions."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pgm_control as pc
import pgm_control.backward as backward
from pgm_control.models import control_model, enumerated_log_evidence


@pytest.mark.parametrize("seed", range(4))
def test_enumeration_equals_messages_on_random_mdps(seed):
    mdp = pc.random_mdp(5, 3, 7, seed=seed, concentration=0.3, random_action_prior=seed % 2 == 0)
    for alpha in (0.3, 1.0):
        a = enumerated_log_evidence(mdp, temperature=alpha).item()
        assert a == pytest.approx(pc.log_evidence(mdp, temperature=alpha).item(), abs=1e-9)


@pytest.mark.parametrize(
    "env_id,kwargs,T,expect",
    [
        ("FrozenLake-v1", {}, 50, None),
        ("CliffWalking-v1", {}, 50, -29.8087),
        ("CliffWalking-v1", {"is_slippery": True}, 20, None),
    ],
)
def test_enumeration_equals_messages_on_gymnasium(env_id, kwargs, T, expect):
    mdp = pc.TabularMDP.from_gymnasium(env_id, T, **kwargs)
    exact = pc.log_evidence(mdp).item()
    assert enumerated_log_evidence(mdp).item() == pytest.approx(exact, abs=1e-9)
    if expect is not None:
        assert exact == pytest.approx(expect, abs=1e-4)


def test_probs_would_have_shifted_the_evidence():
    """Why the model uses logits: Categorical(probs=P) clamps zeros and moves log p(O)."""
    mdp = pc.TabularMDP.from_gymnasium("CliffWalking-v1", 50)
    d = dist.Categorical(probs=mdp.transition[0, 0])
    assert d.logits.min() > -torch.inf  # zero probabilities became ~machine epsilon
    assert dist.Categorical(logits=mdp.log_transition[0, 0]).logits.min() == -torch.inf


def test_bernoulli_teaching_form_shifts_by_r_max():
    mdp = pc.random_mdp(4, 2, 6, seed=3)
    r_max = mdp.reward.max().item()
    for steps in (None, [5], [0, 3]):
        n = 6 if steps is None else len(steps)
        got = enumerated_log_evidence(mdp, optimality="bernoulli", observed_steps=steps).item()
        expect = pc.log_evidence(mdp, observed_steps=steps).item() - n * r_max
        assert got == pytest.approx(expect, abs=1e-9)


def test_goal_reaching_conditions_on_the_last_step_only():
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 20)
    got = enumerated_log_evidence(mdp, observed_steps=[19], temperature=0.5).item()
    assert got == pytest.approx(
        pc.log_evidence(mdp, observed_steps=[19], temperature=0.5).item(), abs=1e-9
    )


def test_trace_log_joint_is_prior_times_exp_reward():
    """Sampled under a particle plate, the trace's log density is log p(τ) + Σ r/α."""
    mdp = pc.random_mdp(4, 3, 5, seed=1, random_action_prior=True)
    n, alpha = 64, 0.7
    tr = pyro.poutine.trace(control_model).get_trace(mdp, temperature=alpha, num_particles=n)
    tr.compute_log_prob()
    s = torch.stack([tr.nodes[f"s_{t}"]["value"] for t in range(6)], -1)
    a = torch.stack([tr.nodes[f"a_{t}"]["value"] for t in range(5)], -1)
    assert s.shape == (n, 6) and a.shape == (n, 5)
    expect = (
        mdp.log_initial[s[:, 0]]
        + mdp.log_action_prior[s[:, :-1], a].sum(-1)
        + mdp.log_transition[s[:, :-1], a, s[:, 1:]].sum(-1)
        + mdp.reward[s[:, :-1], a, s[:, 1:]].sum(-1) / alpha
    )
    got = sum(site["log_prob"] for name, site in tr.nodes.items() if site["type"] == "sample"
              and name != "particles")  # fmt: skip
    torch.testing.assert_close(got, expect)


def test_model_validates_inputs():
    mdp = pc.random_mdp(3, 2, 2)
    with pytest.raises(ValueError, match="`optimality`"):
        control_model(mdp, optimality="gaussian")
    with pytest.raises(ValueError, match="`temperature`"):
        enumerated_log_evidence(mdp, temperature=-1.0)
    with pytest.raises(TypeError, match="TabularMDP"):
        control_model("FrozenLake-v1")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), S=st.integers(1, 4), A=st.integers(1, 3), T=st.integers(1, 5))
def test_property_enumeration_equals_messages(seed, S, A, T):
    mdp = pc.random_mdp(S, A, T, seed=seed, concentration=0.5)
    assert enumerated_log_evidence(mdp).item() == pytest.approx(
        pc.log_evidence(mdp).item(), abs=1e-9
    )


@pytest.mark.parametrize("alpha", [0.05, 1.0])
def test_enumeration_equals_messages_in_float32(alpha):
    """Pyro's enumeration of a float32 model returns float32 and agrees with the float32 messages
    within the lane's bound C·T·eps₃₂·max(1, |log p(O)|) (see tests/test_float32.py)."""
    mdp = pc.random_mdp(4, 3, 6, seed=3, dtype=torch.float32)
    got = enumerated_log_evidence(mdp, temperature=alpha)
    exact = pc.log_evidence(mdp, temperature=alpha)
    assert got.dtype == exact.dtype == torch.float32
    exact64 = pc.log_evidence(mdp.to(dtype=torch.float64), temperature=alpha).item()
    bound = 4 * 6 * torch.finfo(torch.float32).eps * max(1.0, abs(exact64))
    assert abs(got.item() - exact64) <= bound and abs(exact.item() - exact64) <= bound


@pytest.mark.parametrize(
    "make,methods",
    [
        (
            lambda: pc.random_mdp(5, 3, 7, seed=2, concentration=0.3, random_action_prior=True),
            ("forward", "trace_enum_elbo"),
        ),
        (lambda: pc.TabularMDP.from_gymnasium("FrozenLake-v1", 12), ("forward",)),
        (
            lambda: pc.TabularMDP.from_gymnasium("CliffWalking-v1", 5, is_slippery=True),
            ("forward", "trace_enum_elbo"),
        ),
    ],
)
def test_both_enumeration_methods_equal_the_messages_to_1e10(make, methods):
    mdp = make()
    for kw in ({}, {"observed_steps": [0, mdp.horizon - 1]}, {"temperature": 0.3}):
        exact = pc.log_evidence(mdp, **kw).item()
        for method in methods:
            got = enumerated_log_evidence(mdp, method=method, **kw)
            assert got.dtype == torch.float64
            assert got.item() == pytest.approx(exact, abs=1e-10), (method, kw)


def test_the_forward_enumeration_never_calls_the_messages(monkeypatch):
    """Independence: with the library's recursion disabled, Pyro's route still answers."""
    mdp = pc.random_mdp(4, 2, 5, seed=4)
    exact = pc.log_evidence(mdp).item()

    def _disabled(*args, **kwargs):
        raise AssertionError("the certificate called the library's messages")

    monkeypatch.setattr(backward, "_backward", _disabled)
    assert enumerated_log_evidence(mdp).item() == pytest.approx(exact, abs=1e-10)


def test_enumeration_method_is_validated():
    with pytest.raises(ValueError, match="`method`"):
        enumerated_log_evidence(pc.random_mdp(2, 2, 2), method="scan")


def test_forward_enumeration_stays_exact_as_temperature_vanishes():
    """Log-weights spanning ~3·10⁵ nats: one shift for the whole product keeps it exact."""
    mdp = pc.random_mdp(8, 3, 15, seed=0)
    exact = pc.log_evidence(mdp, temperature=1e-4).item()
    got = enumerated_log_evidence(mdp, temperature=1e-4).item()
    assert got == pytest.approx(exact, rel=1e-13)
