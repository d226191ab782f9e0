"""Expert demonstrations: the data every inverse-RL algorithm learns a reward from.

A demonstration is a trajectory τ = (s₀, a₀, s₁, …, a_{T-1}, s_T) of a tabular MDP, stored as
integer tensors ``states[n, t]`` (N, T + 1) and ``actions[n, t]`` (N, T). An episode that ended
before the horizon (a gymnasium episode that *terminated* in a hole or at the goal) keeps its
observed prefix: ``mask[n, t]`` is True where step t (aₜ and sₜ₊₁) was seen, a prefix of each
row; the unseen tail is padded with the last state and action 0 and must be marginalised out by
the learner (see :func:`pgm_control.maxent_irl`).

Built from arrays (:class:`Demonstrations`), from sampled trajectories
(:class:`~pgm_control.Trajectories`, :func:`sample_demonstrations`) or from episodes recorded in
a real env (:meth:`Demonstrations.from_rollout` on :func:`pgm_control.rollout` with
``record=True``). The empirical statistics the MaxEnt IRL gradient needs (Levine 2018, IRL
lecture: ∇ψL = E_expert[∇ψ r_ψ] − E_{p(τ|O,ψ)}[∇ψ r_ψ]) are :meth:`~Demonstrations.counts` and
:meth:`~Demonstrations.feature_expectations`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .forward import policy_state_distribution
from .mdp import TabularMDP, _check_mdp, _check_policy
from .rollout import Episode, RolloutResult
from .sampling import Trajectories, sample_trajectories
from .validation import check_int, check_positive_int

__all__ = ["Demonstrations", "sample_demonstrations", "as_demonstrations", "expected_counts"]


def _int_tensor(name: str, x, ndim: int) -> torch.Tensor:
    """``x`` as an int64 tensor of rank ``ndim`` (integer-valued floats are refused)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"`{name}` must be an integer array or tensor, got {type(x)}") from exc
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"`{name}` must hold integer indices, got dtype {t.dtype}")
    if t.ndim != ndim:
        raise ValueError(f"`{name}` must have {ndim} dimensions, got shape {tuple(t.shape)}")
    return t.to(torch.long)


@dataclasses.dataclass
class Demonstrations:
    """N demonstrated trajectories of a tabular MDP (a plain, picklable container).

    Args:
        states: sₜ indices, indexed as states[n, t], shape (N, T + 1), integers ≥ 0.
        actions: aₜ indices, indexed as actions[n, t], shape (N, T), integers ≥ 0.
        mask: optional bool (N, T): True where step t was observed; each row a prefix
            (True…True False…False) — an episode that ended early. None: every step observed.

    The tensors stay on the device they were given on; learners move them to the MDP's.
    """

    states: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor | None = None

    def __post_init__(self):
        states = _int_tensor("states", self.states, 2)
        actions = _int_tensor("actions", self.actions, 2)
        N, T = actions.shape
        if N < 1 or T < 1:
            raise ValueError(
                "`actions` must hold at least one trajectory of one step, got "
                f"{tuple(actions.shape)}"
            )
        if states.shape != (N, T + 1):
            raise ValueError(
                f"`states` must have shape (N, T + 1) = {(N, T + 1)} to match `actions` of shape "
                f"(N, T) = {(N, T)}, got {tuple(states.shape)}"
            )
        if (states < 0).any() or (actions < 0).any():
            raise ValueError("`states` and `actions` must be non-negative indices")
        mask = self.mask
        if mask is not None:
            mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
            if mask.dtype != torch.bool:
                raise TypeError(f"`mask` must be a bool tensor (N, T), got dtype {mask.dtype}")
            if mask.shape != (N, T):
                raise ValueError(
                    f"`mask` must have shape (N, T) = {(N, T)}, got {tuple(mask.shape)}"
                )
            mask = mask.to(actions.device)
            if (mask[:, 1:] & ~mask[:, :-1]).any():
                raise ValueError(
                    "`mask` rows must be prefixes (observed steps first, then unobserved ones): "
                    "an episode cannot resume after it ended"
                )
            if mask.all():
                mask = None
        self.states, self.actions, self.mask = states, actions.to(states.device), mask

    # ------------------------------------------------------------ shape
    @property
    def num_demonstrations(self) -> int:
        """N."""
        return self.actions.shape[0]

    @property
    def horizon(self) -> int:
        """T, the number of decisions per trajectory."""
        return self.actions.shape[1]

    @property
    def lengths(self) -> torch.Tensor:
        """Observed steps per trajectory, shape (N,) (T where no mask)."""
        if self.mask is None:
            return torch.full((self.num_demonstrations,), self.horizon, dtype=torch.long)
        return self.mask.sum(-1)

    def __len__(self) -> int:
        return self.num_demonstrations

    def __repr__(self) -> str:
        ended = "" if self.mask is None else f", ended early={int((~self.mask[:, -1]).sum())}"
        return f"Demonstrations(N={self.num_demonstrations}, T={self.horizon}{ended})"

    def to(self, device) -> Demonstrations:
        """The same demonstrations on ``device``."""
        mask = None if self.mask is None else self.mask.to(device)
        return Demonstrations(self.states.to(device), self.actions.to(device), mask)

    def step_weights(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """1 where step t of trajectory n was observed, else 0, shape (N, T), in ``dtype``."""
        if self.mask is None:
            return torch.ones(self.actions.shape, dtype=dtype, device=self.actions.device)
        return self.mask.to(dtype)

    # ------------------------------------------------------------ checks
    def check(self, mdp: TabularMDP, name: str = "demonstrations") -> Demonstrations:
        """Validate against ``mdp`` (indices in range, horizon T); return them on its device."""
        mdp = _check_mdp(mdp)
        S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
        if self.horizon != T:
            raise ValueError(
                f"`{name}` have horizon {self.horizon} (actions of shape "
                f"{tuple(self.actions.shape)}) but the MDP's horizon is T = {T}: give (N, T+1) "
                "states and (N, T) actions, or "
                f"build the MDP with `horizon={self.horizon}` (mdp.replace(horizon=...))"
            )
        if int(self.states.max()) >= S:
            raise ValueError(
                f"`{name}` contain state {int(self.states.max())}, out of range for an MDP with "
                f"S = {S} states (valid: 0..{S - 1})"
            )
        if int(self.actions.max()) >= A:
            raise ValueError(
                f"`{name}` contain action {int(self.actions.max())}, out of range for an MDP with "
                f"A = {A} actions (valid: 0..{A - 1})"
            )
        return self.to(mdp.device)

    # ------------------------------------------------------------ statistics
    def counts(
        self,
        num_states: int,
        num_actions: int,
        *,
        by_time: bool = True,
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Empirical visit frequencies p̂ₜ(s, a, s') = (1/N)·Σₙ 1[sₜ=s, aₜ=a, sₜ₊₁=s'].

        Observed steps only. Indexed as [t, s, a, s'], shape (T, S, A, S); with
        ``by_time=False`` summed over t, (S, A, S) — the empirical counterpart of
        :func:`expected_counts`. Sum over s' for (s, a) counts. In ``dtype``.
        """
        S = check_positive_int("num_states", num_states)
        A = check_positive_int("num_actions", num_actions)
        if int(self.states.max()) >= S or int(self.actions.max()) >= A:
            raise ValueError(f"`demonstrations` hold indices out of range for S = {S}, A = {A}")
        N, T = self.actions.shape
        flat = (self.states[:, :-1] * A + self.actions) * S + self.states[:, 1:]
        size = S * A * S
        if by_time:
            flat = flat + size * torch.arange(T, device=flat.device)
            size *= T
        w = self.step_weights(dtype).to(self.actions.device)
        c = torch.zeros(size, dtype=dtype, device=self.actions.device)
        c = c.index_add(0, flat.reshape(-1), w.reshape(-1)) / N
        return c.view(T, S, A, S) if by_time else c.view(S, A, S)

    def feature_expectations(self, features: torch.Tensor) -> torch.Tensor:
        """Empirical feature expectations (1/N)·Σₙ Σₜ f(sₜ, aₜ, sₜ₊₁), observed steps only.

        Args:
            features: (S, F), (S, A, F) or (S, A, S, F) tensor.

        Returns:
            (F,) in the features' dtype and device.
        """
        if not isinstance(features, torch.Tensor) or features.ndim not in (2, 3, 4):
            raise ValueError(
                "`features` must be a tensor of shape (S, F), (S, A, F) or (S, A, S, F), got "
                f"{getattr(features, 'shape', type(features).__name__)}"
            )
        s, a, s1 = (x.to(features.device) for x in (self.states[:, :-1], self.actions,
                                                     self.states[:, 1:]))  # fmt: skip
        if features.ndim == 2:
            f = features[s]
        elif features.ndim == 3:
            f = features[s, a]
        else:
            f = features[s, a, s1]  # (N, T, F)
        w = self.step_weights(features.dtype).to(features.device)
        return (w[..., None] * f).sum((0, 1)) / self.num_demonstrations

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_trajectories(cls, trajectories: Trajectories) -> Demonstrations:
        """From a :class:`~pgm_control.Trajectories` batch (states (N,T+1), actions (N,T))."""
        return cls(trajectories.states, trajectories.actions)

    @classmethod
    def from_rollout(cls, result: RolloutResult | list[Episode], horizon: int) -> Demonstrations:
        """From :func:`pgm_control.rollout` episodes recorded with ``record=True``.

        ``result`` is the :class:`RolloutResult` or its list of :class:`Episode`.

        An episode that ends before ``horizon`` (terminated) keeps its prefix; the rest is
        masked. States are the env's observation indices (an MDP whose ``from_gymnasium``
        added copy states maps them with ``state_to_obs``: use arrays then).

        Raises:
            ValueError: no recorded episodes, or an episode longer than ``horizon``.
        """
        T = check_positive_int("horizon", horizon)
        if isinstance(result, list) and all(isinstance(ep, Episode) for ep in result):
            episodes = result
        elif isinstance(result, RolloutResult):
            episodes = result.episodes
        else:
            raise TypeError(
                "`result` must be a RolloutResult or a list of Episode, got "
                f"{type(result).__name__}"
            )
        if not episodes:
            raise ValueError(
                "`result` holds no recorded episodes: call `rollout(..., record=True)`"
            )
        N = len(episodes)
        states = np.zeros((N, T + 1), dtype=np.int64)
        actions = np.zeros((N, T), dtype=np.int64)
        mask = np.zeros((N, T), dtype=bool)
        for n, ep in enumerate(episodes):
            s = np.asarray(ep.states).reshape(len(ep.states), -1)
            a = np.asarray(ep.actions).reshape(len(ep.actions), -1)
            if s.shape[1] != 1 or (len(a) and a.shape[1] != 1):
                raise ValueError(
                    "`result` episodes must be tabular (one state index and one action per "
                    f"step), got states of shape {np.shape(ep.states)}"
                )
            k = len(a)
            if k > T:
                raise ValueError(
                    f"`result` episode {n} has {k} steps, more than `horizon` = {T}: roll the "
                    "table out with after_horizon='stop' or pass the right horizon"
                )
            states[n, : k + 1] = s[:, 0]
            states[n, k + 1 :] = s[-1, 0]
            actions[n, :k] = a[:, 0]
            mask[n, :k] = True
        return cls(torch.as_tensor(states), torch.as_tensor(actions), torch.as_tensor(mask))


def as_demonstrations(x, name: str = "demonstrations") -> Demonstrations:
    """Coerce ``x`` to :class:`Demonstrations`.

    Accepts Demonstrations, :class:`~pgm_control.Trajectories`, or a ``(states, actions)``
    pair of arrays. A :class:`RolloutResult` needs a horizon: use ``Demonstrations.from_rollout``.
    """
    if isinstance(x, Demonstrations):
        return x
    if isinstance(x, Trajectories):
        return Demonstrations.from_trajectories(x)
    if isinstance(x, RolloutResult):
        raise TypeError(
            f"`{name}` is a RolloutResult: convert it with "
            "`Demonstrations.from_rollout(result, horizon=mdp.horizon)`"
        )
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return Demonstrations(x[0], x[1])
    raise TypeError(
        f"`{name}` must be Demonstrations, Trajectories or a (states, actions) pair of arrays, "
        f"got {type(x).__name__}"
    )


def sample_demonstrations(
    mdp: TabularMDP, policy, num_demonstrations: int, *, seed: int = 0
) -> Demonstrations:
    """Roll ``policy`` out ``num_demonstrations`` times in the true dynamics of ``mdp``.

    τ ~ p0(s₀)·Πₜ πₜ(aₜ|sₜ)·P(sₜ₊₁|sₜ,aₜ), drawn by :func:`pgm_control.sample_trajectories`
    from a local generator seeded with ``seed`` (the caller's global RNGs are untouched).

    Args:
        mdp: a :class:`TabularMDP`.
        policy: (T, S, A) or (S, A) action probabilities, or anything with a ``policy``
            attribute holding them (:class:`~pgm_control.SoftValues`, an ``IRLResult``).
        num_demonstrations: N ≥ 1.
        seed: an int.

    Returns:
        :class:`Demonstrations` on the MDP's device.
    """
    mdp = _check_mdp(mdp)
    if not isinstance(policy, (torch.Tensor, np.ndarray)) and hasattr(policy, "policy"):
        policy = policy.policy
    n = check_positive_int("num_demonstrations", num_demonstrations)
    traj = sample_trajectories(mdp, policy, n, seed=check_int("seed", seed))
    return Demonstrations.from_trajectories(traj)


def expected_counts(mdp: TabularMDP, policy) -> torch.Tensor:
    """Exact expected transition counts of ``policy`` in the true dynamics.

    ``ρ(s,a,s') = Σₜ dₜ(s)·πₜ(a|s)·P(s'|s,a)``, dₜ from the occupancy recursion
    (:func:`pgm_control.policy_state_distribution`): the limit of
    ``Demonstrations.counts(S, A, by_time=False)`` as N → ∞, and what MaxEnt IRL matches
    when it is given exact expert statistics.

    Args:
        mdp: a :class:`TabularMDP`.
        policy: (T, S, A) or (S, A) probabilities, or anything with a ``policy`` attribute.

    Returns:
        ρ, indexed [s, a, s'], shape (S, A, S), in the MDP's dtype; it sums to T.
    """
    mdp = _check_mdp(mdp)
    if not isinstance(policy, (torch.Tensor, np.ndarray)) and hasattr(policy, "policy"):
        policy = policy.policy
    pi = _check_policy(mdp, policy, "policy")
    d = policy_state_distribution(mdp, pi)[:-1]  # (T, S)
    sa = torch.einsum("ts,tsa->sa", d, pi)
    return sa[:, :, None] * mdp.transition
