"""Reward models and the wrapper that pays them: the table is the model, the wrapper pays the
current parameters (refreshed after an optimiser step), bad features are refused."""

import gymnasium as gym
import pytest
import torch

from pgm_control.reward_models import LinearReward, RewardWrapper, TabularReward, reward_table

F64 = torch.float64


@pytest.mark.parametrize("inputs", ["state_action", "next_state", "state"])
def test_tabular_reward_table_matches_its_definition(inputs):
    model = TabularReward(3, 2, inputs=inputs)
    with torch.no_grad():
        model.table.copy_(torch.arange(model.table.numel(), dtype=F64).view_as(model.table))
    table = reward_table(model, 3, 2)
    assert table.shape == (3, 2, 3)
    for s in range(3):
        for a in range(2):
            for s1 in range(3):
                want = {"state_action": 2 * s + a, "next_state": s1, "state": s}[inputs]
                assert table[s, a, s1] == want


def test_linear_reward_is_the_dot_product_and_refuses_bad_features():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 2, 3, 4, dtype=F64, generator=g)
    model = LinearReward(f)
    with torch.no_grad():
        model.weights.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64))
    torch.testing.assert_close(reward_table(model, 3, 2), f @ model.weights.detach())
    state = LinearReward(f[:, 0, 0, :])  # (S, F): r(s) of the state acted in
    assert reward_table(state, 3, 2)[2, 1, 0] == reward_table(state, 3, 2)[2, 0, 2]
    bad = f.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        LinearReward(bad)
    with pytest.raises(ValueError, match=r"\(S, F\), \(S, A, F\) or \(S, A, S, F\)"):
        LinearReward(torch.zeros(3, dtype=F64))
    with pytest.raises(TypeError, match="floating"):
        LinearReward(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="inputs"):
        TabularReward(3, 2, inputs="action")


def test_wrapper_pays_the_current_model_and_keeps_the_env_reward():
    model = TabularReward(16, 4, inputs="next_state")
    env = RewardWrapper(gym.make("FrozenLake-v1", is_slippery=False), model, scale=2.0)
    obs, _ = env.reset(seed=0)
    _, r, _, _, info = env.step(2)  # right: 0 → 1
    assert r == 0.0 and info["env_reward"] == 0.0
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = -model.table[1] - 3 * model.table[2]
    loss.backward()
    opt.step()  # in place: table[1] = 1, table[2] = 3
    _, r, _, _, _ = env.step(2)  # 1 → 2
    assert r == 2.0 * 3.0
    env.reset(seed=0)
    _, r, _, _, _ = env.step(2)  # 0 → 1 again
    assert r == 2.0 * 1.0
    with pytest.raises(ValueError, match="Discrete"):
        RewardWrapper(gym.make("CartPole-v1"), model)
