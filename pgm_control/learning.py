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
import numbers
import time
import typing

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from tqdm.auto import tqdm

from .continuous import ContinuousMDP
from .mdp import TabularMDP

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
    import gymnasium as gym

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
            (``env.action_space.sample()``, seeded).
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
    import gymnasium as gym

    if isinstance(env, str):
        env = gym.make(env)
    if not hasattr(env, "step") or not hasattr(env, "action_space"):
        raise TypeError(f"`env` must be a gymnasium env or an env id, got {type(env).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"`steps` must be an int >= 1, got {steps!r}")
    if policy is not None and not callable(policy):
        raise TypeError("`policy` must be a callable observation -> action, or None for random")
    name = env.spec.id if env.spec else type(env).__name__
    if exploring_starts and not isinstance(env.observation_space, gym.spaces.Discrete):
        raise ValueError(
            "`exploring_starts` needs a Discrete observation space (gymnasium's toy-text envs: "
            f"FrozenLake, CliffWalking, Taxi); {name} has {env.observation_space}"
        )
    rng = np.random.default_rng([int(seed), 2])  # independent of the env's and actions' streams
    ended = set()  # states seen to end an episode: never chosen as exploring starts

    def reset(**kwargs):
        obs, _ = env.reset(**kwargs)
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
    for _ in tqdm(range(steps), desc="collecting transitions", disable=not progress, leave=False):
        action = env.action_space.sample() if policy is None else policy(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
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


# ---------------------------------------------------------------------------- tabular
def _check_tabular_data(transitions, num_states, num_actions):
    if not isinstance(transitions, Transitions):
        raise TypeError(f"`transitions` must be Transitions, got {type(transitions).__name__}")
    for name, v in (("num_states", num_states), ("num_actions", num_actions)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"`{name}` must be an int >= 1, got {v!r}")
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
    states, actions, next_states, num_states, num_actions, *, concentration=1.0
):
    """The Pyro model whose posterior :func:`fit_tabular_model` computes in closed form::

        P[s, a, ·] ~ Dirichlet(c·1)            for every (s, a)
        s'ₙ ~ Categorical(P[sₙ, aₙ, ·])        for every transition n

    By conjugacy p(P[s,a] | data) = Dirichlet(c + N[s,a,·]) with counts N.
    """
    S, A = num_states, num_actions
    conc = torch.full((S,), float(concentration), dtype=torch.get_default_dtype())
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
    """
    _check_tabular_data(transitions, num_states, num_actions)
    if estimate not in ("mean", "map"):
        raise ValueError(f"`estimate` must be 'mean' or 'map', got {estimate!r}")
    c = float(concentration)
    if not (c > 0 and math.isfinite(c)):
        raise ValueError(f"`concentration` must be > 0, got {concentration}")
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
    reward = torch.where(counts > 0, reward_sum / counts.clamp(min=1), torch.zeros(()))

    def dirichlet_estimate(n):
        prior = c if estimate == "mean" else c - 1
        total = n.sum(-1, keepdim=True) + n.shape[-1] * prior
        uniform = torch.full_like(n, 1.0 / n.shape[-1])
        return torch.where(total > 0, (n + prior) / total.clamp(min=1e-300), uniform)

    P = dirichlet_estimate(counts)
    terminal = torch.zeros(S, dtype=torch.bool)
    terminal[s2[transitions.terminated]] = True
    P[terminal] = 0.0
    for t_state in terminal.nonzero().squeeze(-1).tolist():
        P[t_state, :, t_state] = 1.0
    reward[terminal] = 0.0
    starts = torch.zeros(S, dtype=torch.float64)
    starts.index_put_((transitions.initial_states,), torch.ones(()), accumulate=True)
    initial = dirichlet_estimate(starts)
    return TabularMDP(P, reward, initial, horizon, name=name, terminal=terminal)


def evaluate_tabular_policy(
    env, policy: torch.Tensor, *, episodes: int, seed: int = 0
) -> np.ndarray:
    """Each episode's return of a (T, S, A) or (S, A) policy in a Discrete gymnasium env.

    A thin view of :func:`pgm_control.rollout.rollout` (episode i seeded ``seed + i``, so two
    policies evaluated with the same seed meet the same randomness wherever they agree).
    A time-varying policy's episode ends after its T steps (the problem it solves).
    """
    from .rollout import rollout

    return rollout(env, policy, episodes, seed, after_horizon="stop").returns


# ------------------------------------------------------------------------- continuous
class GaussianDynamics(PyroModule):
    """p̂(s' − s, r | s, a) = N(μθ(s, a), diag σ²): a neural Gaussian dynamics and reward model.

    An MLP on standardised inputs (s, a) predicts the standardised change of state and (if
    ``learn_reward``) the reward; σ is one learned scale per output. ``forward`` is the Pyro
    model of a batch of transitions; :meth:`predict` gives (mean, scale) in data units.
    """

    def __init__(self, state_dim, action_dim, *, hidden=(128, 128), learn_reward=True, stats=None):
        super().__init__()
        self.state_dim, self.action_dim, self.learn_reward = state_dim, action_dim, learn_reward
        out_dim = state_dim + int(learn_reward)
        layers, width = [], state_dim + action_dim
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.SiLU()]
            width = h
        layers.append(torch.nn.Linear(width, out_dim))
        self.net = torch.nn.Sequential(*layers)
        self.log_scale = PyroParam(torch.zeros(out_dim))
        zeros, ones = torch.zeros, torch.ones
        in_mean, in_std, out_mean, out_std = stats or (
            zeros(width),
            ones(width),
            zeros(out_dim),
            ones(out_dim),
        )
        for key, value in (
            ("in_mean", in_mean),
            ("in_std", in_std),
            ("out_mean", out_mean),
            ("out_std", out_std),
        ):
            self.register_buffer(key, torch.as_tensor(value, dtype=torch.get_default_dtype()))

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
        with torch.no_grad(), pyro.settings.context(module_local_params=True):
            return self.model.predict(states, actions)

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
        d = self.model.state_dim
        if reward is None and not self.model.learn_reward:
            raise ValueError("this model did not learn the reward: pass `reward=`")

        def dynamics(s, a):
            mean, scale = self.predict(s, a)
            loc = s + mean[..., :d]
            return dist.Normal(loc, scale[:d]).to_event(1) if stochastic else loc

        def learned_reward(s, a):
            return self.predict(s, a)[0][..., d]

        starts = data.initial_states
        initial = dist.Empirical(starts, torch.zeros(len(starts), dtype=starts.dtype))
        return ContinuousMDP(
            dynamics,
            learned_reward if reward is None else reward,
            initial,
            horizon,
            low,
            high,
            name=name,
        )


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
        dtype: of the network (torch's default if None); float32 plans ~2× faster on CPU.
        num_threads: torch threads during the fit, restored afterwards (None: leave as is).
            Minibatches of a small MLP train fastest on one thread; on a loaded machine,
            several threads can be 5× slower.
    """
    if not isinstance(transitions, Transitions):
        raise TypeError(f"`transitions` must be Transitions, got {type(transitions).__name__}")
    s, a = transitions.states, transitions.actions
    if not (s.is_floating_point() and a.is_floating_point() and s.ndim == 2 and a.ndim == 2):
        raise ValueError("`transitions` must hold (N, d) float states and actions (Box spaces)")
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"`{name}` must be an int >= 1, got {v!r}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
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
            s.shape[1], a.shape[1], hidden=tuple(hidden), learn_reward=learn_reward, stats=stats
        ).to(dtype)
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
