"""TabularMDP: construction from gymnasium tables, constructors, and input validation."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgm_control as pc

GYM_CASES = [
    ("FrozenLake-v1", {}),
    ("FrozenLake-v1", {"is_slippery": False}),
    ("FrozenLake-v1", {"map_name": "8x8"}),
    ("CliffWalking-v1", {}),
    ("CliffWalking-v1", {"is_slippery": True}),
    ("Taxi-v4", {}),
]


@pytest.mark.parametrize("env_id,kwargs", GYM_CASES)
def test_from_gymnasium_matches_table(env_id, kwargs):
    mdp = pc.TabularMDP.from_gymnasium(env_id, 10, **kwargs)
    env = gym.make(env_id, **kwargs)
    u = env.unwrapped
    n_obs, A = env.observation_space.n, env.action_space.n
    S = mdp.num_states
    assert mdp.num_observations == n_obs and mdp.transition.shape == (S, A, S)
    obs = torch.arange(S) if mdp.state_to_obs is None else mdp.state_to_obs
    torch.testing.assert_close(mdp.transition.sum(-1), torch.ones(S, A, dtype=torch.float64))
    np.testing.assert_allclose(mdp.initial[:n_obs].numpy(), u.initial_state_distrib)
    assert mdp.transition.dtype == torch.float64
    terminal = mdp.terminal.numpy()
    for s in range(n_obs):
        if terminal[s]:
            continue
        for a in range(A):
            expect = np.zeros(n_obs)
            for prob, s_next, rew, _ in u.P[s][a]:
                expect[int(s_next)] += prob
                # some state standing for s' is reached and pays exactly this reward
                hits = (obs == int(s_next)) & (mdp.transition[s, a] > 0)
                assert (mdp.reward[s, a][hits] == rew).any()
            got = torch.zeros(n_obs, dtype=torch.float64).index_add_(0, obs, mdp.transition[s, a])
            np.testing.assert_allclose(got.numpy(), expect, atol=1e-12)
    for s in np.flatnonzero(terminal):  # terminal states absorb with zero reward
        assert (mdp.transition[s, :, s] == 1).all() and (mdp.reward[s] == 0).all()
    for c in range(n_obs, S):  # copy states behave exactly like the state they copy
        torch.testing.assert_close(mdp.transition[c], mdp.transition[obs[c]])
        torch.testing.assert_close(mdp.reward[c], mdp.reward[obs[c]])


def test_conflicting_rewards_split_keeps_posterior_exact():
    """Slippery CliffWalking pays -1 and -100 for landing on the start cell from one (s, a).

    The exact posterior weighs the two outcomes by exp(r/α), so they must stay apart: compare
    the split MDP with a brute-force one-step computation from the gymnasium table itself.
    """
    mdp = pc.TabularMDP.from_gymnasium("CliffWalking-v1", 1, is_slippery=True)
    u = gym.make("CliffWalking-v1", is_slippery=True).unwrapped
    q = pc.soft_value_iteration(mdp, temperature=2.0).q[0]
    for s, a in [(36, 1), (25, 2), (36, 0)]:
        expect = 2.0 * np.log(sum(p * np.exp(r / 2.0) for p, _, r, _ in u.P[s][a]))
        assert q[s, a].item() == pytest.approx(expect, abs=1e-12)


def test_frozenlake_reward_stays_per_next_state():
    """The issue's regression numbers: r(s,a,s') vs averaged r(s,a) at α = 0.1, T = 15."""
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 15)
    assert "slippery" in mdp.name and mdp.grid_shape == (4, 4)
    assert pc.log_evidence(mdp, temperature=0.1).item() == pytest.approx(5.4196, abs=1e-4)
    averaged = mdp.replace(reward=mdp.expected_reward)
    assert pc.log_evidence(averaged, temperature=0.1).item() == pytest.approx(12.41, abs=5e-3)


def test_cliffwalking_evidence_regression():
    mdp = pc.TabularMDP.from_gymnasium("CliffWalking-v1", 50)
    assert pc.log_evidence(mdp).item() == pytest.approx(-29.8087, abs=1e-4)


def test_accepts_numpy_and_torch_and_keeps_device_dtype():
    m1 = pc.random_mdp(4, 2, 3, seed=1)
    m2 = pc.TabularMDP(
        m1.transition.numpy(), m1.reward.numpy(), m1.initial.numpy(), 3, m1.action_prior
    )
    torch.testing.assert_close(pc.log_evidence(m1), pc.log_evidence(m2))
    m32 = m1.to(dtype=torch.float32)
    assert m32.transition.dtype == torch.float32
    assert pc.log_evidence(m32).dtype == torch.float32
    assert pc.TabularMDP(m1.transition.float(), m1.reward, m1.initial, 3).reward.dtype == (
        torch.float32
    )


def test_sa_reward_is_broadcast_over_next_states():
    m = pc.random_mdp(3, 2, 2, seed=0, reward_per_next_state=False)
    assert m.reward.shape == (3, 2, 3)
    torch.testing.assert_close(m.reward[..., 0], m.reward[..., 2])


def test_random_mdp_deterministic_and_seeded():
    a, b = pc.random_mdp(5, 3, 4, seed=3), pc.random_mdp(5, 3, 4, seed=3)
    torch.testing.assert_close(a.transition, b.transition)
    assert not a.is_deterministic
    assert pc.random_mdp(5, 3, 4, seed=3, deterministic=True).is_deterministic


def test_lottery_layout():
    m = pc.lottery_mdp(win_probability=1e-3, jackpot=8.0)
    assert m.transition[0, 0, 1].item() == pytest.approx(1e-3)
    assert m.reward[0, 0, 1].item() == pytest.approx(7.0)
    assert m.terminal.tolist() == [False, True, True, True]


def _base():
    return pc.random_mdp(3, 2, 2, seed=0)


@pytest.mark.parametrize(
    "change,exc,words",
    [
        (
            dict(transition=torch.ones(3, 2, 3, dtype=torch.float64)),
            ValueError,
            "`transition` rows must sum to 1",
        ),
        (
            dict(transition=torch.ones(3, 2, dtype=torch.float64)),
            ValueError,
            "`transition` must have shape",
        ),
        (
            dict(reward=torch.zeros(3, 3, dtype=torch.float64)),
            ValueError,
            "`reward` must have shape",
        ),
        (
            dict(reward=torch.full((3, 2), float("nan"), dtype=torch.float64)),
            ValueError,
            "`reward` contains NaN",
        ),
        (
            dict(reward=torch.full((3, 2), float("inf"), dtype=torch.float64)),
            ValueError,
            "`reward` contains inf",
        ),
        (
            dict(initial=torch.tensor([0.5, 0.6, -0.1], dtype=torch.float64)),
            ValueError,
            "`initial` has a negative",
        ),
        (
            dict(initial=torch.ones(4, dtype=torch.float64) / 4),
            ValueError,
            "`initial` must have shape",
        ),
        (dict(horizon=0), ValueError, "`horizon` must be an int >= 1"),
        (dict(horizon=2.5), TypeError, "`horizon` must be an int"),
        (
            dict(action_prior=torch.ones(3, 2, dtype=torch.float64)),
            ValueError,
            "`action_prior` rows must sum",
        ),
        (dict(reward="abc"), TypeError, "`reward`"),
    ],
)
def test_validation_names_the_argument(change, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(")):
        _base().replace(**change)


def test_negative_transition_probability():
    P = _base().transition.clone()
    P[0, 0, 0] -= 0.1
    P[0, 0, 1] += 0.1 + 0.1
    P[0, 0, 2] -= 0.1
    with pytest.raises(ValueError, match="`transition` has a negative probability"):
        _base().replace(transition=P)


def test_non_tabular_envs_are_refused():
    with pytest.raises(ValueError, match="Discrete observation and action spaces"):
        pc.TabularMDP.from_gymnasium("Pendulum-v1", 10)
    with pytest.raises(TypeError, match="gymnasium env"):
        pc.TabularMDP.from_gymnasium(object(), 10)
    with pytest.raises(TypeError, match="must be a TabularMDP"):
        pc.log_evidence(gym.make("FrozenLake-v1"))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(bad):
    with pytest.raises(ValueError, match="`temperature`"):
        pc.soft_value_iteration(_base(), temperature=bad)


def test_bad_backup_and_observed_steps():
    with pytest.raises(ValueError, match="`backup`"):
        pc.soft_value_iteration(_base(), backup="pessimistic")
    with pytest.raises(ValueError, match="`observed_steps`"):
        pc.log_evidence(_base(), observed_steps=[5])


def test_minus_inf_reward_points_to_action_prior_and_transition_zeros():
    P = np.full((2, 2, 2), 0.5)
    r = np.zeros((2, 2))
    r[0, 1] = -np.inf
    with pytest.raises(ValueError, match="`reward` contains inf") as info:
        pc.TabularMDP(P, r, np.array([1.0, 0.0]), 3, dtype=torch.float64)
    msg = str(info.value)
    assert "`action_prior`" in msg and "`transition`" in msg and "(0, 1, 0)" in msg
    r[0, 1] = np.inf  # +inf is just not finite: no hint about forbidding
    with pytest.raises(ValueError, match="`reward` contains inf") as info:
        pc.TabularMDP(P, r, np.array([1.0, 0.0]), 3, dtype=torch.float64)
    assert "action_prior" not in str(info.value)


def test_float32_tables_are_checked_with_a_float32_tolerance():
    """A float32 table normalised in float32 sums to 1 only within ≈ n·eps; a real mistake fails."""
    g = torch.Generator().manual_seed(0)
    gam = torch.rand(40, 2, 40, generator=g, dtype=torch.float32) + 1e-3
    P = gam / gam.sum(-1, keepdim=True)
    p0 = torch.full((40,), 1 / 40, dtype=torch.float32)
    mdp = pc.TabularMDP(P, torch.zeros(40, 2, dtype=torch.float32), p0, 3)
    assert mdp.float_dtype == torch.float32
    with pytest.raises(ValueError, match="`transition` rows must sum to 1"):
        pc.TabularMDP(P * 1.01, torch.zeros(40, 2, dtype=torch.float32), p0, 3)


def test_differentiable_tables_keep_their_graph():
    P = torch.full((2, 2, 2), 0.5, dtype=torch.float64, requires_grad=True)
    r = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    mdp = pc.TabularMDP(P, r, torch.tensor([1.0, 0.0], dtype=torch.float64), 2)
    assert mdp.transition.requires_grad and mdp.reward.requires_grad
    mdp.reward.sum().backward()
    torch.testing.assert_close(r.grad, torch.full((2, 2), 2.0, dtype=torch.float64))
