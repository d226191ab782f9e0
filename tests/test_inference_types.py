"""The five types of planning inference (Lázaro-Gredilla et al. 2024) against brute force.

Each max-type backup of :func:`pgm_control.soft_value_iteration` is checked against the
definition it stands for, by enumerating every path (tests/brute.py):

* "map": log p(a|s) + Q₀(s,a)/α = max over every path from s starting with a of
  log p(a, s', O | s) (open loop: the single most likely trajectory);
* "marginal_map": log p(a|s) + Q₀(s,a)/α = max over deterministic reactive policies π with
  π₀(s) = a of log E_P[Π p(aₜ|sₜ)·exp(Σ r/α)];
* "planning": Q₀(s,a) = max over deterministic policies within the prior's support with
  π₀(s) = a of E_P[Σ r], and hard value iteration's Q (a second route); the α → 0 limit of the
  expected backup.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import pgm_control as pc

import brute

F32, F64 = torch.float32, torch.float64
MAX_TYPES = ("map", "marginal_map", "planning")
ALL_TYPES = ("optimistic", "expected", *MAX_TYPES)


def _brute_qs(mdp, alpha, steps=None):
    """What log p(a|s) + Q₀/α (map, marginal_map) or Q₀ (planning) must be, by enumeration."""
    mmap, plan = brute.best_policy_q(mdp, alpha, steps)
    return {"map": brute.map_q(mdp, alpha, steps), "marginal_map": mmap, "planning": plan}


def _library_q(mdp, backup, alpha, steps=None):
    sv = pc.soft_value_iteration(mdp, temperature=alpha, backup=backup, observed_steps=steps)
    if backup == "planning":
        q = sv.q[0].numpy().copy()
        q[mdp.action_prior.numpy() == 0] = -np.inf
        return q, sv
    return (mdp.log_action_prior + sv.q[0] / alpha).numpy(), sv


def _assert_matches_brute(mdp, alpha, steps=None):
    for backup, expect in _brute_qs(mdp, alpha, steps).items():
        got, sv = _library_q(mdp, backup, alpha, steps)
        np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-10, err_msg=backup)
        # V₀ is the best action's value, and the policy puts its mass on the best actions only
        best = expect.max(-1)
        scale = 1.0 if backup == "planning" else alpha
        np.testing.assert_allclose(sv.v[0].numpy() / scale, best, rtol=1e-10, atol=1e-10)
        pi0 = sv.policy[0].numpy()
        np.testing.assert_allclose(pi0.sum(-1), 1.0, atol=1e-12)
        assert (pi0[expect < best[:, None] - 1e-8] == 0).all(), backup
        assert (pi0[expect >= best[:, None] - 1e-12] > 0).all(), backup


TINY = [
    dict(seed=0),
    dict(seed=1, random_action_prior=True),
    dict(seed=2, reward_per_next_state=False),
    dict(seed=3, concentration=0.3, random_action_prior=True),
]


@pytest.mark.parametrize("kw", TINY)
def test_max_type_backups_equal_their_brute_force_definition(kw):
    _assert_matches_brute(pc.random_mdp(3, 2, 2, **kw), 0.7)


@pytest.mark.slow
def test_max_type_backups_equal_brute_force_at_three_steps():
    _assert_matches_brute(pc.random_mdp(3, 2, 3, seed=8, random_action_prior=True), 1.7)


def test_max_type_backups_with_observed_steps_and_forbidden_actions():
    mdp = pc.random_mdp(3, 2, 2, seed=5, concentration=0.3)
    P = mdp.transition.clone()
    P[0, 0] = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    prior = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.5, 0.5]], dtype=F64)
    mdp = mdp.replace(transition=P, action_prior=prior)
    _assert_matches_brute(mdp, 1.3, steps=[1])
    for backup in MAX_TYPES:
        sv = pc.soft_value_iteration(mdp, temperature=1.3, backup=backup)
        assert (sv.policy[:, 0, 1] == 0).all() and torch.isfinite(sv.v).all()


@given(
    seed=st.integers(0, 10_000),
    S=st.integers(2, 3),
    T=st.integers(1, 2),
    alpha=st.floats(0.2, 5.0),
    random_prior=st.booleans(),
    concentration=st.sampled_from([0.3, 1.0]),
)
def test_max_type_backups_on_random_mdps(seed, S, T, alpha, random_prior, concentration):
    mdp = pc.random_mdp(
        S, 2, T, seed=seed, random_action_prior=random_prior, concentration=concentration
    )
    _assert_matches_brute(mdp, alpha)


@pytest.mark.parametrize("seed", [0, 1])
def test_planning_is_hard_value_iteration_and_does_not_depend_on_alpha(seed):
    mdp = pc.random_mdp(6, 3, 12, seed=seed)
    sv = pc.soft_value_iteration(mdp, backup="planning")
    expect = brute.hard_value_iteration(mdp.transition.numpy(), mdp.reward.numpy(), 12)
    np.testing.assert_allclose(sv.q.numpy(), expect, rtol=1e-12, atol=1e-12)
    other = pc.soft_value_iteration(mdp, temperature=1e-3, backup="planning")
    assert torch.equal(sv.q, other.q) and torch.equal(sv.policy, other.policy)


def test_planning_is_the_zero_temperature_limit_of_the_expected_backup():
    mdp = pc.random_mdp(5, 3, 8, seed=4, random_action_prior=True)
    plan = pc.soft_value_iteration(mdp, backup="planning")
    for alpha in (1e-2, 1e-4):
        exp = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected")
        # |V_α − V₀| ≤ α·T·max_s log(1/p_min(s)) (each step's soft max is within α·log(1/p))
        bound = alpha * mdp.horizon * (-mdp.log_action_prior[mdp.action_prior > 0]).max()
        assert (exp.v - plan.v).abs().max() <= bound + 1e-12


def test_the_lottery_separates_the_types():
    """Buying (action 0) has E[r] < 0 but log E[exp r] > 0: only marginal MAP buys for sure."""
    lottery = pc.lottery_mdp()
    chosen = {b: pc.soft_value_iteration(lottery, backup=b).policy[0, 0] for b in ALL_TYPES}
    assert chosen["marginal_map"].tolist() == [1.0, 0.0]
    assert chosen["map"].tolist() == [0.0, 1.0]  # losing is the most likely outcome
    assert chosen["planning"].tolist() == [0.0, 1.0]
    assert 0.5 < chosen["optimistic"][0] < 0.6 and 0.2 < chosen["expected"][0] < 0.3


def test_ties_split_the_policy_evenly():
    """A deterministic chain where both actions at the goal are worth the same."""
    mdp = pc.chain_mdp(4, 5)
    for backup in MAX_TYPES:
        pi = pc.soft_value_iteration(mdp, backup=backup).policy
        assert pi[-1, 3].tolist() == [0.5, 0.5] or pi[-1, 3].tolist() == [0.0, 1.0]
        assert pi[0, 0].tolist() == [0.0, 1.0]  # move right, towards the goal


@pytest.mark.parametrize("backup", MAX_TYPES)
def test_float32_lane(backup):
    """float32 within c·T·eps₃₂·M of float64 (c = 4, as in tests/test_float32.py); same policy."""
    for make, alpha in (
        (lambda d: pc.random_mdp(8, 3, 15, seed=0, dtype=d), 0.1),
        (lambda d: pc.TabularMDP.from_gymnasium("FrozenLake-v1", 60, dtype=d), 1.0),
    ):
        sv64 = pc.soft_value_iteration(make(F64), temperature=alpha, backup=backup)
        sv32 = pc.soft_value_iteration(make(F32), temperature=alpha, backup=backup)
        assert sv32.q.dtype == F32 and sv32.policy.dtype == F32
        scale = 1.0 if backup == "planning" else alpha
        m = max(1.0, (sv64.v / scale).abs().max().item())
        tol = 4.0 * sv64.q.shape[0] * torch.finfo(F32).eps * m
        assert ((sv32.v.double() - sv64.v) / scale).abs().max() <= tol
        assert ((sv32.q.double() - sv64.q) / scale).abs().max() <= tol
        # the policy: the same argmax set wherever float64's runner-up is clear of float32's
        # tie tolerance; elsewhere float32 may call near-ties ties, but only those
        score = sv64.q / scale + (0.0 if backup == "planning" else make(F64).log_action_prior)
        if backup == "planning":
            score = score.masked_fill(make(F64).action_prior == 0, -torch.inf)
        gap = sv64.v[:-1, :, None] / scale - score  # ≥ 0, 0 on the argmax set
        tie_tol = 1024 * torch.finfo(F32).eps * (sv64.v[:-1, :, None] / scale).abs().clamp(min=1)
        near = gap <= 2 * (tie_tol + tol)
        clear = (near == (sv64.policy > 0)).all(-1)  # no near-tie in this (t, s)
        assert torch.equal(sv32.policy.double()[clear] > 0, sv64.policy[clear] > 0)
        torch.testing.assert_close(sv32.policy.double()[clear], sv64.policy[clear])
        assert ((sv32.policy > 0) <= near).all()
        assert clear.double().mean() > 0.7, clear.double().mean()


@pytest.mark.parametrize("backup", MAX_TYPES)
def test_gradients_match_finite_differences_where_the_maximiser_is_unique(backup):
    """q, v are differentiable wherever every max is attained once: autograd = central FD."""
    mdp = pc.random_mdp(3, 2, 3, seed=6, random_action_prior=True)
    logits = torch.randn(3, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))

    def v0(reward, logits):
        m = mdp.replace(reward=reward, transition=torch.softmax(logits, -1))
        return pc.soft_value_iteration(m, temperature=0.8, backup=backup).v[0]

    inputs = (mdp.reward.clone().requires_grad_(True), logits.requires_grad_(True))
    assert torch.autograd.gradcheck(v0, inputs, eps=1e-6, atol=1e-8)


def test_unknown_backup_is_a_value_error():
    with pytest.raises(ValueError, match="`backup` must be one of"):
        pc.soft_value_iteration(pc.lottery_mdp(), backup="mmap")
