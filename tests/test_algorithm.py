"""The SB3-style base of the sample-based algorithms, and the replay buffer."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgm_control.algorithm import Algorithm, LearningHistory, make_env
from pgm_control.replay_buffer import ReplayBuffer


class _Counter(Algorithm):
    """A toy learner: acts from its own stream, learns visit counts."""

    def __init__(self, env, *, seed=0, device="cpu", progress=False, eval_every=None, bonus=1.0):
        super().__init__(env, seed=seed, device=device, progress=progress, eval_every=eval_every)
        self.hyperparameters = {"bonus": bonus, "eval_every": eval_every, "progress": progress}
        n = self.observation_space.n
        self.counts = torch.zeros(n, self.action_space.n, dtype=torch.float64)
        self.net = self._init_modules(lambda: torch.nn.Linear(2, 2))

    def _act(self, observation, deterministic):
        if deterministic:
            return int(self.counts[int(observation)].argmax())
        return int(self.np_random.integers(self.action_space.n))

    def _train_step(self):
        a = self._act(self.current_observation, False)
        obs, a, r, _, _, _ = self._env_step(a)
        self.counts[int(obs), a] += 1 + r
        return 1

    def _state(self):
        return {"counts": self.counts.clone(), "net": self.net.state_dict()}

    def _load_state(self, state):
        self.counts = state["counts"].clone()
        self.net.load_state_dict(state["net"])


def test_env_as_id_or_instance_and_bad_env():
    assert isinstance(make_env("FrozenLake-v1"), gym.Env)
    env = gym.make("FrozenLake-v1")
    assert make_env(env) is env
    with pytest.raises(TypeError, match="`env` must be a gymnasium env or an env id"):
        _Counter(3)


def test_learn_counts_steps_records_episodes_and_continues():
    algo = _Counter("FrozenLake-v1", seed=3)
    hist = algo.learn(500)
    assert algo.num_timesteps == 500 and hist is algo.history
    assert sum(hist.episode_lengths) <= 500 and len(hist.episode_returns) > 10
    assert hist.episode_end_steps == list(np.cumsum(hist.episode_lengths))
    algo.learn(100)
    assert algo.num_timesteps == 600 and algo.counts.sum() >= 600
    with pytest.raises(ValueError, match="total_timesteps"):
        algo.learn(0)
    assert "LearningHistory(episodes=" in repr(hist)


def test_same_seed_reproduces_and_global_rng_untouched():
    torch.manual_seed(123)
    np.random.seed(7)
    before_t, before_np = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    a, b = _Counter("FrozenLake-v1", seed=5), _Counter("FrozenLake-v1", seed=5)
    a.learn(300), b.learn(300)
    assert torch.equal(a.counts, b.counts)
    assert torch.equal(a.net.weight, b.net.weight)
    c = _Counter("FrozenLake-v1", seed=6)
    c.learn(300)
    assert not torch.equal(a.counts, c.counts)
    assert torch.equal(torch.random.get_rng_state(), before_t)
    assert np.array_equal(np.random.get_state()[1], before_np)


def test_save_load_continues_exactly(tmp_path):
    straight = _Counter("FrozenLake-v1", seed=2)
    straight.learn(400)
    first = _Counter("FrozenLake-v1", seed=2, bonus=2.0)
    first.learn(200)
    first.save(tmp_path / "algo.pt")
    again = _Counter.load(tmp_path / "algo.pt")
    assert again.hyperparameters["bonus"] == 2.0 and again.num_timesteps == 200
    assert torch.equal(again.counts, first.counts)
    # the env is rebuilt, so the continuation resets at the next step: compare the streams
    assert again.np_random.integers(1 << 30) == first.np_random.integers(1 << 30)
    assert len(again.history.episode_returns) == len(first.history.episode_returns)
    pickle.loads(pickle.dumps(again.history))
    with pytest.raises(TypeError, match="not a _Counter"):
        torch.save({"class": "Other"}, tmp_path / "x.pt")
        _Counter.load(tmp_path / "x.pt")


def test_predict_and_evaluation_in_history():
    algo = _Counter("FrozenLake-v1", seed=0, eval_every=100)
    algo.learn(300)
    action, state = algo.predict(0, deterministic=True)
    assert state is None and 0 <= action < 4
    h = algo.history
    assert h.eval_steps == [100, 200, 300] and len(h.eval_mean) == 3
    assert all(0.0 <= m <= 1.0 for m in h.eval_mean)


def test_interrupt_keeps_what_was_learned(monkeypatch):
    algo = _Counter("FrozenLake-v1", seed=0)
    calls = {"n": 0}
    step = algo._train_step

    def interrupting():
        calls["n"] += 1
        if calls["n"] == 50:
            raise KeyboardInterrupt
        return step()

    monkeypatch.setattr(algo, "_train_step", interrupting)
    hist = algo.learn(1000)
    assert hist.interrupted and algo.num_timesteps == 49


def test_terminated_and_truncated_are_reported_apart():
    algo = _Counter(gym.make("FrozenLake-v1", max_episode_steps=3), seed=0)
    seen = set()
    for _ in range(200):
        _, _, _, _, terminated, truncated = algo._env_step(0)
        seen.add((terminated, truncated))
    assert (False, True) in seen  # the time limit
    assert isinstance(LearningHistory(), LearningHistory)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_replay_buffer_ring_and_reproducible_sampling(dtype):
    buf = ReplayBuffer(5, (2,), (), action_dtype=torch.int64, observation_dtype=dtype,
                       float_dtype=dtype)  # fmt: skip
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2, torch.Generator().manual_seed(0))
    for i in range(7):
        buf.add(np.full(2, i), i, float(i), np.full(2, i + 1), i == 6)
    assert len(buf) == 5 and buf.position == 2
    assert sorted(buf.actions.tolist()) == [2, 3, 4, 5, 6]  # the two oldest overwritten
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    b1, b2 = buf.sample(64, g1), buf.sample(64, g2)
    assert torch.equal(b1.actions, b2.actions) and b1.rewards.dtype == dtype
    assert torch.equal(b1.observations[:, 0].long(), b1.actions)
    assert torch.equal(b1.next_observations[:, 0], b1.observations[:, 0] + 1)
    assert torch.equal(b1.terminated.bool(), b1.actions == 6)
    assert set(b1.actions.tolist()) == {2, 3, 4, 5, 6}  # uniform over what is kept
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, (), ())
