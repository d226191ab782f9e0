"""Sparse dynamics: every exact routine agrees with the dense route to 1e-12 (float64).

The dense route is itself tested against brute force and Pyro's enumeration elsewhere; here
random sparse MDPs (hypothesis) and the gymnasium tables are run both ways, log p(O) is also
checked against brute-force enumeration, gradients against the dense autograd and central
finite differences (gradcheck), and posterior samples against the exact marginals.
"""

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

import pgm_control as pc
from pgm_control.backward import soft_policy_evaluation

import brute

TOL = dict(rtol=1e-12, atol=1e-12)


def sparse_pair(S, A, T, keep, seed, *, prior=False, per_next=True, scale=1.0):
    """(dense, sparse) versions of one random MDP with ``keep`` successors per (s, a)."""
    g = torch.Generator().manual_seed(seed)
    base = pc.random_mdp(
        S, A, T, seed=seed, random_action_prior=prior, reward_per_next_state=per_next,
        reward_scale=scale,
    )  # fmt: skip
    scores = torch.rand(S, A, S, generator=g)
    kth = scores.topk(keep, dim=-1).values[..., -1:]
    P = torch.where(scores >= kth, base.transition, torch.zeros_like(base.transition))
    P = P / P.sum(-1, keepdim=True)
    dense = base.replace(transition=P)
    r = dense.reward if per_next else dense.reward[..., 0]
    sparse = pc.TabularMDP(
        P.to_sparse(), r.to_sparse() if per_next else r, dense.initial, T, dense.action_prior
    )
    return dense, sparse


def densify(x):
    if isinstance(x, tuple):
        return tuple(densify(y) for y in x)
    if isinstance(x, torch.Tensor) and x.is_sparse:
        return x.to_dense()
    return x


def assert_same(a, b):
    a, b = densify(a), densify(b)
    if isinstance(a, tuple):
        for x, y in zip(a, b):
            if isinstance(x, torch.Tensor):
                assert_same(x, y)
        return
    torch.testing.assert_close(b, a, **TOL)


def all_routines(mdp, alpha, steps, pi, light=False):
    """Every exact routine's output; ``light`` leaves out the ones the random MDPs cover."""
    kw = dict(temperature=alpha, observed_steps=steps)
    out = {}
    for backup in ("optimistic", "expected", "map", "marginal_map", "planning"):
        out[f"svi_{backup}"] = tuple(pc.soft_value_iteration(mdp, backup=backup, **kw))[:3]
    out["log_evidence"] = pc.log_evidence(mdp, **kw)
    out["optimal_elbo"] = pc.optimal_elbo(mdp, **kw)
    out["forward"] = pc.log_forward_messages(mdp, **kw)
    out["marginals"] = pc.state_marginals(mdp, include_final=True, **kw)
    out["sa_marginals"] = pc.state_action_marginals(mdp, **kw)
    out["posterior_dynamics"] = pc.posterior_dynamics(mdp, **kw)
    out["policy_elbo"] = pc.policy_elbo(mdp, pi, **kw)
    out["elbo_terms"] = tuple(pc.elbo_terms(mdp, pi, **kw))
    if light:
        return out
    out["trajectory_elbo"] = pc.trajectory_elbo(mdp, torch.log(pi), **kw)
    out["spe"] = tuple(soft_policy_evaluation(mdp, pi, **kw))[:3]
    out["psd"] = pc.policy_state_distribution(mdp, pi)
    lean = pc.lean_posterior(mdp, **kw)
    out["lean"] = (lean.log_evidence, lean.values, lean.state_marginals)
    values = pc.soft_value_iteration(mdp, **kw).v
    out["policy_at"] = pc.soft_policy_at(mdp, values, mdp.horizon - 1, **kw)
    if steps is None:
        out["kl"] = pc.posterior_kl(mdp, pi, temperature=alpha)
        disc = pc.discounted_soft_value_iteration(mdp, discount=0.8, temperature=alpha)
        out["discounted"] = tuple(disc)[:3]
    return out


@settings(max_examples=25, deadline=None)
@given(
    S=st.integers(2, 7),
    A=st.integers(1, 3),
    T=st.integers(1, 5),
    keep=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    alpha=st.sampled_from([0.05, 0.5, 1.0, 7.0]),
    prior=st.booleans(),
    per_next=st.booleans(),
    steps=st.sampled_from([None, "last", "first"]),
)
def test_sparse_matches_dense_on_random_mdps(S, A, T, keep, seed, alpha, prior, per_next, steps):
    dense, sparse = sparse_pair(S, A, T, min(keep, S), seed, prior=prior, per_next=per_next)
    assert sparse.is_sparse and not dense.is_sparse
    steps = {None: None, "last": [T - 1], "first": [0]}[steps]
    g = torch.Generator().manual_seed(seed)
    pi = torch.softmax(torch.randn(T, S, A, generator=g, dtype=torch.float64), -1)
    want, got = all_routines(dense, alpha, steps, pi), all_routines(sparse, alpha, steps, pi)
    for name in want:
        assert_same(want[name], got[name]), name


def test_sparse_underflow_fallback_matches_dense():
    """Rewards spanning thousands of nats: the exact-logsumexp fallback rows of both layouts."""
    dense, sparse = sparse_pair(6, 3, 7, 3, 3)
    r = dense.reward.clone()
    r[0, 0] = -5000.0
    r[2, 1] = -3000.0
    r[4, 2] = 2000.0
    dense = dense.replace(reward=r)
    sparse = sparse.replace(reward=(r * (dense.transition > 0)).to_sparse())
    # α ≥ 1 keeps |V/α| ≲ 5e3 nats, where 1e-12 is still above the rounding of log αₜ + Vₜ
    for alpha in (1.0, 3.0):
        assert_same(
            pc.log_evidence(dense, temperature=alpha), pc.log_evidence(sparse, temperature=alpha)
        )
        assert_same(
            pc.state_marginals(dense, temperature=alpha),
            pc.state_marginals(sparse, temperature=alpha),
        )


@pytest.mark.parametrize(
    "env_id, kw, T",
    [
        ("Taxi-v4", {}, 4),
        ("FrozenLake-v1", {"map_name": "8x8"}, 20),
        ("CliffWalking-v1", {"is_slippery": True}, 15),
    ],
)
def test_gymnasium_tables_sparse_matches_dense(env_id, kw, T):
    dense = pc.TabularMDP.from_gymnasium(env_id, T, sparse=False, **kw)
    sparse = pc.TabularMDP.from_gymnasium(env_id, T, sparse=True, **kw)
    assert sparse.is_sparse and not dense.is_sparse
    assert sparse.transition._nnz() == int((dense.transition > 0).sum())
    torch.testing.assert_close(sparse.transition.to_dense(), dense.transition, rtol=0, atol=0)
    torch.testing.assert_close(
        sparse.reward.to_dense(), dense.reward * (dense.transition > 0), rtol=0, atol=0
    )
    S, A = dense.num_states, dense.num_actions
    pi = torch.softmax(torch.randn(T, S, A, dtype=torch.float64), -1)
    light = env_id == "Taxi-v4"  # dense Taxi is the slow side: the core routines only
    want = all_routines(dense, 0.3, None, pi, light)
    got = all_routines(sparse, 0.3, None, pi, light)
    for name in want:
        assert_same(want[name], got[name]), name


def test_from_gymnasium_keeps_the_classic_envs_dense():
    for env_id, kw in [("Taxi-v4", {}), ("FrozenLake-v1", {"map_name": "8x8"})]:
        assert not pc.TabularMDP.from_gymnasium(env_id, 3, **kw).is_sparse


def test_sparse_log_evidence_matches_brute_force():
    dense, sparse = sparse_pair(3, 2, 3, 2, 7, prior=True)
    for steps in (None, [1]):
        want = brute.log_evidence(dense, 0.7, observed_steps=steps)
        got = pc.log_evidence(sparse, temperature=0.7, observed_steps=steps)
        assert abs(got.item() - want) < 1e-12


def test_sparse_gradients_gradcheck_and_match_dense():
    """Autograd through the sparse routines: central differences and the dense gradient."""
    dense, sparse = sparse_pair(3, 2, 2, 2, 11)
    idx = sparse.transition.indices()
    S, A = 3, 2
    pi = torch.softmax(torch.randn(2, S, A, dtype=torch.float64), -1)

    def build(r_vals, logits, layout):
        # P by a softmax over each row's support (stays normalised under perturbation)
        row = idx[0] * A + idx[1]
        e = torch.exp(logits - logits.detach().max())
        z = torch.zeros(S * A, dtype=e.dtype).index_add(0, row, e)
        p = e / z[row]
        P = torch.sparse_coo_tensor(idx, p, (S, A, S), check_invariants=True).coalesce()
        R = torch.sparse_coo_tensor(idx, r_vals, (S, A, S), check_invariants=True).coalesce()
        if layout == "dense":
            P, R = P.to_dense(), R.to_dense()
        return pc.TabularMDP(P, R, dense.initial, 2)

    def outputs(r_vals, logits, layout="sparse"):
        m = build(r_vals, logits, layout)
        return (
            pc.log_evidence(m, temperature=0.6),
            pc.optimal_elbo(m),
            pc.state_marginals(m).sum(0)[1],
            pc.policy_elbo(m, pi),
            pc.soft_value_iteration(m, backup="expected").policy[0, 2, 1],
            pc.discounted_soft_value_iteration(m, discount=0.5).v[2],
        )

    r0 = sparse.reward.values().clone().requires_grad_()
    l0 = torch.randn(idx.shape[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(outputs, (r0, l0))
    for k in range(6):
        g_sparse = torch.autograd.grad(outputs(r0, l0)[k], (r0, l0))
        g_dense = torch.autograd.grad(outputs(r0, l0, "dense")[k], (r0, l0))
        for a, b in zip(g_sparse, g_dense):
            torch.testing.assert_close(a, b, **TOL)


def test_sparse_posterior_samples_follow_the_exact_marginals():
    """Monte Carlo: sampled state frequencies vs p(sₜ|O); every step stays on P's support."""
    _, sparse = sparse_pair(5, 3, 4, 2, 5)
    tr = pc.sample_posterior_trajectories(sparse, 40_000, temperature=0.8, seed=2)
    exact = pc.state_marginals(sparse, temperature=0.8, include_final=True)
    freq = torch.nn.functional.one_hot(tr.states, 5).double().mean(0)
    assert (freq - exact).abs().max() < 0.015
    P = sparse.transition.to_dense()
    assert (P[tr.states[:, :-1], tr.actions, tr.states[:, 1:]] > 0).all()
    R = sparse.reward.to_dense()
    torch.testing.assert_close(tr.rewards, R[tr.states[:, :-1], tr.actions, tr.states[:, 1:]])
    pi = pc.soft_value_iteration(sparse, backup="expected").policy
    roll = pc.sample_trajectories(sparse, pi, 40_000, seed=3)
    d = pc.policy_state_distribution(sparse, pi)
    assert (torch.nn.functional.one_hot(roll.states, 5).double().mean(0) - d).abs().max() < 0.015


def test_sparse_float32_is_close_to_float64():
    _, sparse = sparse_pair(6, 3, 8, 2, 4)
    s32 = sparse.to(dtype=torch.float32)
    assert s32.is_sparse and s32.float_dtype == torch.float32
    le32, le64 = pc.log_evidence(s32), pc.log_evidence(sparse)
    assert le32.dtype == torch.float32
    assert abs(le32.item() - le64.item()) < 1e-4
    m32 = pc.state_marginals(s32)
    assert (m32.double() - pc.state_marginals(sparse)).abs().max() < 1e-5


def test_sparse_mdp_pickles_and_replaces():
    import pickle

    _, sparse = sparse_pair(5, 2, 4, 2, 1)
    back = pickle.loads(pickle.dumps(sparse))
    assert back.is_sparse
    assert_same(pc.log_evidence(sparse), pc.log_evidence(back))
    longer = sparse.replace(horizon=6)
    assert longer.is_sparse and longer.horizon == 6
    assert not sparse.to_dense().is_sparse


# ---------------------------------------------------------------------------- errors
def _coo(indices, values, shape):
    return torch.sparse_coo_tensor(
        torch.tensor(indices), torch.tensor(values, dtype=torch.float64), shape,
        check_invariants=False,
    )  # fmt: skip


def test_sparse_rows_must_sum_to_one():
    P = _coo([[0, 0, 1], [0, 0, 0], [0, 1, 1]], [0.5, 0.3, 1.0], (2, 1, 2))
    with pytest.raises(ValueError, match=r"`transition` rows must sum to 1.*\(0, 0\) sums to 0.8"):
        pc.TabularMDP(P, torch.zeros(2, 1), [1.0, 0.0], 2)
    P = _coo([[0], [0], [0]], [1.0], (2, 1, 2))  # state 1 has no successor
    with pytest.raises(ValueError, match=r"row \(s, a\) = \(1, 0\) sums to 0"):
        pc.TabularMDP(P, torch.zeros(2, 1), [1.0, 0.0], 2)


def test_sparse_duplicate_successors_are_refused():
    P = _coo([[0, 0, 1], [0, 0, 0], [1, 1, 1]], [0.5, 0.5, 1.0], (2, 1, 2))
    with pytest.raises(
        ValueError, match=r"`transition` lists the successor.*\(0, 0, 1\) more than once"
    ):
        pc.TabularMDP(P, torch.zeros(2, 1), [1.0, 0.0], 2)
    ok = _coo([[0, 1], [0, 0], [1, 1]], [1.0, 1.0], (2, 1, 2))
    R = _coo([[0, 0], [0, 0], [1, 1]], [1.0, 2.0], (2, 1, 2))
    with pytest.raises(ValueError, match="`reward` lists the successor"):
        pc.TabularMDP(ok, R, [1.0, 0.0], 2)


def test_sparse_out_of_range_indices_are_refused():
    P = _coo([[0, 1], [0, 0], [1, 2]], [1.0, 1.0], (2, 1, 3))
    with pytest.raises(ValueError, match="`transition` must have shape"):
        pc.TabularMDP(P, torch.zeros(2, 1), [1.0, 0.0], 2)
    P = _coo([[0, 1], [0, 0], [1, 5]], [1.0, 1.0], (2, 1, 2))
    with pytest.raises(ValueError, match=r"`transition` has an out-of-range index \(1, 0, 5\)"):
        pc.TabularMDP(P, torch.zeros(2, 1), [1.0, 0.0], 2)
    ok = _coo([[0, 1], [0, 0], [1, 1]], [1.0, 1.0], (2, 1, 2))
    R = _coo([[0], [3], [1]], [1.0], (2, 1, 2))
    with pytest.raises(ValueError, match="`reward` has an out-of-range index"):
        pc.TabularMDP(ok, R, [1.0, 0.0], 2)
    with pytest.raises(ValueError, match=r"`reward` must have shape \(S, A\)"):
        pc.TabularMDP(ok, torch.zeros(3), [1.0, 0.0], 2)


def test_sparse_bad_values_are_refused():
    P = _coo([[0, 1], [0, 0], [1, 1]], [1.0, float("nan")], (2, 1, 2))
    with pytest.raises(ValueError, match="`transition` contains NaN"):
        pc.TabularMDP(P, torch.zeros(2, 1), [1.0, 0.0], 2)
    P = _coo([[0, 0, 1], [0, 0, 0], [0, 1, 1]], [1.5, -0.5, 1.0], (2, 1, 2))
    with pytest.raises(ValueError, match="`transition` has a negative probability"):
        pc.TabularMDP(P, torch.zeros(2, 1), [1.0, 0.0], 2)
    ok = _coo([[0, 1], [0, 0], [1, 1]], [1.0, 1.0], (2, 1, 2))
    with pytest.raises(ValueError, match="`reward` contains inf"):
        pc.TabularMDP(ok, torch.tensor([[-np.inf], [0.0]]), [1.0, 0.0], 2)


def test_dense_only_views_say_so_on_sparse():
    _, sparse = sparse_pair(3, 2, 2, 2, 0)
    with pytest.raises(TypeError, match="sparse dynamics"):
        _ = sparse.log_transition
    T, S, A = 2, 3, 2
    log_pi = torch.log_softmax(torch.zeros(T, S, A, dtype=torch.float64), -1)
    log_qd = torch.log_softmax(torch.zeros(T, S, A, S, dtype=torch.float64), -1)
    with pytest.raises(TypeError, match="`log_dynamics`.*sparse"):
        pc.trajectory_elbo(sparse, log_pi, log_dynamics=log_qd)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("steps", [None, [2]])
def test_lean_posterior_matches_the_full_routines(layout, steps):
    """The posterior-chain forward pass vs αₜ·βₜ; the recomputed πₜ vs the stored one."""
    dense, sparse = sparse_pair(6, 3, 5, 2, 9, prior=True)
    r = dense.reward.clone()
    r[1, 0] = -2000.0  # rows whose backup sum underflows: the exact fallback
    dense = dense.replace(reward=r)
    sparse = sparse.replace(reward=(r * (dense.transition > 0)).to_sparse())
    mdp = dense if layout == "dense" else sparse
    kw = dict(temperature=0.7, observed_steps=steps)
    lean = pc.lean_posterior(mdp, **kw)
    torch.testing.assert_close(lean.log_evidence, pc.log_evidence(dense, **kw), **TOL)
    torch.testing.assert_close(
        lean.state_marginals, pc.state_marginals(dense, include_final=True, **kw), **TOL
    )
    sv = pc.soft_value_iteration(dense, **kw)
    torch.testing.assert_close(lean.values, sv.v, **TOL)
    for backup in ("optimistic", "expected", "map", "marginal_map"):
        sv = pc.soft_value_iteration(dense, backup=backup, **kw)
        if backup in ("map", "marginal_map"):  # πₜ of a max backup is its argmax set
            continue
        for t in range(5):
            pi_t = pc.soft_policy_at(mdp, sv.v, t, backup=backup, **kw)
            torch.testing.assert_close(pi_t, sv.policy[t], **TOL)
    with pytest.raises(ValueError, match="`t` must be"):
        pc.soft_policy_at(mdp, sv.v, 5)
    with pytest.raises(ValueError, match="`values` must be"):
        pc.soft_policy_at(mdp, sv.v[1:], 0)
    with pytest.raises(ValueError, match="`backup` must be"):
        pc.soft_policy_at(mdp, sv.v, 0, backup="greedy")


def test_exact_elbo_route_on_sparse_dynamics():
    """The exact SVI objective on sparse P: at the expected-backup policy policy_elbo equals
    optimal_elbo and its gradient in the logits vanishes (the fixed point); a sampling
    estimator's fit says what to do instead of failing deep inside Pyro."""
    _, sparse = sparse_pair(5, 3, 3, 2, 6)
    best = pc.soft_value_iteration(sparse, backup="expected").policy
    logits = torch.log(best).detach().requires_grad_()
    elbo = pc.policy_elbo(sparse, log_policy=torch.log_softmax(logits, -1))
    (grad,) = torch.autograd.grad(elbo, logits)
    assert abs(elbo.item() - pc.optimal_elbo(sparse).item()) < 1e-12
    assert grad.abs().max() < 1e-12
    worse = pc.policy_elbo(sparse, log_policy=torch.log_softmax(logits.detach() * 0.5, -1))
    assert worse < elbo - 1e-3
    with pytest.raises(TypeError, match="`mdp` has sparse dynamics.*policy_elbo"):
        pc.fit(sparse, estimator="score", steps=2, progress=False)


@pytest.mark.parametrize("sparse", [False, True])
def test_with_reward_swaps_the_reward_of_both_layouts(sparse):
    """`with_reward` (MaxEnt IRL's inner loop) equals a validated `replace`, dense or sparse,
    and keeps the gradient with respect to the new reward."""
    grid = pc.gridworld(4, 5, slip=0.2, seed=1, horizon=6)
    mdp = grid if sparse else grid.to_dense()
    g = torch.Generator().manual_seed(0)
    S, A = mdp.num_states, mdp.num_actions
    r = torch.randn(S, A, S, dtype=torch.float64, generator=g, requires_grad=True)
    swapped = mdp.with_reward(r)
    assert swapped.is_sparse == sparse and swapped.reward.layout == mdp.reward.layout
    reference = grid.to_dense().replace(reward=r.detach())
    for fn in (pc.log_evidence, pc.optimal_elbo):
        got, want = fn(swapped, temperature=0.7), fn(reference, temperature=0.7)
        assert torch.allclose(got, want, rtol=0, atol=1e-12)
    pc.log_evidence(swapped, temperature=0.7).backward()
    assert r.grad is not None and torch.isfinite(r.grad).all()
    assert pc.log_evidence(mdp, temperature=0.7) != pc.log_evidence(swapped, temperature=0.7)
    with pytest.raises(ValueError, match="`reward` must have shape"):
        mdp.with_reward(torch.zeros(S, A, dtype=torch.float64))


def test_fit_with_the_exact_estimator_runs_on_sparse_dynamics():
    """The exact SVI route (library families, which read their tables without sampling s')
    gives the dense route's ELBO, gap and policy; the sampling estimators and a family that
    learns the dynamics are refused with a pointer."""
    dense, sparse = sparse_pair(12, 3, 6, 3, 0)
    assert sparse.is_sparse and not dense.is_sparse
    for guide in ("tabular_time_varying", "tabular"):
        got = pc.fit(sparse, guide, temperature=0.7, progress=False, steps=40)
        want = pc.fit(dense, guide, temperature=0.7, progress=False, steps=40)
        assert got.exact_elbo == pytest.approx(want.exact_elbo, abs=1e-12)
        assert got.gap == pytest.approx(want.gap, abs=1e-12)
        assert torch.allclose(got.policy, want.policy, rtol=0, atol=1e-12)
        assert pc.exact_elbo(got.guide, sparse, temperature=0.7).item() == pytest.approx(
            got.exact_elbo, abs=1e-12
        )
    assert pc.fit(sparse, temperature=0.7, progress=False, steps=10).gap < 1e-12
    with pytest.raises(TypeError, match="sparse dynamics"):
        pc.fit(sparse, "tabular", estimator="score", progress=False, steps=1)
    with pytest.raises(TypeError, match="sparse"):
        pc.fit(sparse, "full_posterior", progress=False, steps=1)
