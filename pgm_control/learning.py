"""Model-based control as inference: learn p̂ by maximum likelihood, then plan in p̂ as if true.

The lecture's two steps. (1) min KL(p ‖ p̂) over trajectories is supervised learning::

    max_p̂ E_p[ log p̂(s₀) + Σₜ log p̂(sₜ₊₁ | sₜ, aₜ) + log p̂(Oₜ | sₜ, aₜ) ]

(model learning + reward learning) on transitions collected in the real environment.
(2) Certainty equivalence: pretend p̂ is the true model and infer p̂(aₜ | sₜ, O) in it — exactly
(soft value iteration) in a tabular p̂, by importance sampling / MPPI in a continuous one.

Both learned models are ordinary containers, so every routine of the library runs on them:

* tabular — :func:`fit_tabular_model`: Dirichlet–Categorical counts (the conjugate posterior of
  :func:`tabular_dynamics_model`, mean or MAP) and the empirical reward table r̂(s, a, s'),
  returned as a :class:`~pgm_control.TabularMDP`;
* continuous — :func:`fit_gaussian_dynamics`: a neural Gaussian p̂(s' − s, r | s, a)
  (:class:`GaussianDynamics`, a ``PyroModule``) fitted by SVI on its log-likelihood, turned
  into a :class:`~pgm_control.ContinuousMDP` by :meth:`GaussianDynamicsFit.to_mdp`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import typing

import gymnasium as gym
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from tqdm.auto import tqdm

from .continuous import ContinuousMDP
from .mdp import TabularMDP
from .rollout import rollout
from .validation import check_int, check_positive_float, check_positive_int

__all__ = [
    "Transitions",
    "collect_transitions",
    "tabular_dynamics_model",
    "fit_tabular_model",
    "evaluate_tabular_policy",
    "GaussianDynamics",
    "GaussianDynamicsFit",
    "fit_gaussian_dynamics",
]


class Transitions(typing.NamedTuple):
    """N transitions (s, a, r, s') from a real env, as torch tensors (in step order).

    States and actions are long indices for Discrete spaces, float64 (N, d) vectors for Box
    spaces (observations as the env returns them). ``terminated`` marks steps that ended in a
    terminal state (not a time limit); ``episode_start`` marks the first step of each episode.
    ``reset_states`` holds what ``env.reset`` returned for each episode: the samples of the
    env's own initial distribution (they differ from the episodes' first states only under
    exploring starts). None: take them from ``states[episode_start]``.
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    terminated: torch.Tensor
    episode_start: torch.Tensor
    reset_states: torch.Tensor | None = None

    @property
    def initial_states(self) -> torch.Tensor:
        """Samples of the env's initial state distribution, one per episode."""
        if self.reset_states is not None:
            return self.reset_states
        return self.states[self.episode_start]

    def __len__(self) -> int:
        return self.rewards.shape[0]


def _as_tensor(values, space) -> torch.Tensor:
    if isinstance(space, gym.spaces.Discrete):
        return torch.as_tensor(np.asarray(values, dtype=np.int64))
    return torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(len(values), -1)


def collect_transitions(
    env,
    policy=None,
    steps: int = 10_000,
    seed: int = 0,
    *,
    exploring_starts: bool = False,
    progress=True,
):
    """Step a gymnasium env ``steps`` times, resetting when an episode ends.

    Args:
        env: a gymnasium env, or an id string for ``gymnasium.make``.
        policy: ``policy(observation) -> action``; None for uniformly random actions
            (``env.action_space.sample()``, seeded). A NaN or infinite action (or
            observation) is refused with a ValueError naming the policy and the step.
        steps: the number of transitions to record.
        seed: seeds the first ``env.reset``, the action space and the exploring starts.
        exploring_starts: start every episode in a state drawn uniformly from the Discrete
            observation space instead of the env's reset state (the "exploring starts" of
            Sutton & Barto §5.3), leaving out states already seen to end an episode (holes,
            goals: terminal, absorbing in the model). A random walk from the reset state
            reaches states far from it rarely — FrozenLake's 4x4 state next to the goal ~140
            times in 20k steps — and a model fitted to it is noisy exactly there. The agent is
            moved through ``env.unwrapped.s``, where gymnasium's toy-text envs (FrozenLake,
            CliffWalking, Taxi) keep their state; the env's own reset states are still
            recorded (``Transitions.reset_states``) for the initial distribution.
        progress: show a tqdm progress bar.

    Returns:
        :class:`Transitions`.
    """
    if isinstance(env, str):
        env = gym.make(env)
    if not hasattr(env, "step") or not hasattr(env, "action_space"):
        raise TypeError(f"`env` must be a gymnasium env or an env id, got {type(env).__name__}")
    steps = check_positive_int("steps", steps)
    seed = check_int("seed", seed)
    if policy is not None and not callable(policy):
        raise TypeError("`policy` must be a callable observation -> action, or None for random")
    name = env.spec.id if env.spec else type(env).__name__
    if exploring_starts and not isinstance(env.observation_space, gym.spaces.Discrete):
        raise ValueError(
            "`exploring_starts` needs a Discrete observation space (gymnasium's toy-text envs: "
            f"FrozenLake, CliffWalking, Taxi); {name} has {env.observation_space}"
        )
    who = "uniform random" if policy is None else getattr(policy, "__qualname__", repr(policy))
    # Discrete values are integers, never NaN: only Box actions / observations need the check
    check_action = not isinstance(env.action_space, gym.spaces.Discrete)
    check_obs = not isinstance(env.observation_space, gym.spaces.Discrete)
    rng = np.random.default_rng([int(seed), 2])  # independent of the env's and actions' streams
    ended = set()  # states seen to end an episode: never chosen as exploring starts

    def reset(**kwargs):
        obs, _ = env.reset(**kwargs)
        if check_obs:
            _check_finite(obs, "observation", "env.reset", len(rows["s"]), who)
        rows["reset"].append(obs)
        if exploring_starts:
            if not hasattr(env.unwrapped, "s"):
                raise ValueError(
                    "`exploring_starts` moves the agent through `env.unwrapped.s`, where "
                    f"gymnasium's toy-text envs keep their state; {name} has no such attribute"
                )
            first = int(env.observation_space.start)
            states = range(first, first + int(env.observation_space.n))
            candidates = [x for x in states if x not in ended]
            if candidates:  # else every state ended an episode: keep the env's reset state
                obs = type(obs)(candidates[rng.integers(len(candidates))])
                env.unwrapped.s = obs
        return obs

    env.action_space.seed(int(seed))
    rows = {k: [] for k in ("s", "a", "r", "s2", "term", "start", "reset")}
    obs = reset(seed=int(seed))
    start = True
    for step in tqdm(
        range(steps), desc="collecting transitions", disable=not progress, leave=False
    ):
        action = env.action_space.sample() if policy is None else policy(obs)
        if check_action:
            _check_finite(action, "action", f"the policy {who!r}", step, who)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        if check_obs:
            _check_finite(next_obs, "observation", "env.step", step, who)
        if not math.isfinite(reward):
            _check_finite(reward, "reward", "env.step", step, who)
        for key, value in zip(rows, (obs, action, reward, next_obs, terminated, start)):
            rows[key].append(value)
        if terminated and exploring_starts:
            ended.add(int(next_obs))
        start = terminated or truncated
        obs = reset() if start else next_obs
    if start:  # the reset after the last step began no recorded episode
        rows["reset"].pop()
    return Transitions(
        _as_tensor(rows["s"], env.observation_space),
        _as_tensor(rows["a"], env.action_space),
        torch.as_tensor(np.asarray(rows["r"], dtype=np.float64)),
        _as_tensor(rows["s2"], env.observation_space),
        torch.as_tensor(np.asarray(rows["term"], dtype=bool)),
        torch.as_tensor(np.asarray(rows["start"], dtype=bool)),
        _as_tensor(rows["reset"], env.observation_space),
    )


def _check_finite(value, what: str, source: str, step: int, who: str) -> None:
    """Refuse a NaN / infinite action, observation or reward before it is recorded."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return  # not numeric (e.g. a dict observation): nothing to check
    if not np.isfinite(array).all():
        hint = "check the policy" if what == "action" else "check the env"
        raise ValueError(
            f"collect_transitions: {source} gave a non-finite {what} {array.tolist()} at step "
            f"{step} (policy: {who}); {hint} — a NaN would be recorded silently and poison the "
            "fitted model"
        )


# ---------------------------------------------------------------------------- tabular
def _check_tabular_data(transitions, num_states, num_actions):
    if not isinstance(transitions, Transitions):
        raise TypeError(f"`transitions` must be Transitions, got {type(transitions).__name__}")
    check_positive_int("num_states", num_states)
    check_positive_int("num_actions", num_actions)
    s, a, s2 = transitions.states, transitions.actions, transitions.next_states
    if s.is_floating_point() or a.is_floating_point() or s.ndim != 1 or a.ndim != 1:
        raise ValueError("tabular models need integer state and action indices (Discrete spaces)")
    for name, t, n in (
        ("states", s, num_states),
        ("actions", a, num_actions),
        ("next_states", s2, num_states),
    ):
        if len(t) and (t.min() < 0 or t.max() >= n):
            raise ValueError(
                f"`transitions.{name}` must lie in [0, {n}), got [{t.min()}, {t.max()}]"
            )


def tabular_dynamics_model(
    states, actions, next_states, num_states, num_actions, *, concentration=1.0,
    dtype=torch.float64,
):  # fmt: skip
    """The Pyro model whose posterior :func:`fit_tabular_model` computes in closed form::

        P[s, a, ·] ~ Dirichlet(c·1)            for every (s, a)
        s'ₙ ~ Categorical(P[sₙ, aₙ, ·])        for every transition n

    By conjugacy p(P[s,a] | data) = Dirichlet(c + N[s,a,·]) with counts N. ``dtype`` is that
    of P (float64 by default, as :func:`fit_tabular_model` computes it).
    """
    S, A = num_states, num_actions
    conc = torch.full((S,), float(concentration), dtype=dtype)
    with pyro.plate("s", S, dim=-2), pyro.plate("a", A, dim=-1):
        P = pyro.sample("P", dist.Dirichlet(conc))  # indexed as P[s, a, s']
    with pyro.plate("transitions", len(states)):
        pyro.sample("s_next", dist.Categorical(probs=P[states, actions]), obs=next_states)


def fit_tabular_model(
    transitions: Transitions,
    num_states: int,
    num_actions: int,
    horizon: int,
    *,
    concentration: float = 1.0,
    estimate: str = "map",
    name: str = "learned",
    dtype: torch.dtype = torch.float64,
) -> TabularMDP:
    """p̂ from Dirichlet–Categorical counts, r̂ from the rewards seen: a :class:`TabularMDP`.

    ``P̂[s,a,s'] = (c − 1 + N) / (S·(c − 1) + N[s,a])`` (MAP, needs c ≥ 1; the default c = 1
    gives the lecture's maximum likelihood N/N[s,a]) or ``(c + N[s,a,s']) / (S·c + N[s,a])``
    (posterior mean: with c = 1 and 16 states a row seen 30 times is still a third uniform).
    Pairs never tried keep the prior's mean, uniform.

    ``r̂(s,a,s')`` is the average reward observed on that transition (the maximum likelihood of
    a Gaussian reward), 0 where never observed. States entered with ``terminated`` become
    absorbing with zero reward, the convention of ``TabularMDP.from_gymnasium``. ``p̂0`` is the
    same Dirichlet estimate from the env's reset states (``transitions.initial_states``).

    Args:
        transitions: from :func:`collect_transitions` in a Discrete env.
        num_states, num_actions: S, A.
        horizon: T of the returned MDP.
        concentration: c > 0 of the symmetric Dirichlet prior.
        estimate: "map" (maximum likelihood for c = 1) or "mean".
        name: the returned MDP's label.
        dtype: of the returned MDP's tables. The counts and averages are formed in float64
            whatever the dtype (torch's default dtype plays no part) and then cast.
    """
    _check_tabular_data(transitions, num_states, num_actions)
    horizon = check_positive_int("horizon", horizon)
    if estimate not in ("mean", "map"):
        raise ValueError(f"`estimate` must be 'mean' or 'map', got {estimate!r}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"`dtype` must be torch.float32 or torch.float64, got {dtype!r}")
    c = check_positive_float("concentration", concentration)
    if estimate == "map" and c < 1:
        raise ValueError(
            "the Dirichlet MAP needs `concentration` >= 1 (below 1 the mode is a corner)"
        )
    S, A = num_states, num_actions
    s, a, s2, r = (
        transitions.states,
        transitions.actions,
        transitions.next_states,
        transitions.rewards,
    )
    counts = torch.zeros(S, A, S, dtype=torch.float64)  # indexed as N[s, a, s']
    counts.index_put_((s, a, s2), torch.ones(len(s), dtype=torch.float64), accumulate=True)
    reward_sum = torch.zeros(S, A, S, dtype=torch.float64)
    reward_sum.index_put_((s, a, s2), r.to(torch.float64), accumulate=True)
    reward = torch.where(counts > 0, reward_sum / counts.clamp(min=1), torch.zeros_like(counts))
    P = _dirichlet_estimate(counts, c if estimate == "mean" else c - 1)
    terminal = torch.zeros(S, dtype=torch.bool)
    terminal[s2[transitions.terminated]] = True
    P[terminal] = 0.0
    for t_state in terminal.nonzero().squeeze(-1).tolist():
        P[t_state, :, t_state] = 1.0
    reward[terminal] = 0.0
    starts = torch.zeros(S, dtype=torch.float64)
    starts.index_put_(
        (transitions.initial_states,), torch.ones((), dtype=torch.float64), accumulate=True
    )
    initial = _dirichlet_estimate(starts, c if estimate == "mean" else c - 1)
    return TabularMDP(
        P.to(dtype), reward.to(dtype), initial.to(dtype), horizon, name=name, terminal=terminal
    )


def _dirichlet_estimate(n: torch.Tensor, prior: float) -> torch.Tensor:
    """(n + prior) / Σ(n + prior) over the last dim, uniform where that total is 0."""
    total = n.sum(-1, keepdim=True) + n.shape[-1] * prior
    uniform = torch.full_like(n, 1.0 / n.shape[-1])
    tiny = torch.finfo(n.dtype).tiny
    return torch.where(total > 0, (n + prior) / total.clamp(min=tiny), uniform)


def evaluate_tabular_policy(
    env, policy: torch.Tensor, *, episodes: int, seed: int = 0
) -> np.ndarray:
    """Each episode's return of a (T, S, A) or (S, A) policy in a Discrete gymnasium env.

    ``rollout(env, policy, episodes, seed).returns`` (episode i seeded ``seed + i``, so two
    policies evaluated with the same seed meet the same randomness wherever they agree).
    A time-varying policy's episode ends after its T steps (the problem it solves).
    """
    return rollout(env, policy, episodes, seed, after_horizon="stop").returns


# ------------------------------------------------------------------------- continuous
class GaussianDynamics(PyroModule):
    """p̂(s' − s, r | s, a) = N(μθ(s, a), diag σ²): a neural Gaussian dynamics and reward model.

    An MLP on standardised inputs (s, a) predicts the standardised change of state and (if
    ``learn_reward``) the reward; σ is one learned scale per output. ``forward`` is the Pyro
    model of a batch of transitions; :meth:`predict` gives (mean, scale) in data units.

    Its parameters belong to the module (``PyroParam`` / ``nn.Parameter``), never to Pyro's
    global param store: run it under ``pyro.settings.context(module_local_params=True)``, as
    :func:`fit_gaussian_dynamics` and :meth:`GaussianDynamicsFit.predict` do. It pickles (and
    ``torch.save``-s) with its weights.

    Args:
        state_dim, action_dim: sizes of s and a.
        hidden: widths of the MLP's hidden layers.
        learn_reward: also predict r.
        stats: (input mean, input std, output mean, output std) for the standardisation, or
            None for (0, 1).
        dtype: of the weights and statistics. The weights are drawn in float64 and then cast,
            so a float32 model starts from the float64 one's weights, rounded.
    """

    def __init__(
        self, state_dim, action_dim, *, hidden=(128, 128), learn_reward=True, stats=None,
        dtype=torch.float64,
    ):  # fmt: skip
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.learn_reward = learn_reward
        out_dim = state_dim + int(learn_reward)
        layers, width = [], state_dim + action_dim
        for h in hidden:
            layers += [torch.nn.Linear(width, h, dtype=torch.float64), torch.nn.SiLU()]
            width = h
        layers.append(torch.nn.Linear(width, out_dim, dtype=torch.float64))
        self.net = torch.nn.Sequential(*layers).to(dtype)
        self.log_scale = PyroParam(torch.zeros(out_dim, dtype=dtype))
        in_dim = state_dim + action_dim
        in_mean, in_std, out_mean, out_std = stats or (
            torch.zeros(in_dim, dtype=dtype), torch.ones(in_dim, dtype=dtype),
            torch.zeros(out_dim, dtype=dtype), torch.ones(out_dim, dtype=dtype),
        )  # fmt: skip
        for key, value in (
            ("in_mean", in_mean),
            ("in_std", in_std),
            ("out_mean", out_mean),
            ("out_std", out_std),
        ):
            # Python numbers straight into ``dtype``: not rounded through torch's default dtype
            self.register_buffer(key, torch.as_tensor(value, dtype=dtype))

    def predict(self, states, actions):
        """Mean (..., out_dim) and scale (out_dim,) of [s' − s, r] in data units."""
        batch = torch.broadcast_shapes(states.shape[:-1], actions.shape[:-1])
        x = torch.cat([states.expand(*batch, -1), actions.expand(*batch, -1)], -1)
        z = self.net((x.to(self.in_mean.dtype) - self.in_mean) / self.in_std)
        mean = self.out_mean + z * self.out_std
        scale = self.log_scale.exp() * self.out_std
        return mean.to(states.dtype), scale.to(states.dtype)

    def forward(self, states, actions, targets, batch_size=None):
        """log p̂(targets | s, a) over a ``pyro.plate`` of transitions (subsampled to a batch)."""
        with pyro.plate("transitions", len(targets), subsample_size=batch_size) as idx:
            loc, scale = self.predict(states[idx], actions[idx])
            pyro.sample("targets", dist.Normal(loc, scale).to_event(1), obs=targets[idx])


class _EmptyGuide(PyroModule):
    def forward(self, *args, **kwargs):
        pass


@dataclasses.dataclass
class GaussianDynamicsFit:
    """What :func:`fit_gaussian_dynamics` returns.

    Attributes:
        model: the trained :class:`GaussianDynamics`.
        losses: −log-likelihood per transition, one per step (numpy).
        seconds: wall-clock time of the optimisation.
        transitions: the data it was fitted on.
    """

    model: GaussianDynamics
    losses: np.ndarray
    seconds: float
    transitions: Transitions

    def predict(self, states, actions):
        """Mean (..., out_dim) and scale (out_dim,) of [s' − s, r] in data units."""
        return _predict(self.model, states, actions)

    def to_mdp(
        self,
        horizon: int,
        *,
        action_low=None,
        action_high=None,
        reward=None,
        stochastic: bool = False,
        name: str = "learned",
    ) -> ContinuousMDP:
        """The learned model as a :class:`ContinuousMDP` over the data's states (observations).

        Args:
            horizon: T.
            action_low, action_high: the action box; the data's range by default.
            reward: a known ``r(s, a)``; by default the learned mean reward.
            stochastic: dynamics return ``Normal(s + μ, σ)`` (sampled per particle by IS/MPPI)
                instead of its mean.
            name: a label.

        ``initial`` is the empirical distribution of the env's reset states.
        """
        data = self.transitions
        low = data.actions.min(0).values if action_low is None else action_low
        high = data.actions.max(0).values if action_high is None else action_high
        if reward is None and not self.model.learn_reward:
            raise ValueError("this model did not learn the reward: pass `reward=`")
        if not isinstance(stochastic, bool):
            raise TypeError(f"`stochastic` must be True or False, got {stochastic!r}")
        starts = data.initial_states
        initial = dist.Empirical(starts, torch.zeros(len(starts), dtype=starts.dtype))
        return ContinuousMDP(
            _LearnedDynamics(self.model, stochastic),
            _LearnedReward(self.model) if reward is None else reward,
            initial,
            check_positive_int("horizon", horizon),
            low,
            high,
            name=name,
        )


def _predict(model: GaussianDynamics, states, actions):
    with torch.no_grad(), pyro.settings.context(module_local_params=True):
        return model.predict(states, actions)


class _LearnedDynamics:
    """s' = s + μ̂(s, a)[:d], or N(s + μ̂, σ̂²) when ``stochastic``: a learned model's dynamics
    as a picklable callable (it holds the model, not a closure)."""

    def __init__(self, model: GaussianDynamics, stochastic: bool):
        self.model, self.stochastic = model, stochastic

    def __call__(self, s, a):
        mean, scale = _predict(self.model, s, a)
        d = self.model.state_dim
        loc = s + mean[..., :d]
        return dist.Normal(loc, scale[:d]).to_event(1) if self.stochastic else loc


class _LearnedReward:
    """r̂(s, a): the learned mean reward, the last output of the model."""

    def __init__(self, model: GaussianDynamics):
        self.model = model

    def __call__(self, s, a):
        return _predict(self.model, s, a)[0][..., self.model.state_dim]


def fit_gaussian_dynamics(
    transitions: Transitions,
    *,
    hidden=(128, 128),
    learn_reward: bool = True,
    steps: int = 3000,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    num_threads: int | None = 1,
    progress: bool = True,
) -> GaussianDynamicsFit:
    """Maximum likelihood of :class:`GaussianDynamics` by SVI (Pyro's ``Trace_ELBO``, Adam).

    The network weights are parameters, not latent variables, so the guide is empty and the
    ELBO is exactly the log-likelihood Σₙ log p̂(s'ₙ − sₙ, rₙ | sₙ, aₙ): SVI on it is maximum
    likelihood (an ``AutoDelta`` over weights with a prior would be MAP). Minibatches come from
    the plate's ``subsample_size``, scaled to the full data. Parameters live in the module
    (``module_local_params``), never in Pyro's global param store.

    Args:
        transitions: from :func:`collect_transitions` in a Box env (observations as states).
        hidden: widths of the MLP's hidden layers.
        learn_reward: also model r (otherwise give ``reward=`` to ``to_mdp``).
        steps, batch_size, lr: Adam on minibatches, with the learning rate decayed 10× by the end.
        seed: seeds initialisation and minibatches (the global RNG is restored afterwards).
        dtype: of the network; None: the dtype of ``transitions.states`` (float64 from
            :func:`collect_transitions`). float32 plans ~2× faster on CPU.
        num_threads: torch threads during the fit, restored afterwards (None: leave as is).
            Minibatches of a small MLP train fastest on one thread; on a loaded machine,
            several threads can be 5× slower.
    """
    if not isinstance(transitions, Transitions):
        raise TypeError(f"`transitions` must be Transitions, got {type(transitions).__name__}")
    s, a = transitions.states, transitions.actions
    if not (s.is_floating_point() and a.is_floating_point() and s.ndim == 2 and a.ndim == 2):
        raise ValueError("`transitions` must hold (N, d) float states and actions (Box spaces)")
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_int("seed", seed)
    dtype = s.dtype if dtype is None else dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"`dtype` must be torch.float32, torch.float64 or None, got {dtype!r}")
    s, a = s.to(dtype), a.to(dtype)
    targets = transitions.next_states.to(dtype) - s
    if learn_reward:
        targets = torch.cat([targets, transitions.rewards.to(dtype)[:, None]], -1)
    x = torch.cat([s, a], -1)
    stats = (x.mean(0), x.std(0).clamp(min=1e-6), targets.mean(0), targets.std(0).clamp(min=1e-6))
    start = time.perf_counter()
    losses = []
    with (
        _torch_threads(num_threads),
        torch.random.fork_rng(devices=[]),
        pyro.settings.context(module_local_params=True),
    ):
        torch.manual_seed(int(seed))
        model = GaussianDynamics(
            s.shape[1], a.shape[1], hidden=tuple(hidden), learn_reward=learn_reward, stats=stats,
            dtype=dtype,
        )  # fmt: skip
        loss_fn = pyro.infer.Trace_ELBO()(model, _EmptyGuide())
        optim = torch.optim.Adam(loss_fn.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=0.1 ** (1 / steps))
        n = len(targets)
        for _ in tqdm(range(steps), desc="fitting dynamics", disable=not progress, leave=False):
            optim.zero_grad()
            loss = loss_fn(s, a, targets, min(batch_size, n))  # −Σₙ log p̂, minibatch-scaled
            loss.backward()
            optim.step()
            sched.step()
            losses.append(loss.item() / n)
    model.eval()
    return GaussianDynamicsFit(model, np.asarray(losses), time.perf_counter() - start, transitions)


@contextlib.contextmanager
def _torch_threads(num_threads):
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
