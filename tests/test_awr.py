"""AWR held to exact answers: the M-step's closed form on a tabular MDP, TD(λ)'s forward view."""

import pickle

import numpy as np
import pytest
import torch

from pgm_control.awr import AWR, awr_weights, td_lambda_returns, weighted_log_likelihood
from pgm_control.backward import soft_policy_evaluation
from pgm_control.mdp import random_mdp


def _exact_advantage(mdp, pi_old, alpha):
    """A^{π_old}(s,a) at t = 0: soft policy evaluation of π_old with the prior π_old (the KL
    term vanishes along π_old, so Q and V are the plain Q^π_old and V^π_old = E_π_old Q)."""
    res = soft_policy_evaluation(mdp.replace(action_prior=pi_old), pi_old, temperature=alpha)
    return res.q[0] - res.v[0][:, None]


def _m_step(pi_old, advantages, alpha, max_weight, dtype):
    """Weighted maximum likelihood of a tabular softmax policy, to convergence, on the exact
    expectation: every (s, a) once, weighted by d(s)·π_old(a|s)·w(s,a)."""
    S, A = pi_old.shape
    d = torch.linspace(1.0, 2.0, S, dtype=dtype)  # any state distribution with full support
    states = torch.arange(S).repeat_interleave(A)
    actions = torch.arange(A).repeat(S)
    w = awr_weights(advantages, temperature=alpha, max_weight=max_weight)
    weights = (d[:, None] * pi_old * w).reshape(-1)
    logits = torch.zeros(S, A, dtype=dtype, requires_grad=True)
    opt = torch.optim.LBFGS([logits], lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=0, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        log_pi = torch.log_softmax(logits, -1)[states]
        loss = -weighted_log_likelihood(log_pi, actions, weights)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return torch.softmax(logits.detach(), -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_weight", [None, 2.0])
def test_m_step_with_exact_advantages_is_the_closed_form_kl_update(dtype, max_weight):
    alpha = 0.7
    mdp = random_mdp(4, 3, horizon=5, seed=2, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    pi_old = torch.softmax(torch.randn(4, 3, generator=g, dtype=torch.float64), -1).to(dtype)
    adv = _exact_advantage(mdp, pi_old, alpha)
    # sanity of the exact advantage: E_{π_old}[A] = 0
    assert (pi_old * adv).sum(-1).abs().max().item() < 100 * torch.finfo(dtype).eps
    fitted = _m_step(pi_old, adv, alpha, max_weight, dtype)
    w = torch.exp(adv / alpha)
    if max_weight is not None:
        w = w.clamp(max=max_weight)
        assert (torch.exp(adv / alpha) > max_weight).any()  # the clip is active here
    closed = pi_old * w / (pi_old * w).sum(-1, keepdim=True)  # π_new ∝ π_old·exp(A/α)
    # an optimiser locates a minimum to ~sqrt(eps) (the objective is flat to second order):
    # sqrt(eps32) ≈ 3.5e-4, sqrt(eps64) ≈ 1.5e-8
    tol = 1e-3 if dtype == torch.float32 else 1e-7
    assert (fitted - closed).abs().max().item() < tol


def test_td_lambda_returns_match_their_forward_view():
    g = torch.Generator().manual_seed(1)
    n, gamma = 7, 0.9
    r = torch.randn(n, generator=g, dtype=torch.float64)
    v = torch.randn(n, generator=g, dtype=torch.float64)  # V(s_{t+1})
    none = torch.zeros(n, dtype=torch.float64)
    cut = torch.zeros(n, dtype=torch.bool)
    cut[-1] = True
    for lam in (0.0, 0.5, 1.0):
        got = td_lambda_returns(r, v, none, cut, discount=gamma, lam=lam)
        for t in range(n):
            # n-step returns G⁽ᵏ⁾ = Σ_{j<k} γʲ r_{t+j} + γᵏ V(s_{t+k}), k = 1 .. n − t
            steps = n - t
            gk = [sum(gamma**j * r[t + j] for j in range(k)) + gamma**k * v[t + k - 1]
                  for k in range(1, steps + 1)]  # fmt: skip
            lam_pow = [lam ** (k - 1) for k in range(1, steps)]
            forward = (1 - lam) * sum(p * x for p, x in zip(lam_pow, gk[:-1]))
            forward = forward + lam ** (steps - 1) * gk[-1]
            assert abs(got[t].item() - float(forward)) < 1e-12
    # termination stops the bootstrap; a truncation (cut) bootstraps from V(s')
    term = torch.zeros(n, dtype=torch.float64)
    term[2] = 1.0
    cut[4] = True
    got = td_lambda_returns(r, v, term, cut, discount=gamma, lam=1.0)
    assert abs(got[2].item() - r[2].item()) < 1e-12
    assert abs(got[1].item() - (r[1] + gamma * r[2]).item()) < 1e-12
    assert abs(got[4].item() - (r[4] + gamma * v[4]).item()) < 1e-12
    assert abs(got[3].item() - (r[3] + gamma * r[4] + gamma**2 * v[4]).item()) < 1e-12


SMALL = dict(steps_per_iteration=100, buffer_size=300, batch_size=32, value_steps=5,
             policy_steps=5, net_arch=(16,), num_threads=1, progress=False)  # fmt: skip


def test_awr_runs_reproducibly_leaves_global_rng_and_saves(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    before_t, before_np = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    a, b = AWR("CartPole-v1", seed=5, **SMALL), AWR("CartPole-v1", seed=5, **SMALL)
    a.learn(400), b.learn(400)
    assert all(
        torch.equal(x, y) for x, y in zip(a.policy_net.parameters(), b.policy_net.parameters())
    )
    assert torch.equal(torch.random.get_rng_state(), before_t)
    assert np.array_equal(np.random.get_state()[1], before_np)
    assert a.iterations == 4 and a.data["a"].shape == (300,)
    assert {"value_loss", "policy_loss"} <= set(a.history.losses)
    a.save(tmp_path / "awr.pt")
    c = AWR.load(tmp_path / "awr.pt")
    assert c.hyperparameters == a.hyperparameters and c.iterations == 4
    obs = np.zeros(4, dtype=np.float32)
    assert c.predict(obs, deterministic=True)[0] == int(a.policy(obs).argmax())
    assert torch.allclose(c.policy(obs).sum(), torch.tensor(1.0))
    pickle.loads(pickle.dumps(c.history))


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="Discrete action space.*SAC"):
        AWR("Pendulum-v1")
    with pytest.raises(ValueError, match="temperature"):
        AWR("CartPole-v1", -1.0)
    with pytest.raises(ValueError, match="discount"):
        AWR("CartPole-v1", discount=1.5)
    with pytest.raises(ValueError, match="lam"):
        AWR("CartPole-v1", lam=2.0)
    with pytest.raises(ValueError, match="total_timesteps"):
        AWR("CartPole-v1", progress=False).learn(0)
