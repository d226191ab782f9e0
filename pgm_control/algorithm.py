"""What every algorithm that learns from ``env.step`` shares: Stable-Baselines3's habits.

The exact routines, SVI and the planners use an MDP's tables or a differentiable twin. The
algorithms derived from the ELBO that learn from samples alone (soft Q-learning, soft DQN, the
entropy-regularised policy gradient, AWR, soft actor-critic) only ever call ``env.reset`` and
``env.step``. They all follow the conventions users know from Stable-Baselines3:

* ``Algo(env, ...)`` with ``env`` a gymnasium env or an env id;
* ``.learn(total_timesteps)`` shows a tqdm bar, can be stopped with Ctrl-C (what was learned
  stays, ``history.interrupted`` says so), can be called again to continue, and returns the
  :class:`LearningHistory`;
* ``.predict(observation, deterministic=True)`` returns ``(action, None)``;
* ``.save(path)`` / ``Algo.load(path, env=None)``: hyperparameters, learned tensors, history and
  random states, so a loaded run continues exactly as the original would have.

Random numbers. A run is a function of its ``seed``: the env's first reset is seeded with it
(later resets continue the env's own generator, as in SB3), and the algorithm draws from its
own streams — a numpy ``Generator`` and a ``torch.Generator`` spawned from
``SeedSequence(seed)`` — that are independent of the env's and of each other. Networks are
initialised inside ``torch.random.fork_rng``, so no routine touches the caller's global RNGs.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from .rollout import rollout
from .validation import check_int, check_optional_positive_int, check_positive_int

__all__ = ["Algorithm", "LearningHistory", "make_env", "check_discrete_learner"]


def make_env(env, argument: str = "env") -> gym.Env:
    """A gymnasium env from an env id (``gymnasium.make``) or the env itself."""
    if isinstance(env, str):
        return gym.make(env)
    if isinstance(env, gym.Env):
        return env
    raise TypeError(
        f"`{argument}` must be a gymnasium env or an env id such as 'CartPole-v1', "
        f"got {type(env).__name__}"
    )


def check_discrete_learner(who: str, observation_space, action_space, dtype) -> None:
    """The spaces and dtype of a neural learner with Discrete actions (soft DQN, AWR): Box or
    Discrete observations, a floating ``dtype``; errors name the argument and the way out."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(
            f"`env` must have a Discrete action space for {who}, got {action_space}; "
            "for continuous actions use soft actor-critic (pgm_control's SAC)"
        )
    if not isinstance(observation_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise ValueError(
            f"`env` must have a Box or Discrete observation space, got {observation_space}"
        )
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"`dtype` must be a floating torch dtype, got {dtype!r}")


def _env_spec(env: gym.Env) -> tuple[str, dict] | None:
    """(id, make kwargs) that rebuild ``env`` with ``gymnasium.make``, or None."""
    spec = env.spec
    return None if spec is None else (spec.id, dict(spec.kwargs))


@dataclasses.dataclass
class LearningHistory:
    """What happened during ``learn``: plain lists that pickle, append across calls.

    Attributes:
        episode_returns, episode_lengths: of every finished training episode.
        episode_end_steps: the env step count at which each episode ended.
        eval_steps, eval_mean, eval_std: deterministic evaluations (every ``eval_every`` steps).
        losses: {name: [(step, value), ...]} as each algorithm reports them.
        seconds: wall-clock time spent in ``learn``.
        interrupted: True if the last ``learn`` was stopped with Ctrl-C.
    """

    episode_returns: list = dataclasses.field(default_factory=list)
    episode_lengths: list = dataclasses.field(default_factory=list)
    episode_end_steps: list = dataclasses.field(default_factory=list)
    eval_steps: list = dataclasses.field(default_factory=list)
    eval_mean: list = dataclasses.field(default_factory=list)
    eval_std: list = dataclasses.field(default_factory=list)
    losses: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

    def log(self, name: str, step: int, value: float) -> None:
        """Record ``value`` of ``name`` at env step ``step``."""
        self.losses.setdefault(name, []).append((int(step), float(value)))

    def __repr__(self) -> str:
        last = f", last eval={self.eval_mean[-1]:.4g}" if self.eval_mean else ""
        ret = ""
        if self.episode_returns:
            tail = self.episode_returns[-10:]
            ret = f", mean return of last {len(tail)} episodes={np.mean(tail):.4g}"
        stop = ", interrupted" if self.interrupted else ""
        return (
            f"LearningHistory(episodes={len(self.episode_returns)}{ret}{last}, "
            f"seconds={self.seconds:.2f}{stop})"
        )


class Algorithm:
    """Base class: the env loop, the streams, learn/predict/save/load (see the module doc).

    A subclass sets ``hyperparameters`` (a dict of its constructor's keyword arguments, so
    ``load`` can rebuild it) and implements:

    * ``_act(observation, deterministic) -> action`` for one observation;
    * ``_train_step() -> int``: advance by one unit of work (usually one env step through
      :meth:`_env_step`, plus any update) and return the number of env steps taken;
    * ``_state() -> dict`` and ``_load_state(dict)``: the learned tensors.

    Args:
        env: a gymnasium env or an env id.
        seed: seeds the env's first reset and the algorithm's own streams.
        device: where tensors live ("cpu", "cuda", a torch.device).
        progress: show a tqdm bar in ``learn`` (can be overridden per call).
        eval_every: every this many env steps, ``eval_episodes`` deterministic episodes on a
            separate copy of the env are recorded in the history (None: never).
        eval_episodes: episodes per evaluation.
    """

    hyperparameters: dict

    def __init__(
        self,
        env,
        *,
        seed: int = 0,
        device="cpu",
        progress: bool = True,
        eval_every: int | None = None,
        eval_episodes: int = 10,
    ):
        self.env = make_env(env)
        self.seed = check_int("seed", seed)
        self.device = torch.device(device)
        self.progress = bool(progress)
        self.eval_every = check_optional_positive_int("eval_every", eval_every)
        self.eval_episodes = check_positive_int("eval_episodes", eval_episodes)
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.num_timesteps = 0
        self.history = LearningHistory()
        seeds = np.random.SeedSequence(self.seed).spawn(2)
        self.np_random = np.random.default_rng(seeds[0])
        self.torch_generator = torch.Generator(device=self.device)
        self.torch_generator.manual_seed(int(seeds[1].generate_state(1)[0]))
        self._obs = None  # current observation; None: the next env step resets first
        self._episode_return = 0.0
        self._episode_length = 0
        self._resets = 0

    # ---------------------------------------------------------------- the env loop
    def _reset(self):
        seed = self.seed if self._resets == 0 else None
        self._resets += 1
        self._obs, _ = self.env.reset(seed=seed)
        self._episode_return, self._episode_length = 0.0, 0
        return self._obs

    def _env_step(self, action):
        """One ``env.step`` from the current observation.

        Returns ``(obs, action, reward, next_obs, terminated, truncated)``; ``next_obs`` is the
        true successor even when the episode ends (the next call resets first). ``terminated``
        means an absorbing state (bootstrap with 0); ``truncated`` a time limit (bootstrap
        from ``next_obs``).
        """
        obs = self._reset() if self._obs is None else self._obs
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        reward = float(reward)
        self.num_timesteps += 1
        self._episode_return += reward
        self._episode_length += 1
        if terminated or truncated:
            self.history.episode_returns.append(self._episode_return)
            self.history.episode_lengths.append(self._episode_length)
            self.history.episode_end_steps.append(self.num_timesteps)
            self._obs = None
        else:
            self._obs = next_obs
        return obs, action, reward, next_obs, bool(terminated), bool(truncated)

    @property
    def current_observation(self):
        """The observation the next env step acts on (resets the env if an episode ended)."""
        return self._reset() if self._obs is None else self._obs

    # ---------------------------------------------------------------- public API
    def learn(self, total_timesteps: int, *, progress: bool | None = None) -> LearningHistory:
        """Take ``total_timesteps`` more env steps of learning; returns :attr:`history`."""
        total = check_positive_int("total_timesteps", total_timesteps)
        show = self.progress if progress is None else bool(progress)
        target = self.num_timesteps + total
        start = time.perf_counter()
        self.history.interrupted = False
        bar = tqdm(total=total, disable=not show, desc=type(self).__name__, unit="step")
        try:
            while self.num_timesteps < target:
                before = self.num_timesteps
                taken = self._train_step()
                bar.update(taken)
                if self.eval_every and (before // self.eval_every) < (
                    self.num_timesteps // self.eval_every
                ):
                    self._evaluate()
        except KeyboardInterrupt:
            self.history.interrupted = True
        finally:
            bar.close()
            self.history.seconds += time.perf_counter() - start
        return self.history

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """The action for ``observation`` and ``None`` (SB3's ``(action, state)`` pair)."""
        with torch.no_grad():
            return self._act(observation, deterministic), None

    def evaluate(self, episodes: int | None = None, *, seed: int | None = None):
        """Deterministic returns on a fresh copy of the env (:func:`pgm_control.rollout`)."""
        episodes = self.eval_episodes if episodes is None else episodes
        seed = self.seed + 10_000 if seed is None else seed
        env = self._eval_env()
        try:
            return rollout(env, self._deterministic_policy, episodes=episodes, seed=seed)
        finally:
            env.close()

    def save(self, path: str | os.PathLike) -> None:
        """Write hyperparameters, learned tensors, history and random states to ``path``."""
        torch.save(
            {
                "class": type(self).__name__,
                "env": _env_spec(self.env),
                "seed": self.seed,
                "hyperparameters": dict(self.hyperparameters),
                "state": self._state(),
                "history": self.history,
                "num_timesteps": self.num_timesteps,
                "np_random": self.np_random.bit_generator.state,
                "torch_generator": self.torch_generator.get_state(),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike, env=None, *, device=None):
        """Rebuild an algorithm saved by :meth:`save`; ``env`` defaults to the saved env id.

        Only load files you trust: unpickling runs code.
        """
        saved = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(saved, dict) or saved.get("class") != cls.__name__:
            found = saved.get("class") if isinstance(saved, dict) else type(saved).__name__
            raise TypeError(f"{os.fspath(path)!r} holds a {found}, not a {cls.__name__}")
        if env is None:
            if saved["env"] is None:
                raise ValueError("the saved env has no id: pass `env` to load")
            env_id, kwargs = saved["env"]
            env = gym.make(env_id, **kwargs)
        kwargs = dict(saved["hyperparameters"])
        if device is not None:
            kwargs["device"] = device
        algo = cls(env, seed=saved["seed"], **kwargs)
        algo._load_state(saved["state"])
        algo.history = saved["history"]
        algo.num_timesteps = saved["num_timesteps"]
        algo.np_random.bit_generator.state = saved["np_random"]
        algo.torch_generator.set_state(saved["torch_generator"])
        return algo

    # ---------------------------------------------------------------- helpers
    def _eval_env(self) -> gym.Env:
        spec = _env_spec(self.env)
        if spec is None:
            raise ValueError("evaluation needs an env made by gymnasium.make (it has no spec)")
        return gym.make(spec[0], **spec[1])

    def _deterministic_policy(self, state, t=None):
        """``rollout``'s callable policy: its float64 state tensor back to an observation."""
        obs = state.cpu().numpy() if isinstance(state, torch.Tensor) else np.asarray(state)
        if isinstance(self.observation_space, gym.spaces.Discrete):
            obs = int(obs)
        else:
            obs = obs.astype(self.observation_space.dtype)
        return self._act(obs, True)

    def _evaluate(self) -> None:
        res = self.evaluate()
        returns = np.asarray(res.returns, dtype=float)
        self.history.eval_steps.append(self.num_timesteps)
        self.history.eval_mean.append(float(returns.mean()))
        self.history.eval_std.append(float(returns.std()))

    def _init_modules(self, build):
        """Call ``build()`` with the global torch RNG forked and seeded from this run's seed."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(self.torch_generator.initial_seed()))
            return build()

    def _act(self, observation, deterministic: bool):
        raise NotImplementedError

    def _train_step(self) -> int:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError
