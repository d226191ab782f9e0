"""The torch twins in ``pgm_control.envs`` against gymnasium's own ``step``, and the
validation of :class:`~pgm_control.continuous.ContinuousMDP`."""

import math

import gymnasium
import numpy as np
import pytest
import torch
from pyro.distributions import Normal, Uniform

from pgm_control import envs
from pgm_control.continuous import ContinuousMDP

N_PAIRS = 1000


def _step_gym(env_id, states, actions, state_dtype):
    """(next states, rewards, terminated) from gymnasium's unwrapped ``step``, pair by pair."""
    env = gymnasium.make(env_id).unwrapped
    env.reset(seed=0)
    nxt, rew, term = [], [], []
    for s, a in zip(states, actions):
        env.state = np.array(s, dtype=state_dtype)
        _, r, terminated, _, _ = env.step(np.array(a, dtype=np.float32))
        nxt.append(np.array(env.state, dtype=np.float64))
        rew.append(float(r))
        term.append(terminated)
    env.close()
    return torch.tensor(np.array(nxt)), torch.tensor(rew, dtype=torch.float64), np.array(term)


def test_pendulum_matches_gymnasium_step():
    rng = np.random.default_rng(0)
    # angles over several turns, speeds and torques beyond the clip limits
    states = np.stack(
        [rng.uniform(-3 * math.pi, 3 * math.pi, N_PAIRS), rng.uniform(-10, 10, N_PAIRS)], -1
    )
    actions = rng.uniform(-3, 3, (N_PAIRS, 1)).astype(np.float32)
    nxt, rew, _ = _step_gym("Pendulum-v1", states, actions, np.float64)

    mdp = envs.pendulum()
    s, a = torch.tensor(states), torch.tensor(actions, dtype=torch.float64)
    assert torch.allclose(mdp.dynamics(s, a), nxt, rtol=0, atol=1e-6)
    assert torch.allclose(mdp.reward(s, a), rew, rtol=0, atol=1e-6)
    assert (a.abs() > 2).any() and (nxt[:, 1].abs() == 8).any()  # both clips were exercised


def test_pendulum_observation_and_state_round_trip():
    mdp = envs.pendulum()
    env = gymnasium.make("Pendulum-v1")
    obs, _ = env.reset(seed=3)
    s = mdp.state_from_env(env.unwrapped)
    assert torch.allclose(mdp.observe(s), torch.tensor(obs, dtype=torch.float64), atol=1e-6)
    start = torch.tensor([math.pi, 0.0], dtype=torch.float64)
    env.unwrapped.state = mdp.env_state(start)
    assert torch.equal(mdp.state_from_env(env.unwrapped), start)
    env.close()


def test_mountain_car_matches_gymnasium_step():
    rng = np.random.default_rng(1)
    # the env stores float32 states; feed both sides the same float32 numbers
    states = np.stack(
        [rng.uniform(-1.2, 0.6, N_PAIRS), rng.uniform(-0.07, 0.07, N_PAIRS)], -1
    ).astype(np.float32)
    actions = rng.uniform(-1.5, 1.5, (N_PAIRS, 1)).astype(np.float32)
    nxt, rew, terminated = _step_gym("MountainCarContinuous-v0", states, actions, np.float32)

    mdp = envs.mountain_car_continuous()
    s = torch.tensor(states, dtype=torch.float64)
    a = torch.tensor(actions, dtype=torch.float64)
    assert torch.allclose(mdp.dynamics(s, a), nxt, rtol=0, atol=1e-6)
    # the reward charges the *unclipped* force and pays 100 where the env terminates
    assert torch.allclose(mdp.reward(s, a), rew, rtol=0, atol=1e-6)
    assert terminated.any() and (~terminated).any()
    assert (nxt[:, 0] == np.float32(-1.2)).any()  # the left wall (velocity reset) was hit


def test_reset_distributions_match_gymnasium():
    for make, env_id in ((envs.pendulum, "Pendulum-v1"),
                         (envs.mountain_car_continuous, "MountainCarContinuous-v0")):  # fmt: skip
        mdp = make()
        env = gymnasium.make(env_id)
        starts = []
        for k in range(200):
            env.reset(seed=k)
            starts.append(mdp.state_from_env(env.unwrapped))
        env.close()
        starts = torch.stack(starts)
        support = mdp.initial.support
        assert support.check(starts).all(), env_id
        # and the model's p0 spreads over the same box
        low, high = mdp.initial.base_dist.low, mdp.initial.base_dist.high
        spread = (starts.max(0).values - starts.min(0).values) / (high - low).clamp(min=1e-9)
        assert (spread[(high - low) > 1e-9] > 0.9).all(), env_id


def _uniform(dim=2):
    return Uniform(-torch.ones(dim), torch.ones(dim)).to_event(1)


def _mdp(**changes):
    kwargs = dict(
        dynamics=lambda s, a: s + a,
        reward=lambda s, a: -(s**2).sum(-1),
        initial=_uniform(),
        horizon=5,
        action_low=-1.0,
        action_high=1.0,
    )
    kwargs.update(changes)
    return ContinuousMDP(**kwargs)


def test_continuous_mdp_accepts_a_valid_definition():
    mdp = _mdp(action_low=[-1.0, -2.0], action_high=[1.0, 2.0])
    assert (mdp.state_dim, mdp.action_dim, mdp.horizon) == (2, 2, 5)
    assert mdp.replace(horizon=7).horizon == 7


@pytest.mark.parametrize(
    "horizon, error",
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("10", TypeError)],
)
def test_continuous_mdp_rejects_bad_horizon(horizon, error):
    # the shared check: TypeError for a value that is no int, ValueError for one below 1
    with pytest.raises(error, match="horizon"):
        _mdp(horizon=horizon)


@pytest.mark.parametrize(
    "low, high, match",
    [
        (1.0, 1.0, "action_low"),
        (2.0, -2.0, "action_low"),
        ([-1.0, 1.0], [1.0, 0.5], "action_low"),
        ([-1.0, -1.0], [1.0], "must match"),
        (float("nan"), 1.0, "finite"),
        ([[-1.0]], [[1.0]], "1-D"),
    ],
)
def test_continuous_mdp_rejects_bad_action_box(low, high, match):
    with pytest.raises(ValueError, match=match):
        _mdp(action_low=low, action_high=high)


def test_continuous_mdp_rejects_bad_initial():
    with pytest.raises(TypeError, match="Distribution"):
        _mdp(initial=torch.zeros(2))
    with pytest.raises(ValueError, match="event shape"):
        _mdp(initial=Normal(torch.zeros(2), 1.0))  # batch (2,), event () — missing to_event
    with pytest.raises(ValueError, match="event shape"):
        _mdp(initial=Normal(torch.zeros(2, 2), 1.0).to_event(2))


def test_continuous_mdp_rejects_non_callable_dynamics():
    with pytest.raises(TypeError, match="dynamics"):
        _mdp(dynamics=torch.zeros(2))
    with pytest.raises(TypeError, match="reward"):
        _mdp(reward=None)


def test_stochastic_is_declared_or_found_by_one_call():
    """A dynamics with a boolean ``stochastic`` attribute is believed without being called
    (a model on another device); otherwise one call on the zero state decides."""

    class Declared:
        def __init__(self, stochastic):
            self.stochastic = stochastic

        def __call__(self, s, a):
            raise AssertionError("a declared dynamics is not called")

    assert _mdp(dynamics=Declared(True)).stochastic is True
    assert _mdp(dynamics=Declared(False)).stochastic is False
    assert _mdp().stochastic is False
    noisy = _mdp(dynamics=lambda s, a: Normal(s + a, 0.1).to_event(1))
    assert noisy.stochastic is True
    assert not envs.pendulum().stochastic and not envs.mountain_car_continuous().stochastic


def test_dtype_follows_the_initial_distribution_or_the_bounds():
    assert envs.pendulum().dtype == torch.float64
    mdp = envs.pendulum(dtype=torch.float32)
    assert mdp.dtype == mdp.action_low.dtype == mdp.action_high.dtype == torch.float32
    assert mdp.action_high.item() == 2.0  # exactly representable: the same box
    bounds = torch.tensor([-1.0, 0.0], dtype=torch.float32), torch.tensor([2.0, 0.5])
    assert _mdp(action_low=bounds[0], action_high=bounds[1].float()).dtype == torch.float32
