"""Finite-horizon tabular MDPs: the container every exact routine and Pyro model reads.

A :class:`TabularMDP` holds the true dynamics ``P[s, a, s']``, the reward ``r[s, a, s']`` (an
``(S, A)`` reward is broadcast over next states), the initial distribution ``p0[s]``, the
horizon ``T`` (decisions at t = 0..T-1, so trajectories hold states s_0..s_T) and the action
prior ``p(a|s)`` that the optimality model multiplies in (uniform unless given).

Inputs may be numpy arrays or torch tensors; they are stored as torch float64 (or the ``dtype``
asked for) on the device of the transition tensor. Every check raises a ``ValueError`` or
``TypeError`` that names the argument, so a bad table never turns into a silent NaN later.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch

from .dynamics import DenseDynamics, SparseDynamics, _safe_log, sparse_tables
from .gymnasium_tables import gymnasium_tables
from .validation import check_positive_int, check_probability, check_temperature

__all__ = ["TabularMDP", "random_mdp", "lottery_mdp", "chain_mdp"]

_SUM_TOL = 1e-6


def _sum_tolerance(dtype: torch.dtype, n: int) -> float:
    """How far a row of ``n`` probabilities may sum from 1: 1e-6, or √eps or n·eps if coarser.

    A row summed in ``dtype`` is off by ≈ n·eps (one rounding per entry), and a policy
    computed as exp(Q/α − V/α) by ≈ eps·|Q/α|; √eps (3.5e-4 in float32) lets float32 tables
    and the library's own float32 policies through, while a real mistake is far larger.
    float64 keeps the historic 1e-6.
    """
    eps = torch.finfo(dtype).eps
    return max(_SUM_TOL, eps**0.5, n * eps)


def _as_tensor(name: str, value: Any, dtype: torch.dtype, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach() if not value.requires_grad else value
    elif isinstance(value, (np.ndarray, list, tuple, float, int)):
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"`{name}` must be numeric array-like; got {type(value).__name__}"
            ) from exc
    else:
        raise TypeError(
            f"`{name}` must be a numpy array or torch tensor, got {type(value).__name__}"
        )
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold real numbers, got dtype {t.dtype}")
    return t.to(dtype=dtype, device=device)


def _check_finite(name: str, t: torch.Tensor, neg_inf_hint: str = "") -> None:
    if not torch.isfinite(t).all():
        bad = "NaN" if torch.isnan(t).any() else "inf"
        idx = tuple(torch.nonzero(~torch.isfinite(t))[0].tolist())
        value = "" if bad == "NaN" else f", value {t[idx].item()}"
        hint = neg_inf_hint if bad == "inf" and t[idx] < 0 else ""
        raise ValueError(
            f"`{name}` contains {bad} (first at index {idx}{value}); all entries must be "
            f"finite.{hint}"
        )


def _check_distribution(name: str, t: torch.Tensor, what: str) -> None:
    _check_finite(name, t)
    if (t < 0).any():
        idx = tuple(torch.nonzero(t < 0)[0].tolist())
        raise ValueError(f"`{name}` has a negative probability at index {idx}; {what} must be >= 0")
    sums = t.sum(-1)
    err = (sums - 1).abs()
    tol = _sum_tolerance(t.dtype, t.shape[-1])
    if (err > tol).any():
        idx = tuple(torch.nonzero(err > tol)[0].tolist())
        raise ValueError(
            f"`{name}` rows must sum to 1 over the last axis ({what}); row {idx} sums to "
            f"{sums[idx].item():.8g}. Normalise it, e.g. `{name} / {name}.sum(-1, keepdims=True)`."
        )


_REWARD_HINT = (
    " A reward of -inf is not how this model forbids things: to forbid an action, give it"
    " probability 0 in `action_prior` (p(a|s) = 0); to make a move impossible, set its entry"
    " of `transition` to 0 (P(s'|s,a) = 0)."
)


def _check_sparse_values(name: str, values: torch.Tensor) -> None:
    """NaN/inf check of the stored values of a sparse ``transition`` or ``reward``."""
    _check_finite(name, values, _REWARD_HINT if name == "reward" else "")


# bool/int metadata that __post_init__ reads through numpy (a CUDA tensor cannot be)
_INDEX_FIELDS = ("terminal", "state_to_obs")


def _goal_mask(goal, S: int, device) -> torch.Tensor | None:
    """``goal_states`` as a bool mask (S,): from a bool mask or a list of state indices."""
    if goal is None:
        return None
    if isinstance(goal, torch.Tensor):
        goal = goal.detach().cpu().numpy()
    arr = np.asarray(goal)
    if arr.size == 0:
        return torch.zeros(S, dtype=torch.bool, device=device)
    if arr.ndim != 1:
        raise ValueError(
            f"`goal_states` must be a bool mask of shape (S,) = ({S},) or a list of state "
            f"indices, got shape {arr.shape}"
        )
    if arr.dtype == np.bool_:
        if arr.shape != (S,):
            raise ValueError(
                f"`goal_states` as a bool mask must have shape (S,) = ({S},), got {arr.shape}"
            )
        mask = arr
    elif np.issubdtype(arr.dtype, np.integer):
        if (arr < 0).any() or (arr >= S).any():
            raise ValueError(
                f"`goal_states` indices must lie in [0, S) = [0, {S}), got {arr.tolist()}"
            )
        mask = np.zeros(S, dtype=bool)
        mask[arr] = True
    else:
        raise TypeError(
            f"`goal_states` must be a bool mask (S,) or a list of int state indices, got dtype "
            f"{arr.dtype}"
        )
    return torch.as_tensor(mask, dtype=torch.bool, device=device)


@dataclasses.dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite-horizon MDP with tabular states and actions.

    Args:
        transition: ``P[s, a, s']``, shape (S, A, S); each row ``P[s, a]`` sums to 1. A torch
            sparse COO tensor makes the MDP sparse (``is_sparse``): stored coalesced, read by
            every exact routine through padded successor lists (``dynamics``) at a cost ∝ the
            non-zeros; no index may repeat or lie out of range, every (s, a) needs a successor.
        reward: ``r[s, a]`` (S, A) or ``r[s, a, s']`` (S, A, S); finite. With a sparse
            ``transition`` it may be a sparse COO (S, A, S) too (zero off its entries) and is
            stored as a COO tensor on P's support.
        initial: ``p0[s]``, shape (S,), sums to 1.
        horizon: T >= 1, the number of decisions.
        action_prior: ``p(a|s)``, shape (S, A), rows sum to 1; uniform if None.
        dtype: storage dtype (float64 by default); the device follows ``transition``.
        name: a label used in reprs, plots and tables.
        terminal: optional bool mask (S,) of absorbing terminal states (informational).
        grid_shape: optional (rows, cols) when states are cells of a grid, for plotting.
        desc: optional grid description (e.g. FrozenLake's map) for plotting.
        state_to_obs: optional (S,) int map from each state to the env observation it stands
            for, when ``from_gymnasium`` had to add copy states (see there); None = identity.
        goal_states: optional states that count as success (reaching the goal), as a bool
            mask (S,) or a list of state indices; stored as a bool mask (S,). Tables report
            P(s_T ∈ goal); plots mark them. None: the MDP has no goal.
        action_names: optional name of each action, A strings (e.g. ``("left", "right")``);
            None: plots and tables say a0, a1, ...
        action_moves: optional (drow, dcol) grid displacement of each action, shape (A, 2)
            (e.g. ``(0, -1)`` for "left"), used to draw the policy as arrows; None: no arrows.

    The constructors fill the metadata in (``from_gymnasium``, ``chain_mdp``, ``lottery_mdp``);
    it never changes any computation, only what plots and the command line show.

    The reward is always stored as ``r[s, a, s']``: under the exact posterior r(s,a,s')
    and its average over s' give different answers (see ``from_gymnasium``).
    """

    transition: torch.Tensor
    reward: torch.Tensor
    initial: torch.Tensor
    horizon: int
    action_prior: torch.Tensor | None = None
    dtype: dataclasses.InitVar[torch.dtype | None] = None
    name: str = "tabular-mdp"
    terminal: torch.Tensor | None = None
    grid_shape: tuple[int, int] | None = None
    desc: Any = None
    state_to_obs: Any = None
    goal_states: Any = None
    action_names: tuple[str, ...] | None = None
    action_moves: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self, dtype):
        tr = self.transition
        if dtype is None:
            dtype = tr.dtype if isinstance(tr, torch.Tensor) and tr.is_floating_point() else None
            dtype = torch.float64 if dtype is None else dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"`dtype` must be a floating torch dtype, got {dtype!r}")
        device = tr.device if isinstance(tr, torch.Tensor) else torch.device("cpu")
        if isinstance(tr, torch.Tensor) and tr.is_sparse:
            # padded successor lists inside; the public tables stay COO on P's support
            P, r, dynamics = sparse_tables(
                tr, self.reward, dtype, device, _check_sparse_values, _sum_tolerance
            )
            S, A, _ = P.shape
        else:
            P, r = self._dense_tables(tr, dtype, device)
            S, A, _ = P.shape
            dynamics = DenseDynamics(P, r)

        p0 = _as_tensor("initial", self.initial, dtype, device)
        if p0.shape != (S,):
            raise ValueError(f"`initial` must have shape (S,) = {(S,)}, got {tuple(p0.shape)}")
        _check_distribution("initial", p0, "p0 is a distribution over states")

        horizon = check_positive_int("horizon", self.horizon)  # T, the number of decisions

        if self.action_prior is None:
            prior = torch.full((S, A), 1.0 / A, dtype=dtype, device=device)
        else:
            prior = _as_tensor("action_prior", self.action_prior, dtype, device)
            if prior.shape != (S, A):
                raise ValueError(
                    f"`action_prior` must have shape (S, A) = {(S, A)}, got {tuple(prior.shape)}"
                )
            _check_distribution("action_prior", prior, "p(.|s) is a distribution over actions")

        terminal = self.terminal
        if terminal is not None:
            terminal = torch.as_tensor(np.asarray(terminal, dtype=bool), device=device)
            if terminal.shape != (S,):
                raise ValueError(
                    f"`terminal` must be a bool mask of shape (S,), got {tuple(terminal.shape)}"
                )

        object.__setattr__(self, "_dynamics", dynamics)
        object.__setattr__(self, "transition", P)
        object.__setattr__(self, "reward", r)
        object.__setattr__(self, "initial", p0)
        object.__setattr__(self, "horizon", horizon)
        object.__setattr__(self, "action_prior", prior)
        object.__setattr__(self, "terminal", terminal)
        if self.state_to_obs is not None:
            obs = torch.as_tensor(np.asarray(self.state_to_obs, dtype=np.int64), device=device)
            if obs.shape != (S,) or (obs < 0).any():
                raise ValueError("`state_to_obs` must be a non-negative int array of shape (S,)")
            object.__setattr__(self, "state_to_obs", obs)
        self._set_metadata(S, A, device)

    def _dense_tables(self, tr, dtype, device):
        """``transition`` and ``reward`` as checked dense (S, A, S) tensors."""
        P = _as_tensor("transition", tr, dtype, device)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(
                "`transition` must have shape (S, A, S) indexed as P[s, a, s'], "
                f"got {tuple(P.shape)}"
            )
        S, A, _ = P.shape
        if S < 1 or A < 1:
            raise ValueError(
                f"`transition` needs at least one state and one action, got {tuple(P.shape)}"
            )
        _check_distribution("transition", P, "P[s, a, :] is a distribution over next states")

        r = _as_tensor("reward", self.reward, dtype, device)
        if r.shape == (S, A):
            r = r.unsqueeze(-1).expand(S, A, S).contiguous()
        elif r.shape != (S, A, S):
            raise ValueError(
                f"`reward` must have shape (S, A) = {(S, A)} or (S, A, S) = {(S, A, S)} "
                f"to match `transition`, got {tuple(r.shape)}"
            )
        _check_finite("reward", r, _REWARD_HINT)
        return P, r

    def _set_metadata(self, S: int, A: int, device) -> None:
        """Validate and store goal_states (bool mask), action_names and action_moves."""
        object.__setattr__(self, "goal_states", _goal_mask(self.goal_states, S, device))
        names = self.action_names
        if names is not None:
            if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
                raise TypeError(f"`action_names` must be a tuple of A = {A} strings, got {names!r}")
            if len(names) != A or not all(isinstance(n, str) for n in names):
                raise ValueError(
                    f"`action_names` must hold one string per action, A = {A}; got {names!r}"
                )
            object.__setattr__(self, "action_names", tuple(names))
        moves = self.action_moves
        if moves is not None:
            if isinstance(moves, torch.Tensor):
                moves = moves.detach().cpu().numpy()
            try:
                arr = np.asarray(moves, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"`action_moves` must be numeric, one (drow, dcol) pair per action; "
                    f"got {moves!r}"
                ) from exc
            if arr.shape != (A, 2) or not np.isfinite(arr).all():
                raise ValueError(
                    f"`action_moves` must have shape (A, 2) = ({A}, 2), one finite (drow, dcol) "
                    f"grid displacement per action, got shape {arr.shape}"
                )
            object.__setattr__(self, "action_moves", tuple(map(tuple, arr.tolist())))

    # ------------------------------------------------------------------ views
    @property
    def num_states(self) -> int:
        return self.transition.shape[0]

    @property
    def num_actions(self) -> int:
        return self.transition.shape[1]

    @property
    def num_observations(self) -> int:
        """The env's number of observations: S, less any copy states ``from_gymnasium`` added.

        Copies are appended after the env's states, so ``values[..., :num_observations]`` and
        ``policy[..., :num_observations, :]`` are indexed by the env's observation directly.
        """
        if self.state_to_obs is None:
            return self.num_states
        return int(self.state_to_obs.max().item()) + 1

    @property
    def device(self) -> torch.device:
        return self.transition.device

    @property
    def float_dtype(self) -> torch.dtype:
        return self.transition.dtype

    @property
    def is_sparse(self) -> bool:
        """True when ``transition`` and ``reward`` are sparse COO tensors (S, A, S)."""
        return self._dynamics.is_sparse

    @property
    def dynamics(self) -> DenseDynamics | SparseDynamics:
        """The layout every exact routine reads P and r through (see :mod:`.dynamics`)."""
        return self._dynamics

    @property
    def log_transition(self) -> torch.Tensor:
        """log P[s, a, s'] with -inf for impossible moves (never clamped; gradient 0 there).

        Dense MDPs only: a sparse MDP's log P lives on its successor lists,
        ``mdp.dynamics.log_transition`` (K, S, A).
        """
        if self.is_sparse:
            raise TypeError(
                "`mdp` has sparse dynamics: its dense (S, A, S) log P does not exist; use "
                "`mdp.dynamics.log_transition` (successor lists) or `mdp.to_dense()` if small"
            )
        return _safe_log(self.transition)

    @property
    def log_action_prior(self) -> torch.Tensor:
        """log p(a|s), shape (S, A), -inf where the prior forbids an action (gradient 0 there)."""
        return _safe_log(self.action_prior)

    @property
    def log_initial(self) -> torch.Tensor:
        """log p0(s), shape (S,), -inf where p0 = 0 (gradient 0 there)."""
        return _safe_log(self.initial)

    @property
    def expected_reward(self) -> torch.Tensor:
        """r̄(s,a) = Σ_s' P(s'|s,a) r(s,a,s'), shape (S, A)."""
        if self.is_sparse:
            return self._dynamics.mean(self._dynamics.reward)
        return (self.transition * self.reward).sum(-1)

    @property
    def is_deterministic(self) -> bool:
        """True when every P[s, a] and p0 put all mass on one state."""
        if self.is_sparse:
            top = self._dynamics.prob.amax(0)
        else:
            top = self.transition.amax(-1)
        return bool((top == 1).all() and (self.initial.amax() == 1))

    def replace(self, **changes) -> TabularMDP:
        """A copy with some fields changed (validated again), e.g. ``mdp.replace(horizon=50)``."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in _INDEX_FIELDS:  # validated through numpy: hand them over from the CPU
            if isinstance(fields[name], torch.Tensor):
                fields[name] = fields[name].cpu()
        fields.update(changes)
        return TabularMDP(**fields)

    def with_reward(self, reward: torch.Tensor) -> TabularMDP:
        """A shallow copy with the dense (S, A, S) ``reward`` swapped in, P, p0 and the prior
        shared and NOT validated again (inner loops such as MaxEnt IRL's, where ``replace``
        would re-check the fixed tables at every step). Differentiable in ``reward``."""
        reward = torch.as_tensor(reward)
        S, A = self.num_states, self.num_actions
        if tuple(reward.shape) != (S, A, S):
            raise ValueError(f"`reward` must have shape (S, A, S) = {(S, A, S)}, got "
                             f"{tuple(reward.shape)}")  # fmt: skip
        m = copy.copy(self)
        object.__setattr__(m, "_dynamics", self._dynamics.with_reward(reward))
        if self.is_sparse:  # the public table stays a COO tensor on P's support
            idx = self.transition.indices()
            reward = torch.sparse_coo_tensor(
                idx,
                reward[idx[0], idx[1], idx[2]],
                (S, A, S),
                is_coalesced=True,
                check_invariants=False,
            )
        object.__setattr__(m, "reward", reward)
        return m

    def to(self, device=None, dtype: torch.dtype | None = None) -> TabularMDP:
        """The same MDP (metadata included) on another device and/or dtype."""
        dtype = dtype or self.float_dtype
        device = device or self.device
        tables = ("transition", "reward", "initial", "action_prior")
        return self.replace(
            **{name: getattr(self, name).to(device=device, dtype=dtype) for name in tables}
        )

    def to_dense(self) -> TabularMDP:
        """The same MDP with dense (S, A, S) tables (for small sparse MDPs; S²·A entries)."""
        if not self.is_sparse:
            return self
        return self.replace(transition=self.transition.to_dense(), reward=self.reward.to_dense())

    def __repr__(self) -> str:
        return (
            f"TabularMDP(name={self.name!r}, S={self.num_states}, A={self.num_actions}, "
            f"T={self.horizon}, dtype={self.float_dtype}, device={self.device}"
            f"{', sparse' if self.is_sparse else ''})"
        )

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_gymnasium(
        cls, env_or_id, horizon: int, *, dtype=torch.float64, sparse=None, **make_kwargs
    ):
        """Build the exact tabular MDP of a gymnasium toy-text env from its ``P`` table.

        Works for any env whose ``unwrapped`` has ``P[s][a] = [(prob, s', r, done), ...]`` and
        Discrete spaces: FrozenLake-v1 (4x4/8x8, slippery or not), CliffWalking-v1 (slippery or
        not), Taxi-v4.

        * The reward stays r(s, a, s'). Averaging it to r(s, a) first changes the exact
          posterior (it can then "camp" next to a goal it is paid for merely trying to reach).
        * Duplicate next states in a row are merged (probabilities summed). Where two outcomes
          reach the same s' with *different* rewards, s' is split into copies with identical
          dynamics (appended after the env's states, see ``state_to_obs``), so that r(s,a,s')
          stays deterministic and the posterior stays exact.
        * States entered with ``done=True`` are terminal: absorbing, with zero reward.
        * ``initial`` is ``unwrapped.initial_state_distrib``.
        * Metadata: ``goal_states`` are the ``G`` cells of the map (FrozenLake), otherwise the
          terminal states entered with the highest reward (CliffWalking's goal, Taxi's
          drop-offs); ``action_names`` (and, on grids, ``action_moves``) follow gymnasium's
          action order: FrozenLake left/down/right/up, CliffWalking up/right/down/left, Taxi
          south/north/east/west/pickup/dropoff.

        Args:
            env_or_id: a gymnasium env instance or an id such as ``"FrozenLake-v1"``.
            horizon: T >= 1.
            dtype: storage dtype.
            sparse: True stores ``transition`` and ``reward`` as sparse COO tensors, False
                dense; None (default) goes sparse only when the dense (S, A, S) table would
                exceed 2²¹ entries and hold ≥ 8× the non-zeros, so FrozenLake, CliffWalking
                and Taxi stay dense (the Pyro models and guides read dense tables).
            **make_kwargs: passed to ``gymnasium.make`` when an id is given
                (e.g. ``map_name="8x8"``, ``is_slippery=False``).
        """
        tables = gymnasium_tables(env_or_id, make_kwargs, sparse)
        return cls(**tables, horizon=horizon, dtype=dtype)


def random_mdp(
    num_states: int = 10,
    num_actions: int = 4,
    horizon: int = 15,
    *,
    seed: int = 0,
    concentration: float = 1.0,
    deterministic: bool = False,
    reward_scale: float = 1.0,
    reward_per_next_state: bool = True,
    random_action_prior: bool = False,
    dtype=torch.float64,
) -> TabularMDP:
    """A seeded random MDP: Dirichlet(concentration) dynamics, Normal(0, reward_scale) rewards.

    With ``deterministic=True`` each (s, a) moves to one random state and the start state is
    fixed, so the exact posterior needs no optimism fix (log p(O) = best ELBO).
    """
    num_states = check_positive_int("num_states", num_states)
    num_actions = check_positive_int("num_actions", num_actions)
    if concentration <= 0:
        raise ValueError(f"`concentration` must be > 0, got {concentration}")
    g = torch.Generator().manual_seed(seed)
    S, A = num_states, num_actions
    if deterministic:
        nxt = torch.randint(S, (S, A), generator=g)
        P = torch.nn.functional.one_hot(nxt, S).double()
        p0 = torch.zeros(S, dtype=torch.float64)
        p0[0] = 1.0
    else:
        gam = torch._standard_gamma(
            torch.full((S, A, S), float(concentration), dtype=torch.float64), g
        )
        P = gam / gam.sum(-1, keepdim=True)
        gam0 = torch._standard_gamma(torch.ones(S, dtype=torch.float64), g)
        p0 = gam0 / gam0.sum()
    shape = (S, A, S) if reward_per_next_state else (S, A)
    r = reward_scale * torch.randn(shape, generator=g, dtype=torch.float64)
    prior = None
    if random_action_prior:
        gp = torch._standard_gamma(torch.full((S, A), 2.0, dtype=torch.float64), g)
        prior = gp / gp.sum(-1, keepdim=True)
    return TabularMDP(
        P, r, p0, horizon, prior, dtype=dtype,
        name=f"random(S={S}, A={A}, seed={seed}{', det' if deterministic else ''})",
    )  # fmt: skip


def lottery_mdp(
    *,
    win_probability: float = 1e-4,
    jackpot: float = 10.0,
    ticket_price: float = 1.0,
    horizon: int = 1,
    dtype=torch.float64,
) -> TabularMDP:
    """The lecture's lottery: buying a ticket has a tiny chance of a huge reward.

    States: 0 = start, 1 = won (the goal), 2 = lost, 3 = kept the money (1-3 absorbing, zero
    reward). Actions: 0 = buy a ticket (pay ``ticket_price``; win ``jackpot`` with
    ``win_probability``), 1 = keep the money (reward 0).

    With the defaults at α = 1, E[r | buy] ≈ −1 < 0: the max-ent policy buys with probability
    0.27 (it only values the entropy of its choice), while the exact posterior believes a
    ticket wins with probability ≈ 0.69 instead of 1e-4 and buys with probability 0.54.
    """
    if not 0 < win_probability < 1:
        raise ValueError(f"`win_probability` must be in (0, 1), got {win_probability}")
    P = np.zeros((4, 2, 4))
    P[0, 0, 1] = win_probability
    P[0, 0, 2] = 1 - win_probability
    P[0, 1, 3] = 1.0
    for s in (1, 2, 3):
        P[s, :, s] = 1.0
    R = np.zeros((4, 2, 4))
    R[0, 0, 1] = jackpot - ticket_price
    R[0, 0, 2] = -ticket_price
    p0 = np.array([1.0, 0, 0, 0])
    return TabularMDP(
        P, R, p0, horizon, dtype=dtype, name="lottery",
        terminal=np.array([False, True, True, True]), goal_states=[1],
        action_names=("buy", "keep"),
    )  # fmt: skip


def chain_mdp(num_states: int = 5, horizon: int = 6, *, slip: float = 0.0, dtype=torch.float64):
    """A 1-D chain: action 0 moves left, 1 moves right (with prob ``slip`` the move reverses);
    reward 1 for being in the right-most state, the goal. Small and readable, for doctests and
    notebooks. States are the cells of a (1, S) grid.
    """
    slip = check_probability("slip", slip, open_high=True)
    S = check_positive_int("num_states", num_states, minimum=2)
    P = np.zeros((S, 2, S))
    for s in range(S):
        left, right = max(s - 1, 0), min(s + 1, S - 1)
        P[s, 0, left] += 1 - slip
        P[s, 0, right] += slip
        P[s, 1, right] += 1 - slip
        P[s, 1, left] += slip
    R = np.zeros((S, 2))
    R[S - 1] = 1.0
    p0 = np.zeros(S)
    p0[0] = 1.0
    return TabularMDP(
        P, R, p0, horizon, dtype=dtype, name=f"chain({S})", grid_shape=(1, S),
        goal_states=[S - 1], action_names=("left", "right"), action_moves=((0, -1), (0, 1)),
    )  # fmt: skip


def _check_temperature(temperature) -> float:
    return check_temperature(temperature)


def _check_mdp(mdp, where: str = "mdp") -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        hint = ""
        if hasattr(mdp, "dynamics"):
            hint = " A ContinuousMDP has no finite tables: use SVI or a planner instead."
        elif hasattr(mdp, "observation_space"):
            hint = " Wrap a gymnasium env with `TabularMDP.from_gymnasium(env, horizon)` first."
        raise TypeError(f"`{where}` must be a TabularMDP, got {type(mdp).__name__}.{hint}")
    return mdp


def _check_policy(mdp: TabularMDP, policy, name: str = "policy", *, log: bool = False):
    """Validate a (T,S,A) or stationary (S,A) policy; return (T,S,A) on the MDP's device."""
    if not isinstance(policy, torch.Tensor):
        try:
            policy = torch.as_tensor(policy, dtype=mdp.float_dtype)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"`{name}` must be a tensor or array of shape (T,S,A) or (S,A)"
            ) from exc
    if not policy.is_floating_point():
        policy = policy.to(mdp.float_dtype)
    policy = policy.to(mdp.device)
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    if policy.shape == (S, A):
        policy = policy.expand(T, S, A)
    elif policy.shape != (T, S, A):
        raise ValueError(
            f"`{name}` must have shape (T, S, A) = {(T, S, A)} or stationary (S, A) = {(S, A)}, "
            f"got {tuple(policy.shape)}"
        )
    if torch.isnan(policy).any():
        raise ValueError(f"`{name}` contains NaN")
    with torch.no_grad():
        if not log and (policy < 0).any():
            raise ValueError(f"`{name}` has negative probabilities; pass probabilities q(a|s)")
        _check_rows_normalised(name, policy, log=log, what="actions")
    return policy


def _check_rows_normalised(name: str, x: torch.Tensor, *, log: bool, what: str) -> None:
    """Rows (last axis) must sum to 1 (``log``: logsumexp to 0) within the dtype's tolerance."""
    probs = x.exp() if log else x
    err = (probs.sum(-1) - 1).abs().max().item()
    if err > _sum_tolerance(x.dtype, x.shape[-1]):
        if log:
            raise ValueError(
                f"`{name}` rows must be log-probabilities of a distribution over {what} "
                f"(logsumexp over the last axis = 0); the worst row is off by {err:.3g}. "
                "Normalise it, e.g. with `torch.log_softmax(logits, -1)`."
            )
        raise ValueError(
            f"`{name}` rows must be probabilities of a distribution over {what} (sum to 1); "
            f"the worst row is off by {err:.3g}. Normalise with softmax / division."
        )
