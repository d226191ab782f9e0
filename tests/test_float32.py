"""The float32 lane: the core identities in float32, and float32 against float64.

Every tensor here gets an explicit dtype, so nothing depends on torch's default dtype.

The tolerance. The messages are computed on scaled values (V/α, Q/α, log αₜ), each step adding
a few roundings of relative size eps to numbers of magnitude at most M = max(1, max|V/α|,
max|log αₜ|) (measured in float64). Over T steps the absolute error of any scaled value is
therefore at most c·T·eps₃₂·M, and a probability p computed as exp of differences of them has
|Δp| ≤ p·(exp(c·T·eps₃₂·M) − 1) ≈ c·T·eps₃₂·M while that is small. The sweep that set c
(random MDPs, FrozenLake 8x8 slippery T = 100, CliffWalking, α from 1e-3 to 1e2, T up to 1000)
measured c ≤ 0.4 for every routine; the tests allow c = 4.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pgm_control as pc
from pgm_control.backward import soft_policy_evaluation

F32, F64 = torch.float32, torch.float64
EPS32 = torch.finfo(F32).eps
C = 4.0


def _cases():
    for seed, alphas in ((0, (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)), (1, (1e-3, 1.0))):
        for alpha in alphas:
            yield f"random{seed}-a{alpha}", lambda s=seed: pc.random_mdp(8, 3, 15, seed=s), alpha
    frozen = lambda: pc.TabularMDP.from_gymnasium(  # noqa: E731
        "FrozenLake-v1", 100, map_name="8x8", dtype=F64
    )
    for alpha in (1e-3, 1.0):
        yield f"frozen8x8-T100-a{alpha}", frozen, alpha
    cliff = lambda: pc.TabularMDP.from_gymnasium("CliffWalking-v1", 50, dtype=F64)  # noqa: E731
    yield "cliff-T50-a0.001", cliff, 1e-3
    for alpha in (1e-3, 1.0):
        yield f"random-T1000-a{alpha}", lambda: pc.random_mdp(6, 3, 1000, seed=1), alpha


CASES = {name: (make, alpha) for name, make, alpha in _cases()}


def _outputs(mdp, alpha, pi):
    kw = dict(temperature=alpha)
    sv = pc.soft_value_iteration(mdp, **kw)
    sve = pc.soft_value_iteration(mdp, backup="expected", **kw)
    spe = soft_policy_evaluation(mdp, pi, **kw)
    terms = pc.elbo_terms(mdp, pi, **kw)
    log_scaled = {
        "log_evidence": pc.log_evidence(mdp, **kw),
        "optimal_elbo": pc.optimal_elbo(mdp, **kw),
        "V/α optimistic": sv.v / alpha,
        "Q/α optimistic": sv.q / alpha,
        "V/α expected": sve.v / alpha,
        "log forward": pc.log_forward_messages(mdp, **kw),
        "policy_elbo": pc.policy_elbo(mdp, pi, **kw),
        "elbo_terms": torch.stack(list(terms)),
        "trajectory_elbo": pc.trajectory_elbo(mdp, torch.log(pi), **kw),
        "V/α of π": spe.v / alpha,
    }
    probabilities = {
        "policy optimistic": sv.policy,
        "policy expected": sve.policy,
        "state marginals": pc.state_marginals(mdp, include_final=True, **kw),
        "state-action marginals": pc.state_action_marginals(mdp, **kw),
        "posterior dynamics": pc.posterior_dynamics(mdp, **kw),
        "policy state distribution": pc.policy_state_distribution(mdp, pi),
    }
    return log_scaled, probabilities


@pytest.mark.parametrize("case", list(CASES))
def test_float32_agrees_with_float64_within_T_eps_scaled_magnitude(case):
    make, alpha = CASES[case]
    m64 = make()
    m32 = m64.to(dtype=F32)
    assert m64.float_dtype == F64 and m32.float_dtype == F32
    T = m64.horizon
    pi64 = pc.soft_value_iteration(m64, temperature=alpha, backup="expected").policy
    logs64, probs64 = _outputs(m64, alpha, pi64)
    logs32, probs32 = _outputs(m32, alpha, pi64.to(F32))
    magnitude = max(
        1.0, logs64["V/α optimistic"].abs().max().item(), logs64["log forward"].abs().max().item()
    )
    bound = C * T * EPS32 * magnitude
    for outputs64, outputs32, is_prob in ((logs64, logs32, False), (probs64, probs32, True)):
        for key, x64 in outputs64.items():
            x32 = outputs32[key]
            assert x32.dtype == F32, key  # every routine returns the MDP's dtype
            finite64 = torch.isfinite(x64)
            # never −inf/NaN where float64 is finite; −inf exactly where float64 has it
            assert torch.isfinite(x32[finite64]).all(), key
            assert torch.equal(torch.isneginf(x32), torch.isneginf(x64)), key
            if is_prob and bound > 0.1:
                continue  # exp(bound) − 1 no longer small: the log-space bound is all we claim
            err = (x32.double() - x64)[finite64].abs().max().item()
            assert err <= bound, f"{key}: {err:.3g} > {bound:.3g}"


def _random_policy(mdp, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (mdp.horizon, mdp.num_states, mdp.num_actions)
    return torch.softmax(2 * torch.randn(shape, generator=g, dtype=F32), -1)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    S=st.integers(1, 6),
    A=st.integers(1, 4),
    T=st.integers(1, 30),
    log10_alpha=st.floats(-3, 2),
)
def test_property_core_identities_hold_in_float32(seed, S, A, T, log10_alpha):
    alpha = 10.0**log10_alpha
    mdp = pc.random_mdp(S, A, T, seed=seed, random_action_prior=bool(seed % 2), dtype=F32)
    ev = pc.log_evidence(mdp, temperature=alpha)
    assert ev.dtype == F32 and torch.isfinite(ev)
    v = pc.soft_value_iteration(mdp, temperature=alpha).v / alpha
    tol = C * T * EPS32 * max(1.0, v.abs().max().item(), abs(ev.item()))
    # log p(O) from the backward messages and from the forward messages
    log_a = pc.log_forward_messages(mdp, temperature=alpha)
    assert abs(torch.logsumexp(log_a[-1], 0).item() - ev.item()) <= tol
    # the optimal ELBO is the ELBO of the soft-optimal policy, and bounds every other policy
    best = pc.optimal_elbo(mdp, temperature=alpha)
    pi_star = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected").policy
    # exp(Q/α − V/α) in float32 sums to 1 only within ≈ eps·|Q/α|, and the ELBO is linear off
    # the simplex; renormalised, the error is second order (the optimum is stationary)
    pi_star = pi_star / pi_star.sum(-1, keepdim=True)
    assert abs(pc.policy_elbo(mdp, pi_star, temperature=alpha).item() - best.item()) <= tol
    other = pc.policy_elbo(mdp, _random_policy(mdp, seed), temperature=alpha)
    assert other.item() <= best.item() + tol
    # ELBO ≤ log p(O)
    assert best.item() <= ev.item() + tol
    # marginals are distributions
    if tol < 0.1:
        sm = pc.state_marginals(mdp, temperature=alpha, include_final=True)
        sa = pc.state_action_marginals(mdp, temperature=alpha)
        assert (sm.sum(-1) - 1).abs().max().item() <= tol
        assert (sa.sum((-2, -1)) - 1).abs().max().item() <= tol


def test_underflowing_rows_are_redone_in_float32():
    """Rewards spanning thousands of nats: float32 once returned −inf here (a 1e-250 constant)."""
    mdp = pc.random_mdp(5, 2, 6, seed=3, concentration=0.5)
    r = mdp.reward.clone()
    r[0, 0, 1] = -5000.0
    r[2, 1, :] = -3000.0
    m64 = mdp.replace(reward=r)
    m32 = m64.to(dtype=F32)
    for alpha in (1e-3, 1.0):
        sv64 = pc.soft_value_iteration(m64, temperature=alpha)
        sv32 = pc.soft_value_iteration(m32, temperature=alpha)
        assert torch.isfinite(sv32.q).all() and torch.isfinite(sv32.v).all()
        scale = sv64.q.abs().max().item() / alpha
        err = ((sv32.q.double() - sv64.q) / alpha).abs().max().item()
        assert err <= C * 6 * EPS32 * scale


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99])
def test_discounted_default_tolerance_is_reachable_in_float32(gamma):
    mdp = pc.random_mdp(10, 4, 1, seed=2, reward_scale=10.0)
    res64 = pc.discounted_soft_value_iteration(mdp, discount=gamma, temperature=0.5)
    res32 = pc.discounted_soft_value_iteration(mdp.to(dtype=F32), discount=gamma, temperature=0.5)
    assert res32.v.dtype == F32 and res32.iterations < 100_000
    # stopped at ≤ 16 ulps of max|V|: within that/(1 − γ) of the fixed point, plus rounding
    v_max = res64.v.abs().max().item()
    tol = 32 * EPS32 * max(1.0, v_max) / (1 - gamma)
    assert (res32.v.double() - res64.v).abs().max().item() <= tol


def test_float32_policies_from_softmax_are_accepted_with_many_actions():
    """Rows of a float32 softmax sum to 1 only within ≈ A·eps: the check must allow that."""
    mdp = pc.random_mdp(3, 300, 2, seed=0, dtype=F32)
    logits = torch.randn(2, 3, 300, dtype=F32, generator=torch.Generator().manual_seed(1)) * 5
    elbo = pc.policy_elbo(mdp, torch.softmax(logits, -1))
    assert elbo.dtype == F32 and torch.isfinite(elbo)
    assert torch.isfinite(pc.trajectory_elbo(mdp, torch.log_softmax(logits, -1)))


def test_float32_sampling_matches_marginals():
    mdp = pc.random_mdp(4, 3, 5, seed=2, dtype=F32)
    n = 50_000
    traj = pc.sample_posterior_trajectories(mdp, n, temperature=0.5, seed=1)
    assert traj.rewards.dtype == F32
    m = pc.state_marginals(mdp, temperature=0.5, include_final=True).double()
    freq = torch.nn.functional.one_hot(traj.states, 4).double().mean(0)
    assert ((freq - m).abs() <= 5 * (m * (1 - m) / n).sqrt() + 1e-6).all()


def test_documented_bound_is_tight_enough_to_matter():
    """The bound at FrozenLake 8x8, T = 100, α = 0.1 is well below the quantities it bounds."""
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 100, map_name="8x8", dtype=F64)
    v = pc.soft_value_iteration(mdp, temperature=0.1).v / 0.1
    bound = C * 100 * EPS32 * max(1.0, v.abs().max().item())
    assert bound < 1e-3 and math.isfinite(bound)


@pytest.mark.parametrize("alpha", [1e-2, 1.0])
def test_float32_gradients_are_finite_and_agree_with_float64(alpha):
    """∂ log p(O)/∂r = expected counts/α in float32 too (the IRL gradient), also through the
    rows redone by logsumexp at small α."""
    m64 = pc.random_mdp(6, 3, 10, seed=4)
    grads = {}
    for dtype in (F64, F32):
        r = m64.reward.to(dtype).clone().requires_grad_(True)
        m = m64.to(dtype=dtype).replace(reward=r)
        pc.log_evidence(m, temperature=alpha).backward()
        grads[dtype] = r.grad
    assert grads[F32].dtype == F32 and torch.isfinite(grads[F32]).all()
    v = pc.soft_value_iteration(m64, temperature=alpha).v / alpha
    bound = C * 10 * EPS32 * max(1.0, v.abs().max().item())
    # counts are probabilities (≤ T), so their error is the marginals' bound, times 1/α
    err = ((grads[F32].double() - grads[F64]) * alpha).abs().max().item()
    assert err <= 10 * bound
