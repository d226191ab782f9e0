"""Soft DQN held to exact answers: the target's closed form, and soft value iteration's Q."""

import copy
import math
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgm_control.backward import discounted_soft_value_iteration
from pgm_control.mdp import TabularMDP, random_mdp
from pgm_control.soft_dqn import (
    SoftDQN,
    munchausen_reward,
    soft_double_q_target,
    soft_q_target,
    soft_value,
)


class TabularEnv(gym.Env):
    """A TabularMDP as a gymnasium env: uniform start state, s' ~ P(·|s,a), r(s,a,s'), a time
    limit of ``length`` steps (truncation, never termination: the discounted problem)."""

    def __init__(self, mdp, length=5):
        self.P = mdp.transition.double().numpy()
        self.R = mdp.reward.double().numpy()
        self.observation_space = gym.spaces.Discrete(mdp.num_states)
        self.action_space = gym.spaces.Discrete(mdp.num_actions)
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.s = 0, int(self.np_random.integers(self.P.shape[0]))
        return self.s, {}

    def step(self, a):
        s2 = int(self.np_random.choice(self.P.shape[0], p=self.P[self.s, a]))
        r, self.s, self.t = float(self.R[self.s, a, s2]), s2, self.t + 1
        return s2, r, False, self.t >= self.length, {}


# a linear Q on one-hot observations is a table; each burst of 30 Adam steps regresses the
# table onto fixed targets (an exact soft-VI sweep once converged), ε = 0.5 visits every (s,a)
TABULAR = dict(
    net_arch=(), loss="mse", learning_rate=0.1, batch_size=64, learning_starts=200,
    train_freq=10, gradient_steps=30, target_update_interval=10, exploration_initial_eps=0.5,
    exploration_final_eps=0.5, max_grad_norm=None, num_threads=1, progress=False,
)  # fmt: skip


def _learned_q(algo, n):
    return algo.q_values(np.arange(n)).detach().double()


def test_target_equals_closed_form_on_a_hand_made_batch():
    r = torch.tensor([1.0, -0.5, 2.0, 0.0], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0], [2.0, -1.0], [5.0, 5.0], [-3.0, 4.0]], dtype=torch.float64)
    term = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    alpha, gamma = 0.5, 0.9
    y = soft_q_target(r, q, term, temperature=alpha, discount=gamma)
    by_hand = [
        1.0 + 0.9 * 0.5 * math.log(0.5 * math.exp(0.0) + 0.5 * math.exp(2.0)),
        -0.5 + 0.9 * 0.5 * math.log(0.5 * math.exp(4.0) + 0.5 * math.exp(-2.0)),
        2.0,  # terminated: no bootstrap
        0.0 + 0.9 * 0.5 * math.log(0.5 * math.exp(-6.0) + 0.5 * math.exp(8.0)),
    ]
    assert torch.allclose(y, torch.tensor(by_hand, dtype=torch.float64), rtol=0, atol=1e-12)
    # a non-uniform prior p = (0.2, 0.8) and float32
    log_p = torch.log(torch.tensor([0.2, 0.8]))
    y32 = soft_q_target(r.float(), q.float(), term.float(), temperature=1.0, discount=1.0,
                        log_action_prior=log_p)  # fmt: skip
    expect = 1.0 + math.log(0.2 * math.exp(0.0) + 0.8 * math.exp(1.0))
    assert y32.dtype == torch.float32 and abs(y32[0].item() - expect) < 1e-6
    # α → 0: the hard max of DQN, shifted by α·log p(argmax) (uniform: −α·log 2; a tie: 0)
    v = soft_value(q, temperature=1e-4)
    shift = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64) * 1e-4 * math.log(2)
    assert torch.allclose(v, q.max(-1).values - shift, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="discount"):
        soft_q_target(r, q, term, temperature=1.0, discount=1.5)
    with pytest.raises(ValueError, match="temperature"):
        soft_value(q, temperature=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_converges_to_soft_value_iteration_on_a_deterministic_mdp(dtype):
    # deterministic dynamics: the buffer's Bellman operator is the true one, so the only error
    # is the optimisation's: ~110 target copies of a γ = 0.9 contraction, 0.9^110·max|Q| ≈ 5e-5
    mdp = random_mdp(5, 3, seed=1, deterministic=True)
    ref = discounted_soft_value_iteration(mdp, discount=0.9, temperature=1.0)
    algo = SoftDQN(TabularEnv(mdp), 1.0, discount=0.9, dtype=dtype, seed=0, **TABULAR)
    algo.learn(1000)
    for group in algo.optimizer.param_groups:  # a smaller step to settle Adam's jitter
        group["lr"] = 0.01
    algo.learn(300)
    q = _learned_q(algo, 5)
    assert q.dtype == torch.float64 or dtype == torch.float32
    assert (q - ref.q).abs().max().item() < 2e-4
    pi = algo.policy(np.arange(5)).double()
    assert torch.allclose(pi, ref.policy, atol=1e-3)
    assert [algo.predict(s, deterministic=True)[0] for s in range(5)] == ref.q.argmax(-1).tolist()


@pytest.mark.slow
def test_stochastic_mdp_reaches_soft_vi_of_the_data_and_the_truth_within_the_sampling_bound():
    gamma, alpha = 0.8, 0.5
    mdp = random_mdp(4, 2, seed=3)
    algo = SoftDQN(TabularEnv(mdp), alpha, discount=gamma, seed=1, **TABULAR)
    algo.learn(1000)
    # fitted soft Q iteration on the frozen buffer, with large batches and a decreasing step,
    # against the exact soft VI of the empirical MDP the buffer defines (P̂ from the counts)
    algo.batch_size, algo.gradient_steps = 1024, 60
    for lr in (0.01, 0.001):
        for group in algo.optimizer.param_groups:
            group["lr"] = lr
        for _ in range(12):
            algo.target_net.load_state_dict(algo.q_net.state_dict())
            algo._train_burst()
    b = algo.buffer
    counts = torch.zeros(4, 2, 4, dtype=torch.float64)
    counts.index_put_(
        (b.observations[: b.size], b.actions[: b.size], b.next_observations[: b.size]),
        torch.ones(b.size, dtype=torch.float64), accumulate=True,
    )  # fmt: skip
    n_sa = counts.sum(-1)
    assert n_sa.min() > 50  # every (s, a) seen
    p_hat = counts / n_sa[..., None]
    empirical = TabularMDP(p_hat, mdp.reward, mdp.initial, 1)
    q_hat = discounted_soft_value_iteration(empirical, discount=gamma, temperature=alpha).q
    q = _learned_q(algo, 4)
    # the noise of 1024-sample batches at Adam's last step 1e-3: well below 0.01
    assert (q - q_hat).abs().max().item() < 0.01
    # simulation lemma: |Q̂ − Q| ≤ max_sa |Σ_s' (P̂ − P)(r + γV)| / (1 − γ), with the true V
    ref = discounted_soft_value_iteration(mdp, discount=gamma, temperature=alpha)
    target = mdp.reward + gamma * ref.v[None, None, :]
    bound = ((p_hat - mdp.transition) * target).sum(-1).abs().max().item() / (1 - gamma)
    assert (q - ref.q).abs().max().item() <= bound + 0.01


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="Discrete action space.*SAC"):
        SoftDQN("Pendulum-v1")
    with pytest.raises(ValueError, match="temperature"):
        SoftDQN("CartPole-v1", 0.0)
    with pytest.raises(ValueError, match="discount"):
        SoftDQN("CartPole-v1", discount=0.0)
    with pytest.raises(ValueError, match="loss"):
        SoftDQN("CartPole-v1", loss="l1")
    with pytest.raises(ValueError, match="action_prior"):
        SoftDQN("CartPole-v1", action_prior=[0.5, 0.6])
    with pytest.raises(ValueError, match="total_timesteps"):
        SoftDQN("CartPole-v1", progress=False).learn(0)


SMALL = dict(net_arch=(16,), learning_starts=50, train_freq=8, gradient_steps=4, batch_size=16,
             target_update_interval=20, num_threads=1, progress=False)  # fmt: skip


def test_seeded_reproducible_global_rng_untouched_and_save_load_continues(tmp_path):
    torch.manual_seed(11)
    np.random.seed(11)
    before_t, before_np = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    a = SoftDQN("CartPole-v1", 0.1, seed=4, **SMALL)
    b = SoftDQN("CartPole-v1", 0.1, seed=4, **SMALL)
    a.learn(300)
    b.learn(300)
    assert all(torch.equal(x, y) for x, y in zip(a.q_net.parameters(), b.q_net.parameters()))
    assert torch.equal(torch.random.get_rng_state(), before_t)
    assert np.array_equal(np.random.get_state()[1], before_np)
    assert a.num_updates == (300 - 56) // 8 * 4 + 4 and "td_loss" in a.history.losses
    a.save(tmp_path / "dqn.pt")
    c = SoftDQN.load(tmp_path / "dqn.pt")
    assert c.hyperparameters == a.hyperparameters and len(c.buffer) == 300
    assert all(torch.equal(x, y) for x, y in zip(a.q_net.parameters(), c.q_net.parameters()))
    # same buffer, optimiser and streams: the same next burst of updates
    a._train_burst(), c._train_burst()
    assert all(torch.equal(x, y) for x, y in zip(a.q_net.parameters(), c.q_net.parameters()))
    pickle.loads(pickle.dumps(c.history))
    obs = np.zeros(4, dtype=np.float32)
    action, state = c.predict(obs, deterministic=True)
    assert state is None and action == int(c.q_values(obs).argmax())


def test_double_q_target_equals_closed_form_on_a_hand_made_batch():
    r = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    q_bar = torch.tensor([[0.0, 1.0], [2.0, -1.0], [3.0, 3.0]], dtype=torch.float64)
    q_on = torch.tensor([[1.0, 0.0], [0.0, 0.0], [5.0, 1.0]], dtype=torch.float64)
    term = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    alpha, gamma = 0.5, 0.9
    y = soft_double_q_target(r, q_bar, q_on, term, temperature=alpha, discount=gamma)

    def by_hand(r_i, qb, qo):
        z = 0.5 * math.exp(qo[0] / alpha) + 0.5 * math.exp(qo[1] / alpha)
        pi = [0.5 * math.exp(qo[k] / alpha) / z for k in range(2)]
        v = sum(pi[k] * (qb[k] - alpha * math.log(pi[k] / 0.5)) for k in range(2))
        return r_i + gamma * v

    expect = [by_hand(1.0, [0.0, 1.0], [1.0, 0.0]), by_hand(-0.5, [2.0, -1.0], [0.0, 0.0]), 2.0]
    assert torch.allclose(y, torch.tensor(expect, dtype=torch.float64), rtol=0, atol=1e-12)
    # row 1: the online net is indifferent, π = uniform: y = r + γ·mean Q̄ (no entropy term)
    assert abs(y[1].item() - (-0.5 + 0.9 * 0.5)) < 1e-12
    # online = target: the soft max itself (its variational form, attained at π ∝ p·exp(Q/α));
    # otherwise below it (π_φ is not Q̄'s maximiser)
    g = torch.Generator().manual_seed(0)
    qa, qb = torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g)
    rr, tt = torch.randn(50, generator=g), torch.zeros(50)
    log_p = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    kw = dict(temperature=0.7, discount=0.95, log_action_prior=log_p)
    same = soft_double_q_target(rr, qa, qa, tt, **kw)
    assert same.dtype == torch.float32
    assert torch.allclose(same, soft_q_target(rr, qa, tt, **kw), rtol=0, atol=1e-5)
    assert (
        soft_double_q_target(rr, qa, qb, tt, **kw) <= soft_q_target(rr, qa, tt, **kw) + 1e-5
    ).all()
    # α → 0: double DQN, r + γ·Q̄(s', argmaxₐ Q_φ(s',a))
    hard = soft_double_q_target(r, q_bar, q_on, term, temperature=1e-6, discount=gamma)
    assert torch.allclose(hard, torch.tensor([1.0 + 0.9 * 0.0, -0.5 + 0.9 * 0.5, 2.0],
                                             dtype=torch.float64), atol=1e-5)  # fmt: skip
    # an action the prior forbids gets no weight, and no NaN
    zero_prior = torch.log(torch.tensor([0.0, 1.0], dtype=torch.float64))
    y0 = soft_double_q_target(r, q_bar, q_on, term, temperature=alpha, discount=gamma,
                              log_action_prior=zero_prior)  # fmt: skip
    assert torch.allclose(y0, r + gamma * (1 - term) * q_bar[:, 1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="next_q_online"):
        soft_double_q_target(r, q_bar, q_on[:, :1], term, temperature=alpha, discount=gamma)
    with pytest.raises(ValueError, match="temperature"):
        soft_double_q_target(r, q_bar, q_on, term, temperature=-1.0, discount=gamma)


def test_polyak_target_update_and_option_validation():
    algo = SoftDQN("CartPole-v1", 0.1, target_update_tau=0.25, seed=0, **SMALL)
    old = [p.detach().clone() for p in algo.target_net.parameters()]
    with torch.no_grad():
        for p in algo.q_net.parameters():
            p.add_(1.0)
    new = [p.detach().clone() for p in algo.q_net.parameters()]
    algo._update_target()
    for p_bar, o, n in zip(algo.target_net.parameters(), old, new):
        assert torch.allclose(p_bar, 0.75 * o + 0.25 * n, rtol=0, atol=1e-6)
    hard = SoftDQN("CartPole-v1", 0.1, seed=0, **SMALL)
    with torch.no_grad():
        for p in hard.q_net.parameters():
            p.add_(1.0)
    hard._update_target()
    assert all(
        torch.equal(a, b) for a, b in zip(hard.target_net.parameters(), hard.q_net.parameters())
    )
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="target_update_tau"):
            SoftDQN("CartPole-v1", target_update_tau=bad)
    with pytest.raises(TypeError, match="double_q"):
        SoftDQN("CartPole-v1", double_q="yes")


def test_learning_rate_decays_linearly_in_env_steps():
    algo = SoftDQN(
        "CartPole-v1", 0.1, learning_rate=1e-3, learning_rate_final=1e-4, learning_rate_steps=200,
        seed=0, **SMALL,
    )  # fmt: skip
    assert algo.current_learning_rate() == 1e-3
    algo.learn(104)  # a burst at 104: lr = 1e-3 + (104/200)·(1e-4 − 1e-3)
    assert algo.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 - 0.52 * 9e-4, abs=1e-15)
    algo.learn(196)
    assert algo.current_learning_rate() == 1e-4 and algo.optimizer.param_groups[0]["lr"] == 1e-4
    assert SoftDQN("CartPole-v1", **SMALL).current_learning_rate() == 1e-3  # no decay: constant
    with pytest.raises(ValueError, match="learning_rate_steps"):
        SoftDQN("CartPole-v1", learning_rate_final=1e-4)
    with pytest.raises(ValueError, match="learning_rate_final"):
        SoftDQN("CartPole-v1", learning_rate_final=0.0, learning_rate_steps=10)


def test_double_q_learner_reaches_soft_value_iteration():
    # the same fixed point as the plain target: where Q_φ = Q̄ = Q* both targets are soft VI's
    mdp = random_mdp(5, 3, seed=1, deterministic=True)
    ref = discounted_soft_value_iteration(mdp, discount=0.9, temperature=1.0)
    algo = SoftDQN(TabularEnv(mdp), 1.0, discount=0.9, seed=0, double_q=True, **TABULAR)
    algo.learn(1500)
    for group in algo.optimizer.param_groups:
        group["lr"] = 0.01
    algo.learn(300)
    assert (_learned_q(algo, 5) - ref.q).abs().max().item() < 2e-4


def test_munchausen_reward_on_a_hand_made_batch():
    r = torch.tensor([1.0, -0.5, 2.0, 0.0], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0], [2.0, -1.0], [5.0, 5.0], [-3.0, 4.0]], dtype=torch.float64)
    a = torch.tensor([0, 0, 1, 0])
    alpha, beta, l0 = 0.5, 0.9, -1.0

    def log_pi(qs, k):  # the uniform prior cancels in the softmax
        return qs[k] / alpha - math.log(sum(math.exp(x / alpha) for x in qs))

    # log π̄ = −2.127 (clipped to −1), −0.0025, −log 2 = −0.693, −14 (clipped to −1)
    expect = [
        1.0 + beta * alpha * max(log_pi([0.0, 1.0], 0), l0),
        -0.5 + beta * alpha * max(log_pi([2.0, -1.0], 0), l0),
        2.0 + beta * alpha * math.log(0.5),
        0.0 + beta * alpha * l0,
    ]
    got = munchausen_reward(r, q, a, temperature=alpha, scale=beta, clip_min=l0)
    assert torch.allclose(got, torch.tensor(expect, dtype=torch.float64), rtol=0, atol=1e-12)
    assert abs(expect[1] - (-0.5 + 0.45 * -math.log1p(math.exp(-6.0)))) < 1e-12  # unclipped row
    # β = 0: the plain reward, so the Munchausen target is soft_q_target's
    zero = munchausen_reward(r, q, a, temperature=alpha, scale=0.0)
    assert torch.equal(zero, r)
    term = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    kw = dict(temperature=alpha, discount=0.9)
    assert torch.equal(soft_q_target(zero, q, term, **kw), soft_q_target(r, q, term, **kw))
    # a non-uniform prior p = (0.2, 0.8), no clip binding, float32: π̄ ∝ p·exp(Q̄/α)
    log_p = torch.log(torch.tensor([0.2, 0.8]))
    got32 = munchausen_reward(r.float(), q.float(), a, temperature=1.0, scale=0.5,
                              clip_min=-100.0, log_action_prior=log_p)  # fmt: skip
    pi0 = 0.2 * math.exp(0.0) / (0.2 * math.exp(0.0) + 0.8 * math.exp(1.0))
    assert got32.dtype == torch.float32 and abs(got32[0].item() - (1 + 0.5 * math.log(pi0))) < 1e-6
    with pytest.raises(ValueError, match="scale"):
        munchausen_reward(r, q, a, temperature=alpha, scale=1.5)
    with pytest.raises(ValueError, match="clip_min"):
        munchausen_reward(r, q, a, temperature=alpha, scale=0.5, clip_min=0.0)
    with pytest.raises(TypeError, match="clip_min"):
        munchausen_reward(r, q, a, temperature=alpha, scale=0.5, clip_min="low")
    with pytest.raises(ValueError, match="actions"):
        munchausen_reward(r, q, a[:3], temperature=alpha, scale=0.5)


def test_munchausen_learner_reaches_the_closed_form_fixed_point():
    # Unclipped, uniform p: with Q' = Q − βα·log π, π = softmax(Q/α) = softmax(Q'/α') for
    # α' = (1 − β)·α, and Q' is soft VI at temperature α' with every reward shifted by
    # −γβα·log A (Vieillard et al. 2020, Thm. 1); so Q = Q'_softVI + βα·log softmax(Q'/α')
    gamma, alpha, beta = 0.9, 1.0, 0.5
    mdp = random_mdp(5, 3, seed=1, deterministic=True)
    shifted = TabularMDP(mdp.transition, mdp.reward - gamma * beta * alpha * math.log(3),
                         mdp.initial, 1)  # fmt: skip
    ref = discounted_soft_value_iteration(shifted, discount=gamma, temperature=(1 - beta) * alpha)
    q_ref = ref.q + beta * alpha * torch.log_softmax(ref.q / ((1 - beta) * alpha), dim=-1)
    algo = SoftDQN(TabularEnv(mdp), alpha, discount=gamma, seed=0, munchausen=beta,
                   munchausen_clip=-1e6, **TABULAR)  # fmt: skip
    algo.learn(1500)
    for group in algo.optimizer.param_groups:
        group["lr"] = 0.01
    algo.learn(300)
    q = _learned_q(algo, 5)
    assert (q - q_ref).abs().max().item() < 3e-4  # measured 1.9e-4
    # the learner's Boltzmann policy is the soft-optimal policy at temperature (1 − β)·α
    assert torch.allclose(algo.policy(np.arange(5)).double(), ref.policy, atol=1e-4)


def test_target_updates_inside_a_burst_equal_a_step_by_step_loop():
    # k = 3 and G = 8: the target net is copied after updates 3, 6 (and 9, 12, ... of later
    # bursts); the batched targets of each stretch must equal a plain loop that evaluates the
    # current target net at every step
    kw = dict(SMALL, gradient_steps=8, target_update_gradient_steps=3, munchausen=0.7)
    algo = SoftDQN("CartPole-v1", 0.5, seed=2, **kw)
    algo.learn(60)  # one burst at 56: 8 updates, copies after 3 and 6
    assert algo.num_updates == 8
    ref = copy.deepcopy(algo)
    calls = []
    original = SoftDQN._update_target

    def record(self):
        calls.append(self.num_updates)
        original(self)

    algo._update_target = record.__get__(algo)
    algo._train_burst()
    assert calls == [9, 12, 15]
    # the same burst by hand on the copy: same generator, so the same batch
    batch = ref.buffer.sample(8 * 16, ref.torch_generator)
    for i in range(8):
        rows = slice(16 * i, 16 * (i + 1))
        x, x2 = ref.features(batch.observations[rows]), ref.features(batch.next_observations[rows])
        with torch.no_grad():
            r = munchausen_reward(batch.rewards[rows], ref.target_net(x), batch.actions[rows],
                                  temperature=0.5, scale=0.7)  # fmt: skip
            y = soft_q_target(r, ref.target_net(x2), batch.terminated[rows], temperature=0.5,
                              discount=0.99)  # fmt: skip
        loss = ref.td_loss(x, batch.actions[rows], y)
        ref.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(ref.q_net.parameters()), 10.0)
        ref.optimizer.step()
        if (8 + i + 1) % 3 == 0:
            ref.target_net.load_state_dict(ref.q_net.state_dict())
    for p, p_ref in zip(algo.q_net.parameters(), ref.q_net.parameters()):
        assert torch.allclose(p, p_ref, rtol=0, atol=1e-6)
    for p, p_ref in zip(algo.target_net.parameters(), ref.target_net.parameters()):
        assert torch.allclose(p, p_ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="target_update_gradient_steps"):
        SoftDQN("CartPole-v1", target_update_gradient_steps=0)
    with pytest.raises(ValueError, match="munchausen"):
        SoftDQN("CartPole-v1", munchausen=-0.1)
    with pytest.raises(ValueError, match="munchausen_clip"):
        SoftDQN("CartPole-v1", munchausen=0.9, munchausen_clip=1.0)
