"""Autograd through the exact messages, against independent routes.

* ∂ log p(O)/∂r(s,a,s') = (1/α)·Σₜ wₜ·p(sₜ=s, aₜ=a, sₜ₊₁=s' | O): the posterior's expected
  transition counts, from forward messages × posterior dynamics and by brute-force enumeration.
* Every differentiable routine against central finite differences in float64
  (``torch.autograd.gradcheck``), with respect to the reward and to the transition table
  (parametrised by a softmax over each row, so a perturbed table stays normalised).
* A table with impossible moves (P = 0) and forbidden actions still has finite gradients.
"""

import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.backward import soft_policy_evaluation

import brute

F64 = torch.float64


def _tiny(seed=0, S=3, A=2, T=3, **kw):
    return pc.random_mdp(S, A, T, seed=seed, dtype=F64, **kw)


def _leaf_mdp(mdp):
    """The same MDP with a reward leaf that requires grad."""
    r = mdp.reward.clone().requires_grad_(True)
    return mdp.replace(reward=r), r


def _expected_counts(mdp, alpha, observed_steps=None):
    """Σₜ wₜ·p(sₜ, aₜ, sₜ₊₁ | O) from the forward–backward marginals (a second route)."""
    sa = pc.state_action_marginals(mdp, temperature=alpha, observed_steps=observed_steps)
    post = pc.posterior_dynamics(mdp, temperature=alpha, observed_steps=observed_steps)
    w = torch.zeros(mdp.horizon, dtype=F64)
    w[list(range(mdp.horizon)) if observed_steps is None else observed_steps] = 1.0
    return (w[:, None, None, None] * sa[..., None] * post).sum(0)


def _brute_counts(mdp, alpha, observed_steps=None):
    """The same counts by enumerating every trajectory (tests/brute.py)."""
    mdp = mdp.replace(reward=mdp.reward.detach(), transition=mdp.transition.detach())
    rows = brute.table(mdp, alpha, observed_steps=observed_steps)
    T = mdp.horizon
    w = np.ones(T) if observed_steps is None else np.isin(np.arange(T), observed_steps)
    counts = np.zeros((mdp.num_states, mdp.num_actions, mdp.num_states))
    z = 0.0
    for s_seq, a_seq, dyn, pa, ret, _ in rows:
        weight = dyn * pa * np.exp(ret)
        z += weight
        for t in range(T):
            counts[s_seq[t], a_seq[t], s_seq[t + 1]] += w[t] * weight
    return counts / z


@pytest.mark.parametrize("steps", [None, [0, 2]])
@pytest.mark.parametrize("kw", [dict(seed=0), dict(seed=1, random_action_prior=True)])
@pytest.mark.parametrize("alpha", [0.4, 1.0, 3.0])
def test_reward_gradient_of_log_evidence_is_the_posterior_expected_counts(kw, alpha, steps):
    mdp, r = _leaf_mdp(_tiny(T=3, **kw))
    pc.log_evidence(mdp, temperature=alpha, observed_steps=steps).backward()
    counts = _expected_counts(mdp, alpha, steps).detach()
    torch.testing.assert_close(r.grad, counts / alpha, rtol=1e-10, atol=1e-12)
    brute_counts = _brute_counts(mdp, alpha, steps)
    np.testing.assert_allclose(r.grad.numpy(), brute_counts / alpha, atol=1e-12)


def test_transition_gradient_of_log_evidence_is_counts_over_p():
    """∂ log p(O)/∂P(s'|s,a), the table's entries taken as free: Σₜ p(s, a, s' | O)/P(s'|s,a)."""
    mdp = _tiny(seed=2, concentration=2.0)
    P = mdp.transition.clone().requires_grad_(True)
    mdp = mdp.replace(transition=P)
    pc.log_evidence(mdp, temperature=0.7).backward()
    expect = _brute_counts(mdp, 0.7) / P.detach().numpy()
    np.testing.assert_allclose(P.grad.numpy(), expect, rtol=1e-10)


def _parametrised(seed=3, S=3, A=2, T=3, **kw):
    """(reward, transition logits) leaves and a builder of the MDP they define."""
    base = _tiny(seed, S, A, T, **kw)
    logits = torch.log(base.transition).clone()
    reward = base.reward.clone()

    def build(r, logit):
        return base.replace(reward=r, transition=torch.softmax(logit, -1))

    return build, reward, logits


def _routines():
    """Each differentiable routine as a function of an MDP returning one tensor."""
    T = 3
    g = torch.Generator().manual_seed(4)
    pi = torch.softmax(torch.randn(T, 3, 2, generator=g, dtype=F64), -1)
    steps = [0, 2]
    return {
        "log_evidence": lambda m: pc.log_evidence(m, temperature=0.7),
        "log_evidence_steps": lambda m: pc.log_evidence(m, temperature=0.7, observed_steps=steps),
        "optimal_elbo": lambda m: pc.optimal_elbo(m, temperature=0.7),
        "svi_optimistic": lambda m: torch.cat(
            [x.flatten() for x in pc.soft_value_iteration(m, temperature=0.7)[:3]]
        ),
        "svi_expected": lambda m: torch.cat(
            [
                x.flatten()
                for x in pc.soft_value_iteration(m, temperature=0.7, backup="expected")[:3]
            ]
        ),
        "state_marginals": lambda m: pc.state_marginals(m, temperature=0.7, include_final=True),
        "state_action_marginals": lambda m: pc.state_action_marginals(m, temperature=0.7),
        "posterior_dynamics": lambda m: pc.posterior_dynamics(m, temperature=0.7),
        "log_forward_messages": lambda m: pc.log_forward_messages(m, temperature=0.7),
        "policy_elbo": lambda m: pc.policy_elbo(m, pi, temperature=0.7),
        "policy_elbo_steps": lambda m: pc.policy_elbo(m, pi, temperature=0.7, observed_steps=steps),
        "trajectory_elbo": lambda m: pc.trajectory_elbo(m, torch.log(pi), temperature=0.7),
        "soft_policy_evaluation": lambda m: torch.cat(
            [x.flatten() for x in soft_policy_evaluation(m, pi, temperature=0.7)[:2]]
        ),
        "policy_state_distribution": lambda m: pc.policy_state_distribution(m, pi),
        "discounted": lambda m: torch.cat(
            [
                x.flatten()
                for x in pc.discounted_soft_value_iteration(
                    m, discount=0.8, temperature=0.7, tol=1e-14
                )[:3]
            ]
        ),
    }


@pytest.mark.parametrize("name", list(_routines()))
def test_gradients_match_central_finite_differences(name):
    f = _routines()[name]
    build, reward, logits = _parametrised(random_action_prior=True)
    reward.requires_grad_(True)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda r, lg: f(build(r, lg)), (reward, logits), eps=1e-6, atol=1e-7, rtol=1e-5
    )


@pytest.mark.parametrize("name", list(_routines()))
def test_gradients_are_finite_with_impossible_moves_and_forbidden_actions(name):
    f = _routines()[name]
    mdp = _tiny(seed=5, concentration=0.3)
    P = mdp.transition.clone()
    P[0, 0] = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    P[1, 1] = torch.tensor([0.5, 0.0, 0.5], dtype=F64)
    prior = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.5, 0.5]], dtype=F64)
    r = mdp.reward.clone().requires_grad_(True)
    P.requires_grad_(True)
    m = mdp.replace(transition=P, reward=r, action_prior=prior)
    out = f(m)
    finite = torch.isfinite(out)
    # the policies evaluated here act where the prior forbids: their ELBO is −inf by design
    if finite.any():
        out[finite].sum().backward()
        assert torch.isfinite(P.grad).all(), name
        if r.grad is not None:  # policy_state_distribution does not read the reward
            assert torch.isfinite(r.grad).all(), name
            # a reward on an impossible move cannot matter
            assert r.grad[0, 0, 0] == 0 and r.grad[0, 0, 2] == 0 and r.grad[1, 1, 1] == 0
    assert not torch.isnan(out).any(), name


def test_gradient_through_the_underflow_fallback_rows():
    """Rewards spanning thousands of nats route rows through the logsumexp fallback."""
    mdp = pc.random_mdp(4, 2, 3, seed=3, concentration=0.5, dtype=F64)
    r = mdp.reward.clone()
    r[0, 0, 1] = -5000.0
    r[2, 1, :] = -3000.0
    r.requires_grad_(True)
    m = mdp.replace(reward=r)
    pc.log_evidence(m).backward()
    assert torch.isfinite(r.grad).all()
    torch.testing.assert_close(r.grad, _expected_counts(m, 1.0).detach(), rtol=1e-9, atol=1e-12)


def test_the_mdp_keeps_the_graph_of_an_s_a_reward():
    """An (S, A) reward is broadcast over s' inside TabularMDP without detaching it."""
    base = _tiny(seed=6)
    r_sa = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    r_sa.requires_grad_(True)
    m = base.replace(reward=r_sa)
    pc.log_evidence(m, temperature=0.5).backward()
    counts = _expected_counts(m, 0.5).detach().sum(-1)  # Σ over s' of the expected counts
    torch.testing.assert_close(r_sa.grad, counts / 0.5, rtol=1e-10, atol=1e-12)
