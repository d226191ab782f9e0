"""A gymnasium env that samples a :class:`~pgm_control.TabularMDP`: the tables as a simulator.

The sample-based learners only ever see ``reset``/``step``; on a random or hand-made MDP this
env lets a test hold them to the exact routines of the same MDP. ``reset`` draws s₀ ~ p0,
``step(a)`` draws s' ~ P(·|s,a) and pays r(s,a,s'); an episode is truncated after
``max_episode_steps`` (default: the MDP's horizon T, so an episode is one trajectory of the
control model) and terminated on entering a state of ``mdp.terminal``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from .mdp import TabularMDP, _check_mdp
from .validation import check_optional_positive_int

__all__ = ["TabularEnv"]


class TabularEnv(gym.Env):
    """Discrete(S) observations, Discrete(A) actions, dynamics and rewards from the tables.

    Args:
        mdp: the :class:`~pgm_control.TabularMDP`.
        max_episode_steps: truncate after this many steps; None: ``mdp.horizon``.
        terminate_on_terminal: end the episode (``terminated=True``) on entering a state of
            ``mdp.terminal`` (if the MDP marks any).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        mdp: TabularMDP,
        *,
        max_episode_steps: int | None = None,
        terminate_on_terminal: bool = True,
    ):
        mdp = _check_mdp(mdp)
        self.mdp = mdp
        self.max_episode_steps = check_optional_positive_int("max_episode_steps", max_episode_steps)
        if self.max_episode_steps is None:
            self.max_episode_steps = mdp.horizon
        self._P = mdp.transition.detach().cpu().double().numpy()
        self._r = mdp.reward.detach().cpu().double().numpy()
        self._p0 = mdp.initial.detach().cpu().double().numpy()
        terminal = mdp.terminal if terminate_on_terminal else None
        S = mdp.num_states
        self._terminal = (
            np.zeros(S, dtype=bool) if terminal is None else terminal.cpu().numpy().astype(bool)
        )
        self.observation_space = gym.spaces.Discrete(S)
        self.action_space = gym.spaces.Discrete(mdp.num_actions)
        self._s = None
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._s = int(self._sample(self._p0))
        self._t = 0
        return self._s, {}

    def step(self, action):
        """One draw s' ~ P(·|s, a): returns (s', r(s, a, s'), terminated, truncated, {}).

        ``terminated`` when s' is a terminal state of the MDP, ``truncated`` when the episode
        reached ``max_episode_steps`` first.
        """
        if self._s is None:
            raise RuntimeError("call reset() before step()")
        a = int(action)
        s_next = int(self._sample(self._P[self._s, a]))
        reward = float(self._r[self._s, a, s_next])
        self._s = s_next
        self._t += 1
        terminated = bool(self._terminal[s_next])
        truncated = not terminated and self._t >= self.max_episode_steps
        return s_next, reward, terminated, truncated, {}

    def _sample(self, p: np.ndarray) -> int:
        cdf = np.cumsum(p)
        k = int(np.searchsorted(cdf, self.np_random.random() * cdf[-1], side="right"))
        return min(k, len(p) - 1)
