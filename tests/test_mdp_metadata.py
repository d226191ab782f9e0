"""TabularMDP metadata (goal states, action names and moves) against the envs' own behaviour."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgm_control as pc


def _step(env_id, state, action, **kwargs):
    """One real gymnasium step from ``state``: (next observation, reward, terminated)."""
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    env.unwrapped.s = state
    obs, reward, terminated, _, _ = env.step(action)
    env.close()
    return int(obs), float(reward), bool(terminated)


def _goal(mdp):
    return torch.nonzero(mdp.goal_states).flatten().tolist()


# --------------------------------------------------------------------------- gymnasium grids
@pytest.mark.parametrize(
    "env_id, kwargs, cell",
    [
        ("FrozenLake-v1", {"is_slippery": False}, (1, 2)),
        ("FrozenLake-v1", {"is_slippery": False, "map_name": "8x8"}, (3, 3)),
        ("CliffWalking-v1", {}, (1, 5)),
    ],
)
def test_action_moves_are_what_the_env_does(env_id, kwargs, cell):
    mdp = pc.TabularMDP.from_gymnasium(env_id, 2, **kwargs)
    rows, cols = mdp.grid_shape
    assert len(mdp.action_names) == len(mdp.action_moves) == mdp.num_actions == 4
    for a, (drow, dcol) in enumerate(mdp.action_moves):
        obs, _, _ = _step(env_id, cell[0] * cols + cell[1], a, **kwargs)
        assert divmod(obs, cols) == (cell[0] + drow, cell[1] + dcol), mdp.action_names[a]
    # the names say the same as the moves
    direction = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
    assert [direction[n] for n in mdp.action_names] == [
        tuple(map(int, m)) for m in mdp.action_moves
    ]


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("FrozenLake-v1", {}),
        ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}),
        ("CliffWalking-v1", {}),
    ],
)
def test_goal_is_where_the_env_ends_with_its_best_reward(env_id, kwargs):
    # independent route: every (state, action) stepped in the real env; the goal cells are
    # those entered with `terminated` and the highest reward (FrozenLake's G pays 1, its
    # holes 0; CliffWalking's one terminal cell)
    mdp = pc.TabularMDP.from_gymnasium(env_id, 2, **{**kwargs, "is_slippery": False})
    ends = {}
    for s in range(mdp.num_observations):
        if mdp.terminal[s]:
            continue
        for a in range(mdp.num_actions):
            obs, reward, terminated = _step(env_id, s, a, **{**kwargs, "is_slippery": False})
            if terminated:
                ends[obs] = max(reward, ends.get(obs, -np.inf))
    best = max(ends.values())
    expected = sorted(s for s, r in ends.items() if r == best)
    assert _goal(mdp) == expected
    # the slippery variant has the same goal cells
    assert _goal(pc.TabularMDP.from_gymnasium(env_id, 2, **kwargs)) == expected


def test_copy_states_share_the_goal_of_their_cell():
    mdp = pc.TabularMDP.from_gymnasium("CliffWalking-v1", 2, is_slippery=True)
    assert mdp.num_states > mdp.num_observations  # copy states exist
    assert torch.equal(mdp.goal_states, mdp.goal_states[mdp.state_to_obs])
    assert _goal(mdp) == [47]


def test_taxi_actions_and_drop_offs():
    mdp = pc.TabularMDP.from_gymnasium("Taxi-v4", 2)
    u = gym.make("Taxi-v4").unwrapped
    assert mdp.action_moves is None and mdp.grid_shape is None
    assert mdp.action_names == ("south", "north", "east", "west", "pickup", "dropoff")
    # row 2 of Taxi's map has no walls: every move action moves the taxi
    moves = {"south": (1, 0), "north": (-1, 0), "east": (0, 1), "west": (0, -1)}
    start = u.encode(2, 2, 4, 0)  # passenger in the taxi, destination R
    for a, name in enumerate(mdp.action_names):
        obs, _, _ = _step("Taxi-v4", start, a)
        row, col, _, _ = u.decode(obs)
        assert (row - 2, col - 2) == moves.get(name, (0, 0)), name
    # goal: the passenger delivered, i.e. at its destination with the taxi there
    delivered = [
        s
        for s in range(500)
        if (d := list(u.decode(s)))[2] == d[3] and tuple(d[:2]) == tuple(u.locs[d[3]])
    ]
    assert _goal(mdp) == delivered and len(delivered) == 4
    # the env agrees: dropping off there from the taxi ends the episode with +20
    for s in delivered:
        row, col, _, dest = u.decode(s)
        obs, reward, terminated = _step("Taxi-v4", u.encode(row, col, 4, dest), 5)
        assert (obs, reward, terminated) == (s, 20.0, True)


# --------------------------------------------------------------------------- built-ins
def test_chain_metadata_follows_its_dynamics():
    mdp = pc.chain_mdp(6, 3)
    assert mdp.action_names == ("left", "right")
    assert _goal(mdp) == [5]
    # the goal is where the reward is paid
    assert int(mdp.expected_reward.sum(-1).argmax()) == 5
    for a, (drow, dcol) in enumerate(mdp.action_moves):
        assert drow == 0
        assert int(mdp.transition[2, a].argmax()) - 2 == dcol


def test_lottery_goal_is_winning():
    mdp = pc.lottery_mdp(jackpot=0.5)  # even a jackpot below the ticket price: "won" is the goal
    assert mdp.action_names == ("buy", "keep")
    assert mdp.action_moves is None
    won = _goal(mdp)
    assert won == [1]
    # reached only by buying, with the jackpot paid
    assert mdp.transition[0, 0, 1] > 0 and mdp.transition[0, 1, 1] == 0
    assert mdp.reward[0, 0, 1].item() == pytest.approx(0.5 - 1.0)


def test_random_and_user_mdps_have_no_metadata():
    mdp = pc.random_mdp(4, 3, 2)
    assert mdp.goal_states is None and mdp.action_names is None and mdp.action_moves is None


# --------------------------------------------------------------------------- container
def _base(**metadata):
    P = torch.full((3, 2, 3), 1 / 3, dtype=torch.float64)
    return pc.TabularMDP(P, torch.zeros(3, 2, dtype=torch.float64), P[0, 0], 2, **metadata)


def test_goal_states_from_indices_or_mask():
    by_index = _base(goal_states=[2, 0])
    by_mask = _base(goal_states=np.array([True, False, True]))
    by_tensor = _base(goal_states=torch.tensor([2]))
    assert by_index.goal_states.dtype == torch.bool
    assert torch.equal(by_index.goal_states, by_mask.goal_states)
    assert _goal(by_tensor) == [2]
    assert _goal(_base(goal_states=[])) == []


@pytest.mark.parametrize(
    "metadata, exc, words",
    [
        ({"goal_states": [3]}, ValueError, "`goal_states` indices must lie in"),
        ({"goal_states": [-1]}, ValueError, "`goal_states` indices must lie in"),
        ({"goal_states": [True, False]}, ValueError, "`goal_states` as a bool mask"),
        ({"goal_states": [0.5]}, TypeError, "`goal_states` must be a bool mask"),
        ({"goal_states": [[0, 1]]}, ValueError, "`goal_states` must be a bool mask"),
        ({"action_names": ("a",)}, ValueError, "`action_names` must hold one string"),
        ({"action_names": ("a", 1)}, ValueError, "`action_names` must hold one string"),
        ({"action_names": "ab"}, TypeError, "`action_names` must be a tuple"),
        ({"action_moves": ((0, 1),)}, ValueError, "`action_moves` must have shape"),
        ({"action_moves": ((0, 1), (0, float("nan")))}, ValueError, "`action_moves`"),
        ({"action_moves": (("a", "b"), (0, 1))}, TypeError, "`action_moves` must be numeric"),
    ],
)
def test_metadata_validation_names_the_argument(metadata, exc, words):
    with pytest.raises(exc, match=words):
        _base(**metadata)


@pytest.mark.parametrize(
    "make",
    [
        lambda: pc.chain_mdp(4, 3),
        lambda: pc.lottery_mdp(),
        lambda: pc.TabularMDP.from_gymnasium("CliffWalking-v1", 3, is_slippery=True),
        lambda: pc.TabularMDP.from_gymnasium("Taxi-v4", 3),
    ],
)
def test_replace_to_and_pickle_carry_the_metadata(make):
    mdp = make()
    for copy in (
        pickle.loads(pickle.dumps(mdp)),
        mdp.replace(horizon=7),
        mdp.to(dtype=torch.float32),
        mdp.to(device="cpu"),
    ):
        assert torch.equal(copy.goal_states, mdp.goal_states)
        assert copy.action_names == mdp.action_names
        assert copy.action_moves == mdp.action_moves
        assert copy.grid_shape == mdp.grid_shape and copy.name == mdp.name
        assert (copy.terminal is None) == (mdp.terminal is None)
    small = mdp.to(dtype=torch.float32)
    assert small.float_dtype == torch.float32 and small.goal_states.dtype == torch.bool
    assert torch.equal(small.transition, mdp.transition.float())
    # replace validates the metadata again
    with pytest.raises(ValueError, match="`action_names`"):
        mdp.replace(action_names=("x",))
