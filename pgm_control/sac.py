r"""Soft actor-critic whose actor is a variational guide (Haarnoja et al. 2018).

The lectures end the control-as-inference derivation here. With the optimality variables
p(O|s,a) = exp(r/α) and a discount, the variational posterior over actions is a policy q(a|s),
and its ELBO is the entropy-regularised return. SAC maximises it from ``env.step`` alone, in
two alternating moves (lecture 004; Haarnoja et al. 2018, eqs. 2–12):

* soft policy evaluation — the critic regresses onto the soft Bellman target
  y = r + γ·(1 − terminated)·[min₁,₂ Q̄ᵢ(s', a') − α·log q(a'|s')],  a' ~ q(·|s');
* policy improvement — the actor minimises the reparameterised KL to exp(Q/α)/Z,
  E_{ε}[α·log q(a|s) − min₁,₂ Qᵢ(s, a)],  a = c + h·tanh(μ(s) + σ(s)·ε);
* the temperature (optional) follows the dual of an entropy constraint,
  min_α E[−α·(log q(a|s) + H̄)] with target entropy H̄ = −dim A for actions scaled to
  [−1, 1]ᵈ, i.e. H̄ = Σᵢ (log hᵢ − 1) for the env's box of half-widths hᵢ (see ``SAC``).

**The actor is not a new network.** It is the ``gaussian_mlp`` guide of
:mod:`pgm_control.guides.continuous` — the object :func:`pgm_control.fit` trains as a
variational posterior on a differentiable twin — read through its own
``policies()(t, s)``, a :class:`~pgm_control.guides.continuous.SquashedNormal`, whose
``rsample_with_log_prob`` gives the reparameterised (a, log q(a|s)) that the actor and the
critic target need. The guide takes an MDP for its sizes, box and dtype; SAC's actor reads the
env's *observations*, so it is built on :func:`observation_mdp`, an MDP whose state is the
observation (it has no dynamics: SAC never calls them). **Time**: the discounted problem is
stationary, so SAC always asks the guide for its step-0 policy, q(a|s) = q₀(a|s); a
``gaussian_mlp`` ignores t anyway, and an open-loop guide (a plan, not a policy) is refused.
Entropies are those of the action in the env's own units (the squashing's −log h included),
with respect to Lebesgue measure; the action prior is left out (for a box it is a constant).

Speed levers (2-core CPU, small networks): the two critics are one batched module
(:class:`TwinQ`, stacked weights and ``torch.baddbmm``); one backward pass and one fused Adam
step serve the critic, actor and temperature losses together (each loss depends on its own
parameters only — the actor loss sees the critic's weights detached, the temperature loss the
log-densities detached — so the gradients are those of three separate steps, with the actor
and the critic stepping simultaneously as in Haarnoja et al.'s Algorithm 1); no
``.item()`` in the inner loop (losses are logged every ``log_interval`` updates); acting
under ``torch.inference_mode``; ``num_threads`` (default 1) while learning.
"""

from __future__ import annotations

import functools
import math

import gymnasium as gym
import numpy as np
import torch
from pyro.distributions import Normal, Uniform
from torch import nn

from .algorithm import Algorithm
from .continuous import ContinuousMDP
from .guides.continuous import GaussianMLPGuide, SquashedGaussianGuide
from .replay_buffer import Batch, ReplayBuffer
from .sac_critics import TwinQ, TwinQuadraticQ
from .validation import (
    check_discount,
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_temperature,
)

__all__ = [
    "SAC",
    "observation_mdp",
    "critic_loss",
    "actor_loss",
    "temperature_loss",
    "soft_bellman_target",
]


# ---------------------------------------------------------------- the actor's MDP
def _no_dynamics(s, a):
    raise RuntimeError(
        "this MDP only describes an actor's inputs and action box (observation_mdp); it has "
        "no dynamics — learn from the env, or use a differentiable twin from pgm_control.envs"
    )


def _no_reward(s, a):
    raise RuntimeError("observation_mdp has no reward: SAC reads rewards from env.step")


def observation_mdp(observation_space, action_space, *, dtype=torch.float32) -> ContinuousMDP:
    """The MDP a guide is built on when it acts on an env's observations.

    A continuous guide takes an MDP for its dims, action box and dtype, and draws one state
    from ``initial`` to size its network input. Here the state *is* the observation: the
    initial distribution is uniform on the observation box (a standard normal on unbounded
    coordinates); dynamics and reward raise (SAC never calls them).

    Args:
        observation_space: a 1-D ``gymnasium.spaces.Box``.
        action_space: a bounded 1-D ``gymnasium.spaces.Box``.
        dtype: the guide's dtype.
    """
    _check_spaces(observation_space, action_space)
    low = torch.as_tensor(observation_space.low, dtype=dtype)
    high = torch.as_tensor(observation_space.high, dtype=dtype)
    bounded = torch.isfinite(low) & torch.isfinite(high)
    loc = torch.where(bounded, (low + high) / 2, torch.zeros_like(low))
    half = torch.where(bounded, (high - low) / 2, torch.ones_like(low))
    if bounded.all():
        initial = Uniform(loc - half, loc + half).to_event(1)
    else:
        initial = Normal(loc, half).to_event(1)
    return ContinuousMDP(
        _no_dynamics, _no_reward, initial, 1,
        torch.as_tensor(action_space.low, dtype=dtype),
        torch.as_tensor(action_space.high, dtype=dtype),
        name="observations",
    )  # fmt: skip


def _check_spaces(observation_space, action_space) -> None:
    if isinstance(action_space, gym.spaces.Discrete):
        raise TypeError(
            "SAC needs a continuous (Box) action space; for a Discrete action space use the "
            "discrete soft learners (SoftDQN, SoftQLearning)"
        )
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise TypeError(f"the env's action space must be a 1-D Box, got {action_space}")
    if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
        raise ValueError(
            "SAC's tanh-squashed actor needs a bounded Box action space; the env's is "
            f"unbounded ({action_space}): wrap it in gymnasium.wrappers.ClipAction or give "
            "the env finite bounds"
        )
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise TypeError(
            f"SAC needs a 1-D Box observation space, got {observation_space}; flatten it "
            "(gymnasium.wrappers.FlattenObservation) or one-hot a Discrete one"
        )


# ---------------------------------------------------------------- the three losses
def soft_bellman_target(
    rewards, terminated, next_q, next_log_q, *, temperature, discount
) -> torch.Tensor:
    """y = r + γ·(1 − terminated)·[minᵢ Q̄ᵢ(s', a') − α·log q(a'|s')]  (Haarnoja 2018, eq. 3,
    with the clipped double Q of Fujimoto et al. 2018).

    Args:
        rewards, terminated: (B,).
        next_q: (n, B) target critics at (s', a'), a' ~ q(·|s').
        next_log_q: (B,) log q(a'|s').
        temperature: α (float or 0-d tensor).
        discount: γ.
    """
    next_v = next_q.min(dim=0).values - temperature * next_log_q
    return rewards + discount * (1.0 - terminated) * next_v


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σᵢ ½·mean_B (Qᵢ(s,a) − y)²  (Haarnoja 2018, eq. 5); q (n, B), target (B,)."""
    return 0.5 * (q - target).pow(2).mean(dim=-1).sum()


def actor_loss(q_pi: torch.Tensor, log_q: torch.Tensor, temperature) -> torch.Tensor:
    """mean_B [α·log q(a|s) − minᵢ Qᵢ(s, a)], a = f(ε; s) reparameterised  (eq. 12): the
    KL(q(·|s) ‖ exp(Q(s,·)/α)/Z(s)) up to its normaliser. q_pi (n, B), log_q (B,)."""
    return (temperature * log_q - q_pi.min(dim=0).values).mean()


def temperature_loss(log_alpha: torch.Tensor, log_q: torch.Tensor, target_entropy: float):
    """−mean_B log α·(log q(a|s) + H̄)  (eq. 18, in log α as SB3 and CleanRL do): α grows
    while the entropy −E[log q] is below the target H̄, and shrinks above it."""
    return -(log_alpha * (log_q.detach() + target_entropy)).mean()


# ---------------------------------------------------------------- the algorithm
class SAC(Algorithm):
    """Soft actor-critic with a ``gaussian_mlp`` guide as its actor (Stable-Baselines3's surface).

    ``SAC(env).learn(n)``, ``.predict(obs, deterministic=True)`` (the squashed mean
    c + h·tanh(μ(s))), ``.save(path)`` / ``SAC.load(path)``. The learned actor is
    :attr:`actor`, a :class:`~pgm_control.guides.continuous.GaussianMLPGuide` on
    :func:`observation_mdp`; :attr:`critic` the twin soft Q; :attr:`temperature` α.

    Args:
        env: a gymnasium env or id with a 1-D Box observation space and a bounded 1-D Box
            action space.
        temperature: α > 0 (fixed), or ``"auto"``: learned, starting from
            ``initial_temperature``, so that the policy's entropy tracks ``target_entropy``.
        initial_temperature: the starting α of ``"auto"`` (1.0, as SB3's ``"auto"``).
        target_entropy: H̄, in the env's action units; default Σᵢ (log hᵢ − 1), hᵢ the
            half-widths of the action box: the usual −dim A (Haarnoja et al. 2018, App. D;
            SB3) holds for actions scaled to [−1, 1]ᵈ, and an entropy measured in the env's
            units is Σᵢ log hᵢ larger for the same policy. On a [−1, 1]ᵈ box it is −dim A;
            on Pendulum's [−2, 2] it is log 2 − 1 ≈ −0.31 (a target of −1 there asked for a
            policy twice as narrow as SB3's, and explored less in the first 5k steps).
        discount: γ in (0, 1].
        learning_rate: Adam's step for actor, critics and temperature.
        learning_rate_final: None (constant), or the step that ``learning_rate`` anneals to
            linearly over each :meth:`learn` call (as SB3's linear schedule of the progress
            remaining): a decaying step lets the critic settle on its fixed point instead of
            jittering around it.
        optimizer_kwargs: more keyword arguments for the Adam optimiser, e.g.
            ``{"betas": (0.9, 0.99)}``: a shorter second-moment memory than Adam's 0.999 lets
            the step recover once the early large gradients are past (on the LQ check it
            brought the critic's constant to its fixed point in ~1500 updates instead of
            ~5000).
        buffer_size: replay capacity (≥ batch_size).
        learning_starts: env steps of uniformly random actions before learning.
        warmup_bound: None (the whole action box), or the half-width of those uniform
            actions about the box's centre, in the env's units (clipped to the box): a
            narrower warm-up keeps the visited states where the tanh box barely bends the
            actor, so that a critic fitted to them sees the Q^π of the policy being learned.
        actor_learning_starts: None (= ``learning_starts``), or a later env step before which
            only the critic learns (policy evaluation of the initial actor, which also collects
            the data from ``learning_starts`` on; the temperature waits too): the actor then
            starts from a critic fitted to data instead of chasing a random one, whose
            maximiser may lie anywhere in the box (on a wide box, a few actions at its edge
            that send the states far out).
        batch_size: transitions per gradient step.
        tau: Polyak rate of the target critics, θ̄ ← (1 − τ)·θ̄ + τ·θ.
        train_freq: env steps between training phases.
        gradient_steps: gradient steps per training phase (update ratio = gradient_steps /
            train_freq).
        hidden: hidden widths of the critics, and of the actor unless ``actor`` is given.
        critic: ``"mlp"`` (default, :class:`TwinQ` with ``hidden``) or ``"quadratic"``
            (:class:`TwinQuadraticQ`, Q = [s; a]ᵀM[s; a] + bᵀ[s; a] + c: the family of the
            linear–quadratic problem's exact soft Q).
        activation: hidden activation of both (an ``nn.Module`` class).
        actor: a closed-loop :class:`~pgm_control.guides.continuous.SquashedGaussianGuide`
            built on ``observation_mdp(env.observation_space, env.action_space)`` (or any MDP
            with the same sizes and box); default ``gaussian_mlp(hidden, activation)``.
        actor_kwargs: more keyword arguments for the default ``gaussian_mlp``.
        log_interval: updates between logged (averaged) losses in ``history.losses``.
        num_threads: torch threads while learning (restored afterwards); None: leave as is.
        noise_correlation: ρ ∈ [0, 1) of the exploration noise across env steps. SAC acts
            with a = c + h·tanh(μ(s) + σ(s)·εₜ); ρ = 0 draws εₜ afresh each step (the usual
            SAC), ρ > 0 makes it the stationary AR(1) εₜ = ρ·εₜ₋₁ + √(1 − ρ²)·ξₜ, ξₜ ~ N(0, I),
            so that every action is still a draw from q(·|sₜ) (εₜ ~ N(0, I) marginally) but
            consecutive actions push the same way for ~1/(1 − ρ) steps: temporally coherent
            exploration without leaving the max-ent policy (the colored noise of Eberhard et
            al. 2023; off-policy, the critic's target is unchanged). Learning updates always
            draw independent noise.
        num_envs: > 1 collects from that many copies of the env at once
            (``gymnasium.vector.SyncVectorEnv``, same-step autoreset; the env must come from
            ``gymnasium.make``): each vector step adds ``num_envs`` transitions and counts
            ``num_envs`` env steps, and the update ratio per env step is kept.
        seed, device, progress, eval_every, eval_episodes: see
            :class:`~pgm_control.algorithm.Algorithm`.

    Raises:
        TypeError: a Discrete action space (use SoftDQN / SoftQLearning), a non-Box
            observation space, an open-loop actor.
        ValueError: an unbounded action box, α ≤ 0, buffer_size < batch_size, and the usual
            range checks.
    """

    def __init__(
        self,
        env,
        *,
        temperature: float | str = "auto",
        initial_temperature: float = 1.0,
        target_entropy: float | None = None,
        discount: float = 0.99,
        learning_rate: float = 3e-4,
        learning_rate_final: float | None = None,
        optimizer_kwargs: dict | None = None,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        warmup_bound: float | None = None,
        actor_learning_starts: int | None = None,
        batch_size: int = 256,
        tau: float = 0.005,
        train_freq: int = 1,
        gradient_steps: int = 1,
        hidden=(256, 256),
        activation=nn.ReLU,
        critic: str = "mlp",
        actor: SquashedGaussianGuide | None = None,
        actor_kwargs: dict | None = None,
        log_interval: int = 100,
        num_threads: int | None = 1,
        noise_correlation: float = 0.0,
        num_envs: int = 1,
        seed: int = 0,
        device="cpu",
        progress: bool = True,
        eval_every: int | None = None,
        eval_episodes: int = 10,
    ):
        super().__init__(
            env, seed=seed, device=device, progress=progress, eval_every=eval_every,
            eval_episodes=eval_episodes,
        )  # fmt: skip
        _check_spaces(self.observation_space, self.action_space)
        self.auto_temperature = temperature == "auto"
        if not self.auto_temperature:
            if isinstance(temperature, str):
                raise ValueError(
                    f"`temperature` must be a float > 0 or 'auto', got {temperature!r}"
                )
            temperature = check_temperature(temperature)
        initial_temperature = check_temperature(initial_temperature, "initial_temperature")
        self.discount = check_discount(discount)
        self.learning_rate = check_positive_float("learning_rate", learning_rate)
        self.learning_rate_final = (
            None
            if learning_rate_final is None
            else check_positive_float("learning_rate_final", learning_rate_final)
        )
        optimizer_kwargs = dict(optimizer_kwargs or {})
        if "lr" in optimizer_kwargs or "params" in optimizer_kwargs:
            raise ValueError(
                "`optimizer_kwargs` must not set 'lr' or 'params': use `learning_rate` (and "
                "`learning_rate_final`)"
            )
        if critic not in ("mlp", "quadratic"):
            raise ValueError(f"`critic` must be 'mlp' or 'quadratic', got {critic!r}")
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        if self.buffer_size < self.batch_size:
            raise ValueError(
                f"`buffer_size`={buffer_size} is smaller than `batch_size`={batch_size}: "
                "make the buffer at least one batch long"
            )
        self.learning_starts = check_positive_int("learning_starts", learning_starts, minimum=0)
        self.actor_learning_starts = self.learning_starts
        if actor_learning_starts is not None:
            self.actor_learning_starts = check_positive_int(
                "actor_learning_starts", actor_learning_starts, minimum=self.learning_starts
            )
        self.tau = check_probability("tau", tau, open_low=True)
        self.train_freq = check_positive_int("train_freq", train_freq)
        self.gradient_steps = check_positive_int("gradient_steps", gradient_steps)
        self.log_interval = check_positive_int("log_interval", log_interval)
        self.num_threads = check_optional_positive_int("num_threads", num_threads)
        self.noise_correlation = float(noise_correlation)
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ValueError(
                f"`noise_correlation` must lie in [0, 1) (0: independent exploration noise), "
                f"got {noise_correlation}"
            )
        self._noise = None  # εₜ of the correlated exploration noise (None: not drawn yet)
        self.action_dim = int(self.action_space.shape[0])
        if target_entropy is None:
            half = (self.action_space.high.astype(float) - self.action_space.low) / 2
            self.target_entropy = float(np.sum(np.log(half) - 1.0))
        else:
            self.target_entropy = float(target_entropy)
        if not math.isfinite(self.target_entropy):
            raise ValueError(f"`target_entropy` must be finite, got {target_entropy}")
        self.hyperparameters = dict(
            temperature=temperature, initial_temperature=initial_temperature,
            target_entropy=target_entropy, discount=discount, learning_rate=learning_rate,
            learning_rate_final=learning_rate_final, optimizer_kwargs=optimizer_kwargs,
            critic=critic,
            buffer_size=buffer_size, learning_starts=learning_starts, warmup_bound=warmup_bound,
            actor_learning_starts=actor_learning_starts, batch_size=batch_size,
            tau=tau, train_freq=train_freq, gradient_steps=gradient_steps, hidden=tuple(hidden),
            activation=activation, actor=actor, actor_kwargs=actor_kwargs,
            log_interval=log_interval, num_threads=num_threads,
            noise_correlation=noise_correlation, num_envs=num_envs,
            progress=progress,
            eval_every=eval_every, eval_episodes=eval_episodes,
        )  # fmt: skip

        dtype = torch.float32
        obs_dim = int(self.observation_space.shape[0])
        if actor is None:
            spec = observation_mdp(self.observation_space, self.action_space, dtype=dtype)
            kwargs = {"hidden": tuple(hidden), "activation": activation, **(actor_kwargs or {})}
            actor = self._init_modules(lambda: GaussianMLPGuide(spec, **kwargs))
        else:
            actor = _check_actor(actor, obs_dim, self.action_space)
        self.actor = actor.to(self.device)

        def make_critic():
            if critic == "quadratic":
                return TwinQuadraticQ(obs_dim, self.action_dim)
            return TwinQ(obs_dim, self.action_dim, hidden=hidden, activation=activation)

        self.critic = self._init_modules(make_critic).to(self.device)
        self.critic_target = self._init_modules(make_critic)  # a copy: the same initial weights
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.to(self.device).requires_grad_(False)
        kw = {"dtype": dtype, "device": self.device}
        start = initial_temperature if self.auto_temperature else temperature
        self.log_alpha = torch.tensor(math.log(start), **kw).requires_grad_(self.auto_temperature)
        groups = [{"params": list(self.actor.parameters()) + list(self.critic.parameters())}]
        if self.auto_temperature:
            groups.append({"params": [self.log_alpha]})
        # fused Adam where the device has it (CUDA; CPU since torch 2.4), foreach otherwise
        self.optimizer = torch.optim.Adam(
            groups, lr=self.learning_rate, **{**_fast_adam(self.device), **optimizer_kwargs}
        )
        self.buffer = ReplayBuffer(
            self.buffer_size, (obs_dim,), (self.action_dim,), observation_dtype=dtype,
            action_dtype=dtype, float_dtype=dtype, device=self.device,
        )  # fmt: skip
        self._updates = 0
        self._schedule = (0, 1)  # (first step, steps) of the current learn call
        self._pending: list[torch.Tensor] = []  # per-update losses not yet logged
        self._action_low = np.asarray(self.action_space.low, dtype=self.action_space.dtype)
        self._action_high = np.asarray(self.action_space.high, dtype=self.action_space.dtype)
        # the warm-up's uniform box: the action box, or ± warmup_bound about its centre
        self._warmup_low, self._warmup_high = self._action_low, self._action_high
        if warmup_bound is not None:
            half = check_positive_float("warmup_bound", warmup_bound)
            centre = (self._action_low + self._action_high) / 2
            self._warmup_low = np.maximum(self._action_low, centre - half)
            self._warmup_high = np.minimum(self._action_high, centre + half)
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.vector_env = None
        if self.num_envs > 1:
            spec = self.env.spec
            if spec is None:
                raise ValueError(
                    "`num_envs` > 1 copies the env through gymnasium.make: pass an env id or "
                    "an env made by gymnasium.make"
                )
            make = functools.partial(gym.make, spec)  # the spec keeps the time limit
            self.vector_env = gym.vector.SyncVectorEnv(
                [make] * self.num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
            )
            self._vector_obs = None
            self._vector_returns = np.zeros(self.num_envs)
            self._vector_lengths = np.zeros(self.num_envs, dtype=np.int64)

    # ---------------------------------------------------------------- reading the actor
    @property
    def temperature(self) -> float:
        """The current α."""
        return float(self.log_alpha.detach().exp())

    def policy(self, observations: torch.Tensor):
        """q(a|s) for a batch of observations (..., obs_dim): the guide's step-0 policy, a
        :class:`~pgm_control.guides.continuous.SquashedNormal` (SAC is stationary)."""
        return self.actor.policies()(0, observations)

    def _observations(self, observation) -> torch.Tensor:
        return torch.as_tensor(np.asarray(observation), dtype=torch.float32, device=self.device)

    def _act(self, observation, deterministic: bool):
        obs = self._observations(observation)
        q = self.policy(obs)
        if deterministic:
            a = q.median
        else:
            a = q.rsample_with_log_prob(generator=self.torch_generator)[0]
        return a.detach().cpu().numpy().astype(self.action_space.dtype)

    def _explore(self, observation):
        """The behaviour action: a draw from q(·|s), with noise εₜ correlated across env
        steps when ``noise_correlation`` > 0 (see the class docstring)."""
        if self.noise_correlation == 0.0:
            return self._act(observation, False)
        q = self.policy(self._observations(observation))
        xi = torch.randn(
            q.loc.shape, dtype=q.loc.dtype, device=q.loc.device, generator=self.torch_generator
        )
        rho = self.noise_correlation
        if self._noise is None or self._noise.shape != xi.shape:
            self._noise = xi  # the stationary law N(0, I) from the first step
        else:
            self._noise = rho * self._noise + math.sqrt(1.0 - rho * rho) * xi
        a = q.squash(q.loc + q.scale * self._noise)
        return a.cpu().numpy().astype(self.action_space.dtype)

    # ---------------------------------------------------------------- learning
    def learn(self, total_timesteps: int, *, progress: bool | None = None):
        """Take ``total_timesteps`` more env steps (see :meth:`Algorithm.learn`), with
        ``num_threads`` torch threads."""
        steps = check_positive_int("total_timesteps", total_timesteps)
        self._schedule = (self.num_timesteps, steps)  # learning_rate_final's anneal
        threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            return super().learn(total_timesteps, progress=progress)
        finally:
            torch.set_num_threads(threads)
            self._flush_losses()

    def _train_step(self) -> int:
        if self.vector_env is not None:
            return self._vector_train_step()
        # collect: uniform actions until learning starts, then a draw from the guide
        if self.num_timesteps < self.learning_starts:
            action = self.np_random.uniform(self._warmup_low, self._warmup_high)
            action = action.astype(self.action_space.dtype)
        else:
            with torch.inference_mode():
                action = self._explore(self.current_observation)
        obs, action, reward, next_obs, terminated, _ = self._env_step(action)
        self.buffer.add(obs, action, reward, next_obs, terminated)
        if self.num_timesteps >= self.learning_starts and self.num_timesteps % self.train_freq == 0:
            for _ in range(self.gradient_steps):
                self._update(self.buffer.sample(self.batch_size, self.torch_generator))
        return 1

    def _vector_train_step(self) -> int:
        """One step of all ``num_envs`` envs; same-step autoreset keeps the true s'."""
        n = self.num_envs
        if self._vector_obs is None:
            self._vector_obs, _ = self.vector_env.reset(seed=self.seed)
        obs = self._vector_obs
        if self.num_timesteps < self.learning_starts:
            actions = self.np_random.uniform(
                self._warmup_low, self._warmup_high, (n, self.action_dim)
            )
            actions = actions.astype(self.action_space.dtype)
        else:
            with torch.inference_mode():
                actions = self._explore(obs)
        next_obs, rewards, terminated, truncated, info = self.vector_env.step(actions)
        done = terminated | truncated
        true_next = np.array(next_obs, copy=True)
        for i in np.flatnonzero(done):
            true_next[i] = info["final_obs"][i]
        before = self.num_timesteps
        for i in range(n):
            self.buffer.add(obs[i], actions[i], rewards[i], true_next[i], terminated[i])
            self.num_timesteps += 1
            self._vector_returns[i] += float(rewards[i])
            self._vector_lengths[i] += 1
            if done[i]:
                self.history.episode_returns.append(float(self._vector_returns[i]))
                self.history.episode_lengths.append(int(self._vector_lengths[i]))
                self.history.episode_end_steps.append(self.num_timesteps)
                self._vector_returns[i], self._vector_lengths[i] = 0.0, 0
        self._vector_obs = next_obs
        if self.num_timesteps >= self.learning_starts:
            phases = self.num_timesteps // self.train_freq - before // self.train_freq
            for _ in range(phases * self.gradient_steps):
                self._update(self.buffer.sample(self.batch_size, self.torch_generator))
        return n

    def _update(self, batch: Batch) -> None:
        """One gradient step on a batch: critic, actor and temperature losses, then Polyak."""
        alpha = self.log_alpha.detach().exp()
        # the actor on s and s' in one pass; only the s half keeps its graph
        n = batch.observations.shape[0]
        q_both = self.policy(torch.cat([batch.observations, batch.next_observations]))
        a_both, log_q_both = q_both.rsample_with_log_prob(generator=self.torch_generator)
        a_pi, log_q = a_both[:n], log_q_both[:n]
        with torch.no_grad():
            next_q = self.critic_target(batch.next_observations, a_both[n:])
            target = soft_bellman_target(
                batch.rewards, batch.terminated, next_q, log_q_both[n:].detach(),
                temperature=alpha, discount=self.discount,
            )  # fmt: skip
        loss_q = critic_loss(self.critic(batch.observations, batch.actions), target)
        q_pi = self.critic(batch.observations, a_pi, detach=True)
        loss_pi = actor_loss(q_pi, log_q, alpha)
        # before actor_learning_starts the actor's loss is left out: its parameters get no
        # gradient, and Adam leaves them (and their moments) alone
        actor_learns = self.num_timesteps >= self.actor_learning_starts
        loss = loss_q + loss_pi if actor_learns else loss_q
        if self.learning_rate_final is not None:
            start, steps = self._schedule
            done = min(max((self.num_timesteps - start) / steps, 0.0), 1.0)
            lr = self.learning_rate + done * (self.learning_rate_final - self.learning_rate)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        if self.auto_temperature and actor_learns:
            loss_alpha = temperature_loss(self.log_alpha, log_q, self.target_entropy)
            loss = loss + loss_alpha
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            target_params = list(self.critic_target.parameters())
            torch._foreach_lerp_(target_params, list(self.critic.parameters()), self.tau)
            self._pending.append(torch.stack([loss_q, loss_pi, alpha, -log_q.mean()]).detach())
        self._updates += 1
        if len(self._pending) >= self.log_interval:
            self._flush_losses()

    def _flush_losses(self) -> None:
        if not self._pending:
            return
        means = torch.stack(self._pending).mean(0).tolist()
        self._pending = []
        for name, value in zip(("critic", "actor", "temperature", "entropy"), means):
            self.history.log(name, self.num_timesteps, value)

    # ---------------------------------------------------------------- save / load
    def _state(self) -> dict:
        b, size = self.buffer, self.buffer.size
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": {
                "observations": b.observations[:size].clone(),
                "actions": b.actions[:size].clone(),
                "rewards": b.rewards[:size].clone(),
                "next_observations": b.next_observations[:size].clone(),
                "terminated": b.terminated[:size].clone(),
                "position": b.position,
            },
            "updates": self._updates,
            "noise": None if self._noise is None else self._noise.clone(),
            "obs": self._obs,
            "episode": (self._episode_return, self._episode_length, self._resets),
            # the env's own generator, so that later resets draw the same starts
            "env_np_random": self.env.unwrapped.np_random.bit_generator.state,
        }

    def _load_state(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        saved, b = state["buffer"], self.buffer
        size = saved["rewards"].shape[0]
        for name in ("observations", "actions", "rewards", "next_observations", "terminated"):
            getattr(b, name)[:size] = saved[name].to(self.device)
        b.size, b.position = size, saved["position"]
        self._updates = state["updates"]
        noise = state.get("noise")
        self._noise = None if noise is None else noise.to(self.device)
        self._episode_return, self._episode_length, self._resets = state["episode"]
        if self._resets > 0:
            self.env.unwrapped.np_random.bit_generator.state = state["env_np_random"]
        if state["obs"] is not None and self._resets > 0:
            # the env cannot be restored mid-episode: the next step starts a fresh episode
            self._obs = None


def _fast_adam(device: torch.device) -> dict:
    try:
        torch.optim.Adam([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, ValueError):
        return {"foreach": True}
    return {"fused": True}


def _check_actor(actor, obs_dim: int, action_space) -> SquashedGaussianGuide:
    if not isinstance(actor, SquashedGaussianGuide):
        raise TypeError(
            "`actor` must be a continuous guide (e.g. gaussian_mlp(observation_mdp(...))), got "
            f"{type(actor).__name__}"
        )
    if not actor.closed_loop:
        raise TypeError(
            f"`actor` must be a closed-loop policy q(a|s); {type(actor).__name__} is an "
            "open-loop plan — use gaussian_mlp"
        )
    if (actor.state_dim, actor.action_dim) != (obs_dim, action_space.shape[0]):
        raise ValueError(
            f"`actor` was built for state_dim={actor.state_dim}, action_dim={actor.action_dim}; "
            f"the env has observation dim {obs_dim}, action dim {action_space.shape[0]}: build "
            "it on observation_mdp(env.observation_space, env.action_space)"
        )
    low = torch.as_tensor(action_space.low, dtype=actor.low.dtype)
    high = torch.as_tensor(action_space.high, dtype=actor.high.dtype)
    if not (torch.equal(actor.low.cpu(), low) and torch.equal(actor.high.cpu(), high)):
        raise ValueError("`actor`'s action box differs from the env's action space")
    return actor
