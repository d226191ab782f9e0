"""Acting in a real gymnasium environment: the one episode loop of the library.

The exact routines, SVI and the planners work on a *model* of an env (a
:class:`~pgm_control.TabularMDP`, a :class:`~pgm_control.ContinuousMDP` twin, a learned model);
:func:`rollout` closes the loop by running a policy in the env itself (its own ``step``, RNG
and time limit), so a return or success rate measured here is an independent check of what the
model predicts. It serves every kind of policy:

* tabular: a (T, S, A) or (S, A) table of action probabilities, a
  :class:`~pgm_control.fit_result.FitResult` or a tabular guide; actions are drawn from a
  private numpy stream per episode, independent of the env's;
* continuous: ``policy(state, t)`` (a fitted guide's ``act``), or a controller ``act(state)``
  (:meth:`pgm_control.MPPI.act`); an object with an ``act`` method is used through it.

Episode i resets the env with ``seed + i`` (or, with ``reset_seeds="first"``, only the first
reset is seeded). A :class:`ContinuousMDP` twin (``twin=``) lets a continuous policy see the
model state read off ``env.unwrapped`` instead of the observation, and start from a fixed
``initial_state``. :func:`run_episode` (one recorded episode, as MPPI's figures use it) and
:func:`pgm_control.envs.evaluate_policy` (returns of a continuous policy) are views of it.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import typing

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from .continuous import ContinuousMDP
from .fit_result import FitResult
from .validation import check_int, check_optional_positive_int, check_positive_int

__all__ = ["rollout", "RolloutResult", "Episode", "run_episode", "AFTER_HORIZON", "RESET_SEEDS"]

AFTER_HORIZON = ("stop", "last")
RESET_SEEDS = ("each", "first")
_ACTION_STREAM = 1  # second word of a tabular policy's action generator seed (see `rollout`)


class Episode(typing.NamedTuple):
    """One recorded episode in a gymnasium env (numpy arrays; N = steps taken).

    Attributes:
        total_return: Σ of the env's rewards (``rewards.sum()``).
        rewards: (N,).
        states: (N+1, d) what the policy was given (model states or observations; (N+1,)
            observation indices for a tabular policy).
        actions: (N, action_dim) the actions sent to the env ((N,) indices in a Discrete one).
        seconds: (N,) wall-clock seconds of each policy call.
        terminated: whether the env signalled termination (e.g. MountainCar's goal).
        frames: rendered RGB frames (every ``frame_every`` steps), if asked for.
    """

    total_return: float
    rewards: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    seconds: np.ndarray
    terminated: bool
    frames: list

    @property
    def ms_per_step(self) -> float:
        return 1e3 * float(np.mean(self.seconds)) if len(self.seconds) else float("nan")


@dataclasses.dataclass
class RolloutResult:
    """Episodes of a policy in a gymnasium env.

    Attributes:
        returns: Σ rewards per episode, shape (episodes,).
        lengths: steps per episode.
        successes: per episode, whether it *terminated* (not truncated) with a positive final
            reward — reaching the goal in FrozenLake or MountainCar.
        truncated: per episode, whether it ended by the horizon / time limit instead.
        episodes: with ``record=True``, each episode's :class:`Episode` (states, actions,
            rewards, per-step seconds, frames); else None.
        interrupted: whether Ctrl-C stopped the run; the arrays then hold the episodes that
            exist, the last one cut short (truncated).
    """

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray
    truncated: np.ndarray
    episodes: list[Episode] | None = None
    interrupted: bool = False

    @property
    def success_rate(self) -> float:
        return float(self.successes.mean())

    @property
    def success_stderr(self) -> float:
        """Binomial standard error of :attr:`success_rate`."""
        p, n = self.success_rate, len(self.successes)
        return float(np.sqrt(p * (1 - p) / max(n, 1)))

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def ms_per_step(self) -> float:
        """Mean wall-clock milliseconds of one policy call (recorded episodes only)."""
        if not self.episodes:
            return float("nan")
        seconds = np.concatenate([ep.seconds for ep in self.episodes])
        return 1e3 * float(seconds.mean()) if len(seconds) else float("nan")

    def __repr__(self) -> str:
        return (
            f"RolloutResult(episodes={len(self.returns)}, success_rate={self.success_rate:.4f}"
            f" ± {self.success_stderr:.4f}, mean_return={self.mean_return:.4g}, "
            f"mean_length={self.lengths.mean():.3g}"
            f"{', interrupted' if self.interrupted else ''})"
        )


# ------------------------------------------------------------------------ policies
def _is_table(policy) -> bool:
    """Whether ``policy`` is given as action probabilities (a table, FitResult, tabular guide)."""
    if isinstance(policy, FitResult):
        return policy.policy is not None
    if isinstance(policy, (np.ndarray, torch.Tensor, list, tuple)):
        return True
    return hasattr(policy, "policy") and not hasattr(policy, "act")


def _policy_array(policy) -> tuple[np.ndarray, bool]:
    """(policy as a (T, S, A) float array, whether it was stationary (S, A))."""
    if hasattr(policy, "policy") and not isinstance(policy, (np.ndarray, torch.Tensor)):
        policy = policy.policy  # a FitResult
        if callable(policy):  # a guide
            policy = policy()
    if isinstance(policy, torch.Tensor):
        policy = policy.detach().cpu().numpy()
    try:
        pi = np.asarray(policy, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "`policy` must be (T, S, A) or (S, A) action probabilities (tensor or array), a "
            f"FitResult or a tabular guide; got {type(policy).__name__}"
        ) from exc
    stationary = pi.ndim == 2
    if stationary:
        pi = pi[None]
    if pi.ndim != 3:
        raise ValueError(f"`policy` must have shape (T, S, A) or (S, A), got {pi.shape}")
    if not np.isfinite(pi).all() or (pi < 0).any():
        raise ValueError("`policy` must hold finite, non-negative probabilities")
    err = np.abs(pi.sum(-1) - 1).max()
    if err > 1e-6:
        raise ValueError(f"`policy` rows must sum to 1 over actions; worst row is off by {err:.3g}")
    return pi, stationary


class _TableAgent:
    """Draws aₜ ~ policy[min(t, T−1), obs] by inverse CDF, one uniform per step, from a numpy
    generator seeded ``(episode seed, 1)``: NOT default_rng(seed + i), which gymnasium uses for
    the env's own generator — the actions would then replay the env's random numbers
    (correlated, biased rollouts)."""

    def __init__(self, policy, env):
        pi, self.stationary = _policy_array(policy)
        n_obs, n_act = int(env.observation_space.n), int(env.action_space.n)
        if pi.shape[1] < n_obs or pi.shape[2] != n_act:
            raise ValueError(
                f"`policy` has {pi.shape[1]} states and {pi.shape[2]} actions; the env has "
                f"{n_obs} observations and {n_act} actions"
            )
        self.horizon = pi.shape[0]
        # dividing by the last entry makes it exactly 1: a zero-probability action can never
        # be drawn. Rows past the env's observations are the MDP's copy states, never visited
        cdf = np.cumsum(pi[:, :n_obs], axis=-1)
        self._cdf = cdf / cdf[..., -1:]
        self._rng = None

    def begin(self, episode_seed: int) -> None:
        self._rng = np.random.default_rng((episode_seed, _ACTION_STREAM))

    def __call__(self, obs, t: int) -> int:
        row = self._cdf[min(t, self.horizon - 1), int(obs)]
        return int(np.searchsorted(row, self._rng.random(), side="right"))


def _takes_time(fn) -> bool:
    """Whether ``fn`` accepts two positional arguments (state, t); else it is called fn(state)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the documented form
        return True
    kinds = [p.kind for p in params]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Parameter.VAR_POSITIONAL in kinds or sum(k in positional for k in kinds) >= 2


class _CallableAgent:
    """``policy(state, t)`` or a controller's ``act(state)``, decided once from its signature."""

    stationary = True
    horizon = None

    def __init__(self, policy):
        if isinstance(policy, FitResult):  # a continuous fit: act with its guide
            policy = policy.guide
        fn = getattr(policy, "act", policy)
        if not callable(fn):
            raise TypeError(
                "`policy` must be action probabilities (a (T, S, A) / (S, A) table, a FitResult "
                "or a tabular guide), a callable policy(state, t) or act(state), or an object "
                f"with an `act` method (a fitted continuous guide, MPPI); got "
                f"{type(policy).__name__}"
            )
        self._fn, self._with_time = fn, _takes_time(fn)
        self.name = getattr(fn, "__qualname__", type(fn).__name__)

    def begin(self, episode_seed: int) -> None:
        pass

    def __call__(self, state, t: int):
        with torch.no_grad():
            return self._fn(state, t) if self._with_time else self._fn(state)


def _env_action(action, env, agent, t: int):
    """The policy's action as the env takes it: an int (Discrete) or a float32 array of the
    action space's shape; a non-finite action is refused, naming the policy and the step."""
    if isinstance(env.action_space, gym.spaces.Discrete):
        return int(action)
    a = np.asarray(torch.as_tensor(action).detach().cpu(), dtype=np.float32)
    a = a.reshape(env.action_space.shape)
    if not np.isfinite(a).all():
        raise ValueError(
            f"the policy {getattr(agent, 'name', 'policy')!r} returned a non-finite action "
            f"{a.tolist()} at step {t}; check its inputs and parameters"
        )
    return a


# -------------------------------------------------------------------------- the loop
def rollout(
    env,
    policy,
    episodes: int = 1000,
    seed: int = 0,
    *,
    after_horizon: str = "stop",
    max_steps: int | None = None,
    twin: ContinuousMDP | None = None,
    observations: bool = False,
    initial_state=None,
    dtype: torch.dtype | None = None,
    reset_seeds: str = "each",
    record: bool = False,
    frame_every: int = 0,
    progress: bool = False,
) -> RolloutResult:
    """Run a policy in a gymnasium env and record returns, lengths and successes.

    ``Rᵢ = Σₜ rₜ`` along episode i, with ``aₜ ~ π(· | sₜ)`` (tabular) or ``aₜ = π(sₜ, t)``, and
    ``sₜ₊₁, rₜ`` from the env's own ``step``: a Monte-Carlo check of what a model predicts
    (e.g. P(goal by T) from :func:`~pgm_control.policy_state_distribution`).

    At step t a tabular policy's action is drawn from ``policy[t, obs]`` (a stationary (S, A)
    policy is used at every step); a continuous policy is called on the state (see ``twin``)
    as ``policy(state, t)``, or as ``act(state)`` when it takes one argument (MPPI). A
    controller's own state (MPPI's warm start) carries over between episodes: call its
    ``reset`` between runs where that matters.

    Args:
        env: a gymnasium env, an env id (``gymnasium.make(env)``; e.g. ``"FrozenLake-v1"``)
            or a :class:`ContinuousMDP` with ``gym_id`` (the env is made from it, and it is
            the ``twin``). Envs made here are closed at the end.
        policy: (T, S, A) time-varying or (S, A) stationary action probabilities, a
            :class:`~pgm_control.fit_result.FitResult` or a tabular guide (Discrete envs; S
            may exceed the env's observation count when the MDP appended copy states — see
            ``TabularMDP.from_gymnasium`` —: copies come after the env's own states); or a
            callable ``policy(state, t)`` / ``act(state)``, or an object with ``act``.
        episodes: number of episodes (≥ 1).
        seed: episode i resets the env with ``seed + i`` and a tabular policy draws its
            actions from a generator seeded ``(seed + i, 1)`` — a stream independent of the
            env's — so two policies rolled out with the same seed meet the same randomness
            wherever they agree (common random numbers).
        after_horizon: what a time-varying table does after its T steps: "stop" (truncate
            the episode at T — the finite-horizon problem the policy solves, default) or
            "last" (keep acting with ``policy[T-1]`` until the env ends the episode).
            Stationary and callable policies run until the env ends the episode.
        max_steps: an optional cap on episode length in addition to the env's own limit.
        twin: a :class:`ContinuousMDP`; if it has ``state_from_env``, a continuous policy is
            given the model state read off ``env.unwrapped`` (e.g. the pendulum's (θ, θ̇))
            instead of the observation.
        observations: give the policy the env's observations even with a ``twin`` (a model
            learned on observations); always so without one.
        initial_state: start every episode from this model state (state_dim,), written into
            ``env.unwrapped.state`` after the reset (needs ``twin.env_state``, and
            ``twin.observe`` with ``observations=True``), e.g. the pendulum hanging at rest.
        dtype: dtype of the state tensors given to a continuous policy; the twin's dtype by
            default (float64 without a twin).
        reset_seeds: "each" (episode i resets with ``seed + i``, default) or "first" (only
            the first reset is seeded; later starts are successive draws of the env's own
            generator — the convention of :func:`pgm_control.envs.evaluate_policy`).
        record: keep each episode's states, actions, rewards and per-step seconds
            (:attr:`RolloutResult.episodes`).
        frame_every: with ``record``, keep ``env.render()`` every this many steps (0: none;
            the env needs ``render_mode="rgb_array"``).
        progress: show a tqdm bar over the episodes. Ctrl-C stops the run and returns the
            episodes that exist (:attr:`RolloutResult.interrupted`); before the first step
            it propagates.

    Returns:
        :class:`RolloutResult` with per-episode returns, lengths, successes and truncations.
    """
    made = False
    if isinstance(env, ContinuousMDP):
        if env.gym_id is None:
            raise ValueError("`env` is a ContinuousMDP without `gym_id`: pass a gymnasium env")
        twin = env if twin is None else twin
        env, made = gym.make(env.gym_id), True
    elif isinstance(env, str):
        env, made = gym.make(env), True
    try:
        return _rollout(
            env, policy, episodes, seed, after_horizon=after_horizon, max_steps=max_steps,
            twin=twin, observations=observations, initial_state=initial_state, dtype=dtype,
            reset_seeds=reset_seeds, record=record, frame_every=frame_every, progress=progress,
        )  # fmt: skip
    finally:
        if made:
            env.close()


def _rollout(
    env, policy, episodes, seed, *, after_horizon, max_steps, twin, observations, initial_state,
    dtype, reset_seeds, record, frame_every, progress,
) -> RolloutResult:  # fmt: skip
    if not hasattr(env, "reset") or not hasattr(env, "step"):
        raise TypeError(f"`env` must be a gymnasium env or an env id, got {type(env).__name__}")
    episodes = check_positive_int("episodes", episodes)
    seed = check_int("seed", seed)
    max_steps = check_optional_positive_int("max_steps", max_steps)
    frame_every = check_int("frame_every", frame_every)
    if frame_every < 0:
        raise ValueError(f"`frame_every` must be >= 0 (0: no frames), got {frame_every}")
    if after_horizon not in AFTER_HORIZON:
        raise ValueError(f"`after_horizon` must be one of {AFTER_HORIZON}, got {after_horizon!r}")
    if reset_seeds not in RESET_SEEDS:
        raise ValueError(f"`reset_seeds` must be one of {RESET_SEEDS}, got {reset_seeds!r}")
    if twin is not None and not isinstance(twin, ContinuousMDP):
        raise TypeError(f"`twin` must be a ContinuousMDP or None, got {type(twin).__name__}")
    if _is_table(policy):
        if not isinstance(env.observation_space, gym.spaces.Discrete) or not isinstance(
            env.action_space, gym.spaces.Discrete
        ):
            raise ValueError(
                "`env` must have Discrete observation and action spaces for a tabular policy; "
                f"got {env.observation_space} and {env.action_space}"
            )
        agent = _TableAgent(policy, env)
        read = _observation
    else:
        agent = _CallableAgent(policy)
        read = _state_reader(env, twin, observations, dtype)
    start = _initial_state(initial_state, twin, observations)
    limit = None
    if after_horizon == "stop" and not agent.stationary:
        limit = agent.horizon
    if max_steps is not None:
        limit = max_steps if limit is None else min(limit, max_steps)

    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    successes = np.zeros(episodes, dtype=bool)
    truncated_all = np.zeros(episodes, dtype=bool)
    recorded = [] if record else None
    done, interrupted = 0, False
    bar = tqdm(total=episodes, desc="rollout", unit="episode", disable=not progress, leave=False)
    for ep in range(episodes):
        episode_seed = seed + ep
        reset_seed = episode_seed if reset_seeds == "each" or ep == 0 else None
        obs, _ = env.reset(seed=reset_seed)
        if start is not None:
            env.unwrapped.state = twin.env_state(start)
            if twin.observe is not None:
                obs = np.asarray(twin.observe(start), dtype=np.float32)
        agent.begin(episode_seed)
        x = read(obs)
        states, actions, rewards, seconds, frames = [x], [], [], [], []
        if record and frame_every:
            frames.append(env.render())
        total, t, reward = 0.0, 0, 0.0
        terminated = truncated = False
        try:
            while not (terminated or truncated):
                if limit is not None and t >= limit:
                    truncated = True
                    break
                tic = time.perf_counter()
                action = agent(x, t)
                toc = time.perf_counter()
                action = _env_action(action, env, agent, t)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                t += 1
                x = read(obs)
                if record:
                    states.append(x)
                    actions.append(action)
                    rewards.append(float(reward))
                    seconds.append(toc - tic)
                    if frame_every and t % frame_every == 0:
                        frames.append(env.render())
        except KeyboardInterrupt:
            if done == 0 and t == 0:
                bar.close()
                raise  # nothing to return yet
            interrupted = True
            if t == 0:  # the cut episode took no step: leave it out
                break
        returns[ep], lengths[ep] = total, t
        successes[ep] = terminated and reward > 0
        truncated_all[ep] = not terminated
        if record:
            recorded.append(_episode(states, actions, rewards, seconds, terminated, frames))
        done = ep + 1
        bar.update(1)
        if interrupted:
            break
    bar.close()
    return RolloutResult(
        returns[:done], lengths[:done], successes[:done], truncated_all[:done], recorded,
        interrupted,
    )  # fmt: skip


def _observation(obs):
    return obs


def _state_reader(env, twin, observations, dtype):
    """obs -> the state tensor a continuous policy is given: the twin's model state where it
    can read one (``state_from_env``) and observations are not asked for, else the obs."""
    if dtype is None:
        dtype = torch.float64 if twin is None else twin.dtype
    if twin is not None and twin.state_from_env is not None and not observations:
        return lambda obs: twin.state_from_env(env.unwrapped).to(dtype)
    return lambda obs: torch.as_tensor(np.asarray(obs), dtype=dtype)


def _initial_state(initial_state, twin, observations):
    """The fixed start as a float64 (state_dim,) tensor, checked against the twin, or None."""
    if initial_state is None:
        return None
    if twin is None or twin.env_state is None:
        raise ValueError(
            "`initial_state` needs a `twin` ContinuousMDP with `env_state`, which writes the "
            "state into the env"
        )
    if observations and twin.observe is None:
        raise ValueError("`initial_state` with `observations=True` needs `twin.observe`")
    start = torch.as_tensor(np.asarray(initial_state), dtype=torch.float64)
    if start.shape != (twin.state_dim,):
        raise ValueError(
            f"`initial_state` must have shape ({twin.state_dim},), got {tuple(start.shape)}"
        )
    if not torch.isfinite(start).all():
        raise ValueError(f"`initial_state` must be finite, got {start.tolist()}")
    return start


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _episode(states, actions, rewards, seconds, terminated, frames) -> Episode:
    rewards = np.asarray(rewards)
    actions = [np.asarray(a).reshape(-1) for a in actions]
    return Episode(
        float(rewards.sum()), rewards, np.stack([_numpy(x) for x in states]),
        np.stack(actions) if actions else np.zeros((0, 0), dtype=np.float32),
        np.asarray(seconds), bool(terminated), frames,
    )  # fmt: skip


def run_episode(
    env,
    act: typing.Callable,
    *,
    steps: int,
    seed: int,
    mdp: ContinuousMDP | None = None,
    initial_state=None,
    observations: bool = False,
    dtype: torch.dtype | None = None,
    frame_every: int = 0,
) -> Episode:
    """One recorded episode of ``act`` (state tensor → action) in a gymnasium ``env``, up to
    ``steps`` steps: ``rollout(env, act, 1, seed, max_steps=steps, twin=mdp, record=True)``.

    Args:
        env: a gymnasium env (``render_mode="rgb_array"`` for frames).
        act: e.g. ``MPPI(...).act``; timed per call.
        steps: the most steps to take (the env may stop earlier).
        seed: passed to ``env.reset``.
        mdp: a torch twin with ``state_from_env`` (e.g. :func:`pgm_control.envs.pendulum`): the
            controller is given the env's true state (θ, θ̇) read off ``env.unwrapped``.
        initial_state: start from this model state instead of the reset distribution (needs
            ``mdp.env_state`` and ``mdp.observe``), e.g. the pendulum hanging at rest ``[π, 0]``.
        observations: give the controller the env's observations even when ``mdp`` is given
            (for a model learned on observations); always so without ``mdp``.
        dtype: dtype of the state tensors given to ``act`` (``mdp``'s, or float64 without one).
        frame_every: keep ``env.render()`` every this many steps (0: none).
    """
    steps = check_positive_int("steps", steps)
    if initial_state is not None and (mdp is None or mdp.observe is None):
        raise ValueError("`initial_state` needs an `mdp` with `env_state` and `observe`")
    result = rollout(
        env, act, 1, seed, max_steps=steps, twin=mdp, observations=observations,
        initial_state=initial_state, dtype=dtype, record=True, frame_every=frame_every,
    )  # fmt: skip
    return result.episodes[0]
