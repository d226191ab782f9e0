"""Tabular policies acting in the real gymnasium env.

Independent route: the success probability the TabularMDP model predicts by exact forward
messages vs the success rate measured in the env's own `step`.
"""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.envs import evaluate_policy
from pgm_control.guides import TABULAR_GUIDES
from pgm_control.mppi import run_episode
from pgm_control.rollout import RolloutResult, rollout
from pgm_control.svi import fit, fit_continuous

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


@pytest.mark.slow
def test_env_success_rate_matches_the_models_exact_goal_probability():
    """Independent randomness for actions and env: the env's success rate is the model's
    exact P(s_T = goal) (a shared stream once biased this by 9 points)."""
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 100)
    pi = pc.soft_value_iteration(mdp, temperature=0.01, backup="expected").policy
    p_goal = pc.policy_state_distribution(mdp, pi)[-1, 15].item()
    n = 4000
    rate = pc.rollout("FrozenLake-v1", pi, n, seed=3).successes.mean()
    assert abs(rate - p_goal) < 4 * (p_goal * (1 - p_goal) / n) ** 0.5


# ------------------------------------------------------------ continuous policies
def test_continuous_policy_returns_match_the_torch_twin():
    """Independent route: the twin's own dynamics and reward, stepped by hand from the same
    start with the same (float32-rounded) actions, give the env's return and states."""
    mdp = pc.envs.pendulum()

    def policy(state, t):
        return torch.tensor([1.5 * math.sin(t / 5.0) - 0.4 * state[1].item()])

    res = rollout(mdp, policy, 1, 0, initial_state=[math.pi, 0.0], max_steps=30, record=True)
    ep = res.episodes[0]
    s, expected, states = torch.tensor([math.pi, 0.0], dtype=torch.float64), 0.0, []
    for t in range(30):
        states.append(s)
        a = policy(s, t).to(torch.float32).double()  # the env receives float32 actions
        expected += mdp.reward(s, a).item()
        s = mdp.dynamics(s, a)
    states.append(s)
    assert res.lengths[0] == 30 and res.truncated[0] and not res.successes[0]
    assert res.returns[0] == pytest.approx(expected, abs=1e-4)
    np.testing.assert_allclose(ep.states, torch.stack(states).numpy(), atol=1e-5)
    assert ep.actions.shape == (30, 1) and ep.rewards.shape == (30,) and len(ep.seconds) == 30


def test_controllers_and_guides_are_called_by_their_signature():
    """act(state) (a controller like MPPI) and policy(state, t) / .act(state, t) (a guide)."""
    mdp = pc.envs.pendulum()
    calls = []

    class Controller:
        def act(self, state):  # one argument: called without t
            calls.append(("controller", state.dtype))
            return torch.zeros(1)

    class Guide:
        def act(self, state, t=0, *, deterministic=True):
            calls.append(("guide", t))
            return torch.zeros(1)

    rollout(mdp, Controller(), 1, 0, max_steps=2)
    rollout(mdp, Guide(), 1, 0, max_steps=2)
    rollout(mdp, lambda s, t: torch.zeros(1), 1, 0, max_steps=2)
    assert calls == [("controller", torch.float64)] * 2 + [("guide", 0), ("guide", 1)]
    # an MPPI controller itself: the same actions as its bound `act`
    ctrls = [pc.MPPI(mdp, horizon=4, num_samples=8, temperature=1.0, noise_scale=1.0, seed=2)
             for _ in range(2)]  # fmt: skip
    a = rollout(mdp, ctrls[0], 1, 5, max_steps=4, record=True).episodes[0]
    b = rollout(mdp, ctrls[1].act, 1, 5, max_steps=4, record=True).episodes[0]
    np.testing.assert_array_equal(a.actions, b.actions)


def test_reset_seeds_each_and_first():
    """ "each": episode i starts where env.reset(seed=seed+i) puts it; "first": the starts are
    the successive reset draws after one seeded reset."""
    mdp = pc.envs.pendulum()
    zero = lambda s, t: torch.zeros(1)  # noqa: E731
    each = rollout(mdp, zero, 3, 10, max_steps=1, record=True)
    first = rollout(mdp, zero, 3, 10, max_steps=1, record=True, reset_seeds="first")
    env = gym.make("Pendulum-v1")
    by_seed, successive = [], []
    for i in range(3):
        env.reset(seed=10 + i)
        by_seed.append(np.asarray(env.unwrapped.state, dtype=np.float64))
    env.reset(seed=10)
    successive.append(np.asarray(env.unwrapped.state, dtype=np.float64))
    for _ in range(2):
        env.reset()
        successive.append(np.asarray(env.unwrapped.state, dtype=np.float64))
    np.testing.assert_array_equal([ep.states[0] for ep in each.episodes], by_seed)
    np.testing.assert_array_equal([ep.states[0] for ep in first.episodes], successive)
    with pytest.raises(ValueError, match="reset_seeds"):
        rollout(mdp, zero, 1, reset_seeds="never")


def test_observations_dtype_and_twin_dtype():
    """Without a twin (or with observations=True) the policy sees the observation; the state
    dtype is the twin's unless given."""
    seen = []
    policy = lambda s: seen.append((tuple(s.shape), s.dtype)) or torch.zeros(1)  # noqa: E731
    env = gym.make("Pendulum-v1")
    rollout(env, policy, 1, 0, max_steps=1)
    rollout(env, policy, 1, 0, max_steps=1, twin=pc.envs.pendulum(dtype=torch.float32))
    rollout(env, policy, 1, 0, max_steps=1, twin=pc.envs.pendulum(), observations=True)
    rollout(env, policy, 1, 0, max_steps=1, twin=pc.envs.pendulum(), dtype=torch.float32)
    assert seen == [((3,), torch.float64), ((2,), torch.float32), ((3,), torch.float64),
                    ((2,), torch.float32)]  # fmt: skip


def test_run_episode_and_evaluate_policy_are_views_of_rollout():
    mdp = pc.envs.pendulum()
    policy = lambda s, t: torch.tensor([0.5 * math.cos(t) - 0.2 * s[1].item()])  # noqa: E731
    env = gym.make("Pendulum-v1")
    ep = run_episode(env, lambda s: policy(s, 0), steps=6, seed=3, mdp=mdp)
    same = rollout(env, lambda s: policy(s, 0), 1, 3, max_steps=6, twin=mdp, record=True)
    for field in ("rewards", "states", "actions"):
        np.testing.assert_array_equal(getattr(ep, field), getattr(same.episodes[0], field))
    returns = evaluate_policy(mdp, policy, episodes=2, seed=4, steps=7)
    direct = rollout(
        gym.make("Pendulum-v1", max_episode_steps=7), policy, 2, 4, twin=mdp, reset_seeds="first"
    )
    np.testing.assert_array_equal(returns, direct.returns)
    assert (direct.lengths == 7).all() and direct.truncated.all()


def test_frames_are_recorded_every_few_steps():
    env = gym.make("Pendulum-v1", render_mode="rgb_array")
    res = rollout(env, lambda s: torch.zeros(1), 1, 0, max_steps=4, record=True, frame_every=2)
    frames = res.episodes[0].frames
    assert len(frames) == 3 and frames[0].ndim == 3  # at the start, after steps 2 and 4
    assert res.ms_per_step > 0
    env.close()


def test_non_finite_actions_are_refused_naming_the_policy():
    def broken_controller(state):
        return torch.tensor([float("nan")])

    with pytest.raises(ValueError, match="broken_controller.*non-finite action"):
        rollout(pc.envs.pendulum(), broken_controller, 1, max_steps=3)
    with pytest.raises(ValueError, match="initial_state.*twin"):
        rollout("Pendulum-v1", broken_controller, 1, initial_state=[0.0, 0.0])
    with pytest.raises(ValueError, match="initial_state"):
        rollout(pc.envs.pendulum(), broken_controller, 1, initial_state=[0.0])
    with pytest.raises(TypeError, match="twin"):
        rollout("Pendulum-v1", broken_controller, 1, twin="pendulum")


def test_a_continuous_fit_result_acts_through_its_guide():
    mdp = pc.envs.pendulum(horizon=3)
    res = fit_continuous(mdp, steps=1, num_particles=2, seed=0, progress=False)
    by_result = rollout(mdp, res, 2, 1, max_steps=5)
    by_guide = rollout(mdp, res.guide.act, 2, 1, max_steps=5)
    np.testing.assert_array_equal(by_result.returns, by_guide.returns)


def test_ctrl_c_returns_the_episodes_that_exist():
    mdp = pc.envs.pendulum()
    calls = []

    def impatient(state):
        calls.append(None)
        if len(calls) == 8:  # the third step of the second episode
            raise KeyboardInterrupt
        return torch.zeros(1)

    res = rollout(mdp, impatient, 5, 0, max_steps=5, record=True, progress=True)
    assert res.interrupted and "interrupted" in repr(res)
    assert list(res.lengths) == [5, 2] and res.truncated.all() and len(res.episodes) == 2
    assert res.returns[1] == pytest.approx(res.episodes[1].rewards.sum())

    def at_once(state):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rollout(mdp, at_once, 3, 0, max_steps=5)
