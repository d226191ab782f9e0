"""Soft Q-learning against the exact discounted soft value iteration of the same MDP."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.soft_q_learning import (
    SoftQLearning,
    reachable_states,
    soft_q_target,
    soft_value,
)
from pgm_control.tabular_env import TabularEnv


def _tables(mdp):
    P = mdp.transition.numpy()
    r = mdp.reward.numpy()
    log_prior = mdp.log_action_prior.numpy()
    return P, r, log_prior


def _expected_update(q, mdp, *, temperature, discount):
    """E_{s'~P(·|s,a)}[y(s,a,s')] − Q(s,a), exactly from the tables, every (s, a) at once."""
    P, r, log_prior = _tables(mdp)
    S, A = q.shape
    s_next = np.broadcast_to(np.arange(S), (S, A, S))
    y = soft_q_target(
        q, log_prior, r, s_next, np.zeros((S, A, S), bool),
        temperature=temperature, discount=discount,
    )  # fmt: skip
    return (P * y).sum(-1) - q


@pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_update_is_zero_exactly_at_the_soft_vi_solution(seed, temperature):
    mdp = pc.random_mdp(6, 3, 1, seed=seed, random_action_prior=True)
    gamma = 0.9
    exact = pc.discounted_soft_value_iteration(mdp, discount=gamma, temperature=temperature)
    q_star = exact.q.numpy()
    at_fixed_point = _expected_update(q_star, mdp, temperature=temperature, discount=gamma)
    assert np.abs(at_fixed_point).max() < 1e-9
    # V of the target is the soft value with the action prior (pitfall: not a plain logsumexp)
    np.testing.assert_allclose(
        soft_value(q_star, mdp.log_action_prior.numpy(), temperature), exact.v.numpy(), atol=1e-9
    )
    rng = np.random.default_rng(seed)
    for _ in range(5):
        away = q_star + rng.normal(0, 0.1, q_star.shape)
        moved = _expected_update(away, mdp, temperature=temperature, discount=gamma)
        assert np.abs(moved).max() > 1e-3
    # the uniform-prior target is a different operator: its expected update is not zero here
    uniform = np.full_like(q_star, -np.log(3))
    S = q_star.shape[0]
    y = soft_q_target(
        q_star, uniform, mdp.reward.numpy(), np.broadcast_to(np.arange(S), (S, 3, S)),
        np.zeros((S, 3, S), bool), temperature=temperature, discount=gamma,
    )  # fmt: skip
    assert np.abs((mdp.transition.numpy() * y).sum(-1) - q_star).max() > 1e-3


def test_the_learner_applies_the_target_terminated_and_truncated_apart():
    env = gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=1)
    algo = SoftQLearning(env, temperature=0.5, discount=0.9, progress=False, lr_decay=0)
    q = np.random.default_rng(0).normal(size=(16, 4))
    algo._q[:] = q
    before = algo._q.copy()
    algo._train_step()  # one step: truncated by the time limit (never terminal from the start)
    changed = np.argwhere(algo._q != before)
    assert len(changed) == 1
    s, a = changed[0]
    assert s == 0 and algo.history.episode_lengths == [1]
    # learning rate 1: Q(s,a) is replaced by its target, which bootstraps on truncation
    s_next = {0: 0, 1: 4, 2: 1, 3: 0}[a]  # FrozenLake's left/down/right/up from the corner
    v_next = 0.5 * np.log(np.exp(q[s_next] / 0.5).mean())
    assert algo._q[s, a] == pytest.approx(0.9 * v_next, abs=1e-12)
    # a terminated transition pays r and bootstraps nothing
    td = algo.update(14, 2, 1.0, 15, True)
    assert algo._q[14, 2] == pytest.approx(1.0) and td == pytest.approx(1.0 - q[14, 2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_learns_the_soft_q_of_a_random_mdp_from_samples(dtype):
    # the env samples the tables; the learner sees only reset/step
    mdp = pc.random_mdp(4, 2, 1, seed=3, random_action_prior=True)
    prior = mdp.action_prior
    exact = pc.discounted_soft_value_iteration(mdp, discount=0.8, temperature=0.7)
    env = TabularEnv(mdp, max_episode_steps=50)
    algo = SoftQLearning(env, temperature=0.7, discount=0.8, action_prior=prior, dtype=dtype,
                         lr_decay=0.8, progress=False, seed=1)  # fmt: skip
    algo.learn(30_000)
    assert algo.q.dtype == dtype and algo.q.shape == (4, 2)
    err = (algo.q.double() - exact.q).abs().max().item()
    assert err < 0.1, err
    assert (algo.q.double() - exact.q).abs().max().item() < 0.1
    np.testing.assert_allclose(algo.policy.sum(-1).double().numpy(), 1.0, atol=1e-5)


@pytest.mark.slow
def test_cliff_walking_within_005_of_soft_value_iteration():
    mdp = pc.TabularMDP.from_gymnasium("CliffWalking-v1", 1)
    exact = pc.discounted_soft_value_iteration(mdp, discount=0.95, temperature=1.0)
    mask = reachable_states(mdp)
    assert int(mask.sum()) == 38  # the 10 cliff cells are never observed
    algo = SoftQLearning("CliffWalking-v1", discount=0.95, lr_decay=0.3, epsilon=0.2,
                         progress=False)  # fmt: skip
    algo.learn(40_000)
    assert (algo.q - exact.q)[mask].abs().max().item() < 0.05


def test_reachable_states_is_a_graph_search():
    mdp = pc.chain_mdp(5, 3)
    assert reachable_states(mdp).all()
    P = torch.zeros(3, 1, 3, dtype=torch.float64)
    P[0, 0, 1] = P[1, 0, 1] = P[2, 0, 0] = 1.0
    tiny = pc.TabularMDP(P, torch.zeros(3, 1), torch.tensor([1.0, 0, 0]), 1)
    assert reachable_states(tiny).tolist() == [True, True, False]


def test_save_load_continues_exactly_and_global_rng_untouched(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    state_t, state_np = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    straight = SoftQLearning("FrozenLake-v1", seed=4, progress=False, epsilon=0.1)
    straight.learn(300)
    straight.save(tmp_path / "sq.pt")
    again = SoftQLearning.load(tmp_path / "sq.pt")
    assert torch.equal(again.q, straight.q) and again.hyperparameters == straight.hyperparameters
    assert torch.equal(again.visits, straight.visits)
    a, _ = again.predict(0, deterministic=True)
    assert a == straight.predict(0, deterministic=True)[0]
    assert torch.equal(torch.random.get_rng_state(), state_t)
    assert np.array_equal(np.random.get_state()[1], state_np)
    twin = SoftQLearning("FrozenLake-v1", seed=4, progress=False, epsilon=0.1)
    twin.learn(300)
    assert torch.equal(twin.q, straight.q)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="Discrete observation.*SoftDQN"):
        SoftQLearning("CartPole-v1")
    with pytest.raises(ValueError, match="Discrete action.*SAC"):
        SoftQLearning(TabularEnvWithBoxActions())
    with pytest.raises(ValueError, match="temperature"):
        SoftQLearning("FrozenLake-v1", temperature=0.0)
    with pytest.raises(ValueError, match="discount"):
        SoftQLearning("FrozenLake-v1", discount=1.5)
    with pytest.raises(ValueError, match="discount"):
        SoftQLearning("FrozenLake-v1", discount=0.0)
    with pytest.raises(ValueError, match="total_timesteps"):
        SoftQLearning("FrozenLake-v1", progress=False).learn(0)
    with pytest.raises(ValueError, match="action_prior"):
        SoftQLearning("FrozenLake-v1", action_prior=np.ones(4))


class TabularEnvWithBoxActions(gym.Env):
    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,))
