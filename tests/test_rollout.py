"""Tabular policies acting in the real gymnasium env.

Independent route: the success probability the TabularMDP model predicts by exact forward
messages vs the success rate measured in the env's own `step`.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.guides import TABULAR_GUIDES
from pgm_control.rollout import RolloutResult, rollout
from pgm_control.svi import fit

GOAL = 15  # FrozenLake 4x4


@pytest.fixture(scope="module")
def frozen_lake():
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 15)
    policy = pc.soft_value_iteration(mdp, temperature=0.02, backup="expected").policy
    return mdp, policy


def test_success_rate_in_the_env_matches_the_models_prediction(frozen_lake):
    mdp, policy = frozen_lake
    predicted = pc.policy_state_distribution(mdp, policy)[-1, GOAL].item()  # P(goal by T)
    res = rollout("FrozenLake-v1", policy, episodes=4000, seed=0)
    assert isinstance(res, RolloutResult)
    assert abs(res.success_rate - predicted) < 4 * res.success_stderr
    assert res.lengths.max() <= mdp.horizon  # "stop": truncated at T
    np.testing.assert_array_equal(res.returns, res.successes.astype(float))


def test_rollouts_are_seeded(frozen_lake):
    _, policy = frozen_lake
    a = rollout("FrozenLake-v1", policy, 200, seed=3)
    b = rollout(gym.make("FrozenLake-v1"), policy, 200, seed=3)
    c = rollout("FrozenLake-v1", policy, 200, seed=4)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert not np.array_equal(a.lengths, c.lengths)


def test_after_horizon_last_keeps_acting_and_stationary_policies_run_to_the_env_limit(
    frozen_lake,
):
    _, policy = frozen_lake
    last = rollout("FrozenLake-v1", policy, 300, seed=1, after_horizon="last")
    assert last.lengths.max() > 15 and last.lengths.max() <= 100  # the env's TimeLimit
    stop = rollout("FrozenLake-v1", policy, 300, seed=1)
    assert last.success_rate >= stop.success_rate
    stationary = rollout("FrozenLake-v1", policy[0], 300, seed=1)
    assert stationary.lengths.max() > 15
    capped = rollout("FrozenLake-v1", policy[0], 300, seed=1, max_steps=5)
    assert capped.lengths.max() <= 5 and capped.truncated.any()


def test_deterministic_lake_follows_the_plan_to_the_goal():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    mdp = pc.TabularMDP.from_gymnasium(env, 6)
    res = fit(mdp, temperature=0.01, lr=0.3, progress=False)
    assert res.gap < 1e-6
    out = rollout(env, res, episodes=50, seed=0)  # a FitResult works directly
    hard = rollout(env, res.policy.argmax(-1).numpy()[..., None] == np.arange(4), 5, seed=0)
    assert hard.success_rate == 1.0
    assert out.success_rate > 0.9
    assert out.lengths.min() == 6  # the shortest path


def test_guides_and_plain_arrays_are_accepted(frozen_lake):
    mdp, policy = frozen_lake
    guide = TABULAR_GUIDES["tabular"](mdp)  # uniform
    res = rollout("FrozenLake-v1", guide, 50, seed=0)
    assert len(res.returns) == 50
    res = rollout("FrozenLake-v1", policy.numpy().tolist(), 10, seed=0)
    assert "success_rate" in repr(res)


def test_bad_inputs_raise_clear_errors(frozen_lake):
    _, policy = frozen_lake
    with pytest.raises(ValueError, match="Discrete"):
        rollout("Pendulum-v1", policy, 1)
    with pytest.raises(ValueError, match="states"):
        rollout("FrozenLake-v1", policy[:, :4], 1)
    with pytest.raises(ValueError, match="sum to 1"):
        rollout("FrozenLake-v1", policy * 2, 1)
    with pytest.raises(ValueError, match="non-negative"):
        rollout("FrozenLake-v1", -policy, 1)
    with pytest.raises(ValueError, match="shape"):
        rollout("FrozenLake-v1", torch.ones(4) / 4, 1)
    with pytest.raises(ValueError, match="episodes"):
        rollout("FrozenLake-v1", policy, 0)
    with pytest.raises(ValueError, match="after_horizon"):
        rollout("FrozenLake-v1", policy, 1, after_horizon="loop")
    with pytest.raises(ValueError, match="max_steps"):
        rollout("FrozenLake-v1", policy, 1, max_steps=0)
    with pytest.raises(TypeError, match="gymnasium env"):
        rollout(42, policy, 1)
    with pytest.raises(TypeError, match="policy"):
        rollout("FrozenLake-v1", object(), 1)


def test_env_success_rate_matches_the_models_exact_goal_probability():
    """Independent randomness for actions and env: the env's success rate is the model's
    exact P(s_T = goal) (a shared stream once biased this by 9 points)."""
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 100)
    pi = pc.soft_value_iteration(mdp, temperature=0.01, backup="expected").policy
    p_goal = pc.policy_state_distribution(mdp, pi)[-1, 15].item()
    n = 4000
    rate = pc.rollout("FrozenLake-v1", pi, n, seed=3).successes.mean()
    assert abs(rate - p_goal) < 4 * (p_goal * (1 - p_goal) / n) ** 0.5
