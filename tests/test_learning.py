"""Learned models against independent routes: the true FrozenLake table, Pyro's MAP of the
Dirichlet–Categorical model (AutoDelta), held-out transitions of the real Pendulum."""

import gymnasium as gym
import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta

from pgm_control import TabularMDP, policy_state_distribution, soft_value_iteration
from pgm_control.continuous import ContinuousMDP
from pgm_control.importance import importance_posterior
from pgm_control.learning import (
    GaussianDynamics,
    GaussianDynamicsFit,
    Transitions,
    collect_transitions,
    evaluate_tabular_policy,
    fit_gaussian_dynamics,
    fit_tabular_model,
    tabular_dynamics_model,
)
from pgm_control.mppi import MPPI


@pytest.fixture(scope="module")
def lake():
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    return env, collect_transitions(env, None, steps=6000, seed=0, progress=False)


@pytest.fixture(scope="module")
def pendulum_fit():
    env = gym.make("Pendulum-v1")
    data = collect_transitions(env, None, steps=2000, seed=0, progress=False)
    return env, fit_gaussian_dynamics(data, hidden=(32, 32), steps=400, seed=0, progress=False)


def test_collect_transitions(lake):
    env, data = lake
    assert isinstance(data, Transitions) and len(data) == 6000
    assert data.states.dtype == data.actions.dtype == torch.long
    assert data.episode_start[0] and data.episode_start.sum() > 100
    # an episode starts right after every terminal step, and at FrozenLake's start state
    ends = (data.terminated | ~data.episode_start.roll(-1))[:-1]
    assert (data.episode_start[1:] >= data.terminated[:-1]).all() and ends.any()
    assert (data.states[data.episode_start] == 0).all()
    again = collect_transitions(env, None, steps=50, seed=0, progress=False)
    assert torch.equal(again.actions, data.actions[:50])
    with pytest.raises(ValueError, match="steps"):
        collect_transitions(env, None, steps=0, seed=0)
    with pytest.raises(TypeError, match="env"):
        collect_transitions(42, None, steps=5, seed=0)


def _exact_success(true, policy):
    """P(goal within T) of a policy in the true model: the goal (state 15) is absorbing."""
    return float(policy_state_distribution(true, policy)[-1, 15])


def test_exploring_starts_cover_the_lake_and_fix_the_model_where_it_matters():
    """Random walks from the reset state rarely reach the goal's neighbour (state 14); data
    set 0 then picks the wrong action there and loses ~9 points of success. Exploring starts
    cover every non-terminal state, the initial distribution still comes from the env's
    reset, and p̂'s soft-optimal policy is within 0.5 points of the true one (exactly)."""
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    true = TabularMDP.from_gymnasium(env, 100)
    best = _exact_success(
        true, soft_value_iteration(true, temperature=1e-3, backup="expected").policy
    )
    success, visits = {}, {}
    for exploring in (False, True):
        data = collect_transitions(
            env, None, steps=20_000, seed=0, exploring_starts=exploring, progress=False
        )
        learned = fit_tabular_model(data, 16, 4, 100)
        pi = soft_value_iteration(learned, temperature=1e-3, backup="expected").policy
        success[exploring] = _exact_success(true, pi)
        visits[exploring] = torch.bincount(data.states, minlength=16)
        assert data.reset_states.shape == (int(data.episode_start.sum()),)
        assert (data.reset_states == 0).all()  # the env's own reset: always state 0
        torch.testing.assert_close(learned.initial, true.initial)
        assert torch.equal(learned.terminal, true.terminal)
    assert best - success[False] > 0.05  # the unlucky random-walk data set
    assert best - success[True] < 0.005
    live = ~true.terminal
    assert visits[False][14] < 200 and visits[True][live].min() > 1000
    # terminal states are never chosen as starts once seen: at most one visit each
    assert (visits[True][true.terminal] <= 1).all()


def test_exploring_starts_reject_envs_they_cannot_move():
    with pytest.raises(ValueError, match="exploring_starts.*Discrete"):
        collect_transitions(gym.make("Pendulum-v1"), steps=5, exploring_starts=True)

    class Counter(gym.Env):  # a Discrete env that keeps its state somewhere else
        observation_space = gym.spaces.Discrete(3)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.count = 0
            return 0, {}

        def step(self, action):
            self.count = (self.count + 1) % 3
            return self.count, 0.0, False, False, {}

    with pytest.raises(ValueError, match=r"env\.unwrapped\.s"):
        collect_transitions(Counter(), steps=5, exploring_starts=True, progress=False)
    data = collect_transitions(Counter(), steps=5, progress=False)
    assert torch.equal(data.initial_states, data.states[data.episode_start])


def test_tabular_counts_recover_the_true_frozen_lake(lake):
    env, data = lake
    true = TabularMDP.from_gymnasium(env, 20)
    learned = fit_tabular_model(data, 16, 4, 20, estimate="map")
    assert isinstance(learned, TabularMDP)
    assert torch.equal(learned.terminal, true.terminal)  # holes and the goal, from `terminated`
    n = torch.zeros(16, 4)
    n.index_put_((data.states, data.actions), torch.ones(len(data)), accumulate=True)
    seen = n >= 100
    err = (learned.transition - true.transition).abs().amax(-1)
    # the MLE of each row is within ~4 standard errors √(p(1−p)/n) ≤ 0.5/√n of the truth
    assert (err[seen] < 2.0 / n[seen].sqrt()).all()
    # rewards are learned on the transitions seen (reaching the goal pays 1)
    observed = torch.zeros(16, 4, 16, dtype=torch.bool)
    observed[data.states, data.actions, data.next_states] = True
    torch.testing.assert_close(learned.reward[observed], true.reward[observed])
    assert (learned.reward[~observed] == 0).all()
    torch.testing.assert_close(learned.initial, true.initial)  # every episode starts in state 0


def test_closed_form_map_equals_pyro_autodelta_map():
    g = torch.Generator().manual_seed(1)
    S, A, N, c = 3, 2, 60, 2.5
    s = torch.randint(S, (N,), generator=g)
    a = torch.randint(A, (N,), generator=g)
    s2 = torch.randint(S, (N,), generator=g)
    data = Transitions(
        s, a, torch.zeros(N), s2, torch.zeros(N, dtype=torch.bool), torch.zeros(N, dtype=torch.bool)
    )
    closed = fit_tabular_model(data, S, A, 1, estimate="map", concentration=c).transition
    guide = AutoDelta(tabular_dynamics_model)
    svi = SVI(tabular_dynamics_model, guide, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    for _ in range(150):
        svi.step(s, a, s2, S, A, concentration=c)
    torch.testing.assert_close(guide.median()["P"], closed, atol=1e-3, rtol=0)
    mean = fit_tabular_model(data, S, A, 1, estimate="mean", concentration=c).transition
    counts = torch.zeros(S, A, S, dtype=torch.float64)
    counts.index_put_((s, a, s2), torch.ones(N, dtype=torch.float64), accumulate=True)
    torch.testing.assert_close(mean, (counts + c) / (counts.sum(-1, keepdim=True) + S * c))


def test_learned_lake_policy_runs_in_the_real_env(lake):
    env, data = lake
    learned = fit_tabular_model(data, 16, 4, 100)
    pi = soft_value_iteration(learned, temperature=1e-3, backup="expected").policy
    returns = evaluate_tabular_policy(env, pi, episodes=100, seed=0)
    uniform = evaluate_tabular_policy(env, torch.full((16, 4), 0.25), episodes=100, seed=0)
    assert returns.shape == (100,) and returns.mean() > uniform.mean() + 0.2
    assert (evaluate_tabular_policy(env, pi, episodes=100, seed=0) == returns).all()


def test_gaussian_dynamics_predicts_held_out_pendulum_transitions(pendulum_fit):
    env, fit = pendulum_fit
    assert isinstance(fit, GaussianDynamicsFit) and fit.losses[-50:].mean() < fit.losses[:50].mean()
    fit_gaussian_dynamics(fit.transitions, hidden=(4,), steps=2, progress=False)
    assert len(pyro.get_param_store()) == 0  # parameters live in the module, not the store
    test = collect_transitions(env, None, steps=300, seed=7, progress=False)
    mean, scale = fit.predict(test.states, test.actions)
    delta = test.next_states - test.states
    mse = (mean[:, :3] - delta).pow(2).mean(0)
    assert (mse < 0.05 * delta.pow(2).mean(0)).all()  # far better than "nothing changes"
    reward_mse = (mean[:, 3] - test.rewards).pow(2).mean()
    assert reward_mse < 0.1 * test.rewards.var()
    assert scale.shape == (4,) and (scale > 0).all()


@pytest.mark.parametrize("stochastic", [False, True])
def test_learned_mdp_runs_importance_sampling_and_mppi_unchanged(pendulum_fit, stochastic):
    _, fit = pendulum_fit
    mdp = fit.to_mdp(8, action_low=-2.0, action_high=2.0, stochastic=stochastic)
    assert isinstance(mdp, ContinuousMDP) and mdp.state_dim == 3 and mdp.action_dim == 1
    s = torch.tensor([-1.0, 0.0, 0.0])
    nxt = mdp.dynamics(s, torch.zeros(5, 1))
    assert isinstance(nxt, torch.distributions.Distribution) == stochastic
    r = importance_posterior(mdp, s, horizon=8, num_samples=32, temperature=5.0, seed=0)
    assert r.plan.shape == (8, 1) and torch.isfinite(r.log_weights).all()
    if stochastic:  # next states are the model's own draws: weights are still exp(Σ r/α)
        torch.testing.assert_close(r.log_weights, r.returns / 5.0, rtol=0, atol=1e-12)
    ctrl = MPPI(mdp, horizon=8, num_samples=32, temperature=1.0, noise_scale=1.0, seed=0)
    assert ctrl.act(s).shape == (1,)
    assert mdp.initial.sample().shape == (3,)


def test_bad_inputs_raise_clear_errors(lake, pendulum_fit):
    _, data = lake
    with pytest.raises(ValueError, match="estimate"):
        fit_tabular_model(data, 16, 4, 10, estimate="mode")
    with pytest.raises(ValueError, match="concentration"):
        fit_tabular_model(data, 16, 4, 10, concentration=0.0)
    with pytest.raises(ValueError, match="concentration"):
        fit_tabular_model(data, 16, 4, 10, estimate="map", concentration=0.5)
    with pytest.raises(ValueError, match="states"):
        fit_tabular_model(data, 8, 4, 10)
    with pytest.raises(ValueError, match="num_actions"):
        fit_tabular_model(data, 16, 0, 10)
    with pytest.raises(TypeError, match="transitions"):
        fit_tabular_model("data", 16, 4, 10)
    with pytest.raises(ValueError, match="Box"):
        fit_gaussian_dynamics(data)
    _, fit = pendulum_fit
    with pytest.raises(ValueError, match="steps"):
        fit_gaussian_dynamics(fit.transitions, steps=0)
    with pytest.raises(ValueError, match="policy"):
        evaluate_tabular_policy(lake[0], torch.ones(4), episodes=1)


def test_collect_transitions_refuses_non_finite_actions_naming_the_policy():
    env = gym.make("Pendulum-v1")

    def sometimes_nan(obs):
        return np.array([np.nan if obs[2] > 0.5 else 0.0], dtype=np.float32)

    with pytest.raises(ValueError, match="sometimes_nan.*non-finite action"):
        collect_transitions(env, sometimes_nan, steps=200, seed=0, progress=False)
    with pytest.raises(ValueError, match="non-finite action"):
        collect_transitions(env, lambda obs: np.array([np.inf]), steps=5, progress=False)
    data = collect_transitions(env, lambda obs: np.zeros(1), steps=5, progress=False)
    assert torch.isfinite(data.actions).all()

    class Exploding(gym.Env):  # a Box env whose observation overflows at the third step
        observation_space = gym.spaces.Box(-np.inf, np.inf, (1,))
        action_space = gym.spaces.Box(-1.0, 1.0, (1,))

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return np.zeros(1, dtype=np.float32), {}

        def step(self, action):
            self.t += 1
            obs = np.full(1, np.inf if self.t == 3 else 0.0, dtype=np.float32)
            return obs, 0.0, False, False, {}

    with pytest.raises(ValueError, match="env.step.*non-finite observation.*step 2"):
        collect_transitions(Exploding(), None, steps=10, progress=False)


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_fit_tabular_model_does_not_depend_on_the_default_dtype(lake, default):
    """The counts are formed in float64 whatever torch's default dtype; ``dtype=`` casts the
    result. Independent route: the counts by a numpy histogram."""
    _, data = lake
    before = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        learned = fit_tabular_model(data, 16, 4, 20)
        learned32 = fit_tabular_model(data, 16, 4, 20, dtype=torch.float32)
    finally:
        torch.set_default_dtype(before)
    assert learned.transition.dtype == torch.float64
    assert learned32.transition.dtype == learned32.reward.dtype == torch.float32
    counts = np.zeros((16, 4, 16))
    np.add.at(counts, (data.states.numpy(), data.actions.numpy(), data.next_states.numpy()), 1)
    seen = counts.sum(-1) > 0
    live = ~learned.terminal.numpy()[:, None] & seen
    mle = counts / np.maximum(counts.sum(-1, keepdims=True), 1)
    np.testing.assert_allclose(learned.transition.numpy()[live], mle[live], rtol=1e-15)
    torch.testing.assert_close(learned32.transition, learned.transition.float(), rtol=0, atol=0)
    torch.testing.assert_close(learned32.initial, learned.initial.float(), rtol=0, atol=0)


def test_gaussian_dynamics_owns_its_parameters(pendulum_fit):
    """Module-local parameters: a global param of the same name is neither read nor written,
    and a float32 fit follows its dtype with no global default involved."""
    _, fit = pendulum_fit
    pyro.param("log_scale", torch.full((4,), 5.0, dtype=torch.float64))
    s, a = fit.transitions.states[:5], fit.transitions.actions[:5]
    mean, scale = fit.predict(s, a)
    torch.testing.assert_close(scale, fit.model.log_scale.detach().exp() * fit.model.out_std)
    small = fit_gaussian_dynamics(fit.transitions, hidden=(4,), steps=3, progress=False)
    assert torch.equal(pyro.param("log_scale"), torch.full((4,), 5.0, dtype=torch.float64))
    assert small.model.log_scale.dtype == torch.float64  # the data's dtype by default
    f32 = fit_gaussian_dynamics(
        fit.transitions, hidden=(4,), steps=3, dtype=torch.float32, progress=False
    )
    assert all(p.dtype == torch.float32 for p in f32.model.parameters())
    mdp = f32.to_mdp(5, action_low=-2.0, action_high=2.0)
    ctrl = MPPI(mdp, horizon=5, num_samples=16, temperature=1.0, noise_scale=1.0, seed=0)
    a_0 = ctrl.act(torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float32))
    assert a_0.dtype == torch.float32 and torch.isfinite(a_0).all() and ctrl.closed_form


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_dynamics_takes_python_stats_straight_into_its_dtype(dtype):
    """Statistics given as Python floats are not rounded through torch's default dtype."""
    stats = ([0.1, 0.2], [1.3, 0.7], [0.3], [0.9])
    model = GaussianDynamics(1, 1, hidden=(4,), learn_reward=False, stats=stats, dtype=dtype)
    for key, value in zip(("in_mean", "in_std", "out_mean", "out_std"), stats):
        assert torch.equal(getattr(model, key), torch.tensor(value, dtype=dtype))
    plain = GaussianDynamics(1, 1, hidden=(4,), learn_reward=False, dtype=dtype)
    assert plain.in_mean.dtype == plain.out_std.dtype == dtype
