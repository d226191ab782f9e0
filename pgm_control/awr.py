"""Advantage-weighted regression: KL-regularised policy iteration from samples.

With the action prior set to the previous policy π_old, the ELBO's objective is
E_π[Σₜ γᵗ rₜ] − α·KL(π‖π_old) (lecture notes 001, "non-uniform action priors"; Levine 2018,
§2.4), and one step of policy iteration on it has the closed form::

    E-step   q(a|s) ∝ π_old(a|s)·exp(A^{π_old}(s,a)/α)

(the posterior over actions under the prior π_old; :func:`kl_m_step_target` computes it for a
table). AWR (Peng et al. 2019, Alg. 1) learns it from ``env.step`` alone::

    collect  s, a ~ π_old in the env; keep the last ``buffer_size`` steps (a mixture of recent
             policies, which stands in for π_old)
    critic   V_ψ ← regression on TD(λ) returns R^λ (λ = 1: Monte-Carlo returns)
    E-step   weights w = min(exp((R^λ − V_ψ(s))/α), w_max)            (Peng et al. 2019, eq. 8)
    M-step   π ← argmax Σ w·log π(a|s), weighted maximum likelihood of the policy network

The maximiser of E_{a~π_old}[exp(A/α)·log π(a|s)] over all policies is exactly the E-step's
q ∝ π_old·exp(A/α) (tested with exact advantages on a tabular MDP); the clip w_max = 20 of
Peng et al. bounds the variance of the weights and makes the update conservative where an
advantage is large (the weight is then no longer exp(A/α)).

The policy is a categorical MLP (:class:`CategoricalPolicy`): the guide families in
``guides/`` are tables over a TabularMDP's states or Gaussians over continuous actions, and
neither takes Box observations with Discrete actions.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .algorithm import Algorithm, check_discrete_learner
from .networks import mlp, torch_threads
from .validation import (
    check_discount,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_temperature,
)

__all__ = [
    "AWR",
    "CategoricalPolicy",
    "awr_weights",
    "weighted_log_likelihood",
    "td_lambda_returns",
]


class CategoricalPolicy(nn.Module):
    """π(a|s) = softmax(f(s))ₐ with f an MLP (tanh hidden layers); the last layer starts at 0,
    so the policy starts uniform."""

    def __init__(self, n_in: int, n_actions: int, net_arch=(64, 64), *, dtype, device="cpu"):
        super().__init__()
        layers, width = [], n_in
        for h in net_arch:
            layers += [nn.Linear(width, h, dtype=dtype, device=device), nn.Tanh()]
            width = h
        last = nn.Linear(width, n_actions, dtype=dtype, device=device)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log π(·|s), (B, A)."""
        return torch.log_softmax(self.net(x), dim=-1)


def awr_weights(advantages: torch.Tensor, *, temperature: float, max_weight=20.0):
    """The E-step's importance weights ``w = min(exp(A/α), w_max)`` (Peng et al. 2019, eq. 8).

    ``q(a|s)/π_old(a|s) ∝ exp(A(s,a)/α)``; ``max_weight=None`` leaves them unclipped.
    """
    alpha = check_temperature(temperature)
    w = torch.exp(advantages / alpha)
    return w if max_weight is None else w.clamp(max=float(max_weight))


def weighted_log_likelihood(log_pi: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor):
    """The M-step's objective ``(1/B)·Σᵢ wᵢ·log π(aᵢ|sᵢ)`` to maximise.

    Args:
        log_pi: log π(·|sᵢ), (B, A).
        actions: aᵢ, (B,) int64.
        weights: wᵢ, (B,).
    """
    return (weights * log_pi.gather(-1, actions[:, None]).squeeze(-1)).mean()


def td_lambda_returns(rewards, values_next, terminated, cut, *, discount: float, lam: float):
    """TD(λ) returns along a time-ordered stream of steps (Sutton & Barto 2018, eq. 12.3).

    ``Rᵗ = rₜ + γ·(1 − termₜ)·((1 − λ)·V(sₜ₊₁) + λ·Rᵗ⁺¹)``, where the recursion stops
    (``Rᵗ⁺¹`` replaced by V(sₜ₊₁)) at a cut: a truncation, an episode end or the last step.

    Args:
        rewards, values_next, terminated, cut: (N,) in time order (``values_next`` = V(sₜ₊₁)).
        discount: γ; lam: λ in [0, 1] (1: Monte-Carlo returns bootstrapped only at cuts).
    """
    # a plain loop over numpy floats: per-element torch indexing would cost ~10 µs a step
    r, v = rewards.detach().cpu().double().numpy(), values_next.detach().cpu().double().numpy()
    alive = 1.0 - terminated.detach().cpu().double().numpy()
    cut = cut.detach().cpu().numpy().astype(bool)
    out = np.empty_like(r)
    nxt = v[-1]
    for t in range(r.shape[0] - 1, -1, -1):
        if cut[t]:
            nxt = v[t]
        out[t] = r[t] + discount * alive[t] * ((1 - lam) * v[t] + lam * nxt)
        nxt = out[t]
    return torch.as_tensor(out, dtype=rewards.dtype, device=rewards.device)


class AWR(Algorithm):
    """Advantage-weighted regression (see the module doc) on Discrete-action envs.

    Args:
        env: a gymnasium env (or id) with Discrete actions and Box (or Discrete, one-hot)
            observations.
        temperature: α > 0 of the KL penalty (Peng et al.'s β).
        discount: γ in (0, 1]. lam: λ of the TD(λ) returns in [0, 1].
        steps_per_iteration: env steps collected with the current policy per iteration.
        buffer_size: the last this many steps are fitted (the "π_old" data).
        batch_size: minibatch size of both regressions.
        value_steps, policy_steps: gradient steps of the critic and the M-step per iteration.
        value_lr, policy_lr: Adam step sizes.
        max_weight: w_max of the weights (None: unclipped).
        net_arch: hidden widths of the policy and of the value networks.
        num_threads: torch threads during ``learn`` (restored afterwards; None: as is).
        dtype: float dtype of the networks.
        seed, device, progress, eval_every, eval_episodes: see :class:`Algorithm`.

    ``learn(n)`` runs whole iterations, so it may take up to ``steps_per_iteration − 1`` steps
    more than n.
    """

    def __init__(
        self,
        env,
        temperature: float = 1.0,
        *,
        discount: float = 0.99,
        lam: float = 0.95,
        steps_per_iteration: int = 1000,
        buffer_size: int = 10_000,
        batch_size: int = 256,
        value_steps: int = 200,
        policy_steps: int = 200,
        value_lr: float = 1e-3,
        policy_lr: float = 1e-3,
        max_weight: float | None = 20.0,
        net_arch: tuple[int, ...] = (64, 64),
        num_threads: int | None = None,
        dtype: torch.dtype = torch.float32,
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
        check_discrete_learner("AWR", self.observation_space, self.action_space, dtype)
        obs_space = self.observation_space
        self.alpha = check_temperature(temperature)
        self.gamma = check_discount(discount)
        self.lam = check_probability("lam", lam)
        self.steps_per_iteration = check_positive_int("steps_per_iteration", steps_per_iteration)
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.value_steps = check_positive_int("value_steps", value_steps, minimum=0)
        self.policy_steps = check_positive_int("policy_steps", policy_steps, minimum=0)
        self.value_lr = check_positive_float("value_lr", value_lr)
        self.policy_lr = check_positive_float("policy_lr", policy_lr)
        self.max_weight = (
            None if max_weight is None else check_positive_float("max_weight", max_weight)
        )
        net_arch = tuple(check_positive_int("net_arch", h) for h in net_arch)
        self.num_threads = (
            None if num_threads is None else check_positive_int("num_threads", num_threads)
        )
        self.dtype = dtype
        self.hyperparameters = {
            "temperature": self.alpha, "discount": self.gamma, "lam": self.lam,
            "steps_per_iteration": self.steps_per_iteration, "buffer_size": self.buffer_size,
            "batch_size": self.batch_size, "value_steps": self.value_steps,
            "policy_steps": self.policy_steps, "value_lr": self.value_lr,
            "policy_lr": self.policy_lr, "max_weight": self.max_weight, "net_arch": net_arch,
            "num_threads": self.num_threads, "dtype": dtype, "progress": self.progress,
            "eval_every": self.eval_every, "eval_episodes": self.eval_episodes,
        }  # fmt: skip
        self._one_hot = int(obs_space.n) if isinstance(obs_space, gym.spaces.Discrete) else 0
        n_in = self._one_hot or int(np.prod(obs_space.shape))
        A = int(self.action_space.n)
        self.num_actions = A
        kw = {"dtype": dtype, "device": self.device}
        self.policy_net = self._init_modules(lambda: CategoricalPolicy(n_in, A, net_arch, **kw))
        self.value_net = self._init_modules(
            lambda: mlp(n_in, net_arch, 1, dtype=dtype, device=self.device)
        )
        self.policy_optimizer = torch.optim.Adam(self.policy_net.parameters(), lr=self.policy_lr)
        self.value_optimizer = torch.optim.Adam(self.value_net.parameters(), lr=self.value_lr)
        # the data: time-ordered features, actions, rewards, next features, flags
        self.data = {
            "x": torch.zeros((0, n_in), **kw),
            "a": torch.zeros(0, dtype=torch.int64, device=self.device),
            "r": torch.zeros(0, **kw),
            "x_next": torch.zeros((0, n_in), **kw),
            "terminated": torch.zeros(0, **kw),
            "truncated": torch.zeros(0, dtype=torch.bool, device=self.device),
        }
        self._stored_until = 0
        self.iterations = 0
        self._act_input = torch.zeros((1, n_in), **kw)

    # ---------------------------------------------------------------- the pieces
    def features(self, observations) -> torch.Tensor:
        """Network input (B, F) from a batch of observations (one-hot for Discrete ones)."""
        obs = torch.as_tensor(np.asarray(observations), device=self.device)
        if self._one_hot:
            return nn.functional.one_hot(obs.long().reshape(-1), self._one_hot).to(self.dtype)
        return obs.reshape(-1, self._act_input.shape[1]).to(self.dtype)

    def policy(self, observations) -> torch.Tensor:
        """π(a|s), (B, A)."""
        return self.policy_net(self.features(observations)).exp()

    def _logits_row(self, observation) -> np.ndarray:
        x = self._act_input
        if self._one_hot:
            x.zero_()
            x[0, int(observation)] = 1.0
        else:
            x.copy_(torch.from_numpy(np.asarray(observation).reshape(1, -1)))
        with torch.no_grad():
            return self.policy_net(x)[0].cpu().numpy().astype(np.float64)

    def _act(self, observation, deterministic: bool):
        logits = self._logits_row(observation)
        if deterministic:
            return int(np.argmax(logits))
        return int(np.argmax(logits + self.np_random.gumbel(size=logits.shape)))

    # ---------------------------------------------------------------- one iteration
    def _collect(self) -> int:
        if self.data["a"].numel() and self._stored_until != self.num_timesteps:
            self.data["truncated"][-1] = True  # steps were lost (Ctrl-C): the stream broke
        rows = {"x": [], "a": [], "r": [], "x_next": [], "terminated": [], "truncated": []}
        for _ in range(self.steps_per_iteration):
            action = self._act(self.current_observation, False)
            obs, a, r, next_obs, terminated, truncated = self._env_step(action)
            for key, value in (("x", obs), ("a", a), ("r", r), ("x_next", next_obs),
                               ("terminated", terminated), ("truncated", truncated)):  # fmt: skip
                rows[key].append(value)
        kw = {"dtype": self.dtype, "device": self.device}
        new = {
            "x": self.features(np.stack(rows["x"])),
            "a": torch.as_tensor(rows["a"], dtype=torch.int64, device=self.device),
            "r": torch.as_tensor(rows["r"], **kw),
            "x_next": self.features(np.stack(rows["x_next"])),
            "terminated": torch.as_tensor(rows["terminated"], **kw),
            "truncated": torch.as_tensor(rows["truncated"], dtype=torch.bool, device=self.device),
        }
        for key in self.data:
            self.data[key] = torch.cat([self.data[key], new[key]])[-self.buffer_size :]
        self._stored_until = self.num_timesteps
        return self.steps_per_iteration

    def _returns(self) -> torch.Tensor:
        d = self.data
        with torch.no_grad():
            v_next = self.value_net(d["x_next"]).squeeze(-1)
        cut = d["truncated"].clone()
        cut[-1] = True  # the stream stops here until the next iteration: bootstrap
        return td_lambda_returns(
            d["r"], v_next, d["terminated"], cut, discount=self.gamma, lam=self.lam
        )

    def _fit_value(self, returns: torch.Tensor) -> None:
        n, x, loss = returns.shape[0], self.data["x"], None
        for _ in range(self.value_steps):
            idx = torch.randint(n, (self.batch_size,), generator=self.torch_generator)
            loss = 0.5 * (self.value_net(x[idx]).squeeze(-1) - returns[idx]).pow(2).mean()
            self.value_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.value_optimizer.step()
        if loss is not None:
            self.history.log("value_loss", self.num_timesteps, float(loss.detach()))

    def _fit_policy(self, weights: torch.Tensor) -> None:
        n, x, a, loss = weights.shape[0], self.data["x"], self.data["a"], None
        for _ in range(self.policy_steps):
            idx = torch.randint(n, (self.batch_size,), generator=self.torch_generator)
            loss = -weighted_log_likelihood(self.policy_net(x[idx]), a[idx], weights[idx])
            self.policy_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.policy_optimizer.step()
        if loss is not None:
            self.history.log("policy_loss", self.num_timesteps, float(loss.detach()))

    def _train_step(self) -> int:
        taken = self._collect()  # collect with π_old
        self._fit_value(self._returns())  # critic on TD(λ) returns
        with torch.no_grad():  # E-step: advantages under the new critic, clipped weights
            adv = self._returns() - self.value_net(self.data["x"]).squeeze(-1)
            weights = awr_weights(adv, temperature=self.alpha, max_weight=self.max_weight)
        self._fit_policy(weights)  # M-step: weighted maximum likelihood
        self.iterations += 1
        return taken

    def learn(self, total_timesteps: int, *, progress: bool | None = None):
        """See :meth:`Algorithm.learn`; runs under ``num_threads`` torch threads if set."""
        with torch_threads(self.num_threads):
            return super().learn(total_timesteps, progress=progress)

    def _state(self) -> dict:
        return {
            "policy_net": self.policy_net.state_dict(),
            "value_net": self.value_net.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "data": {k: v.clone() for k, v in self.data.items()},
            "iterations": self.iterations,
            "stored_until": self._stored_until,
        }

    def _load_state(self, state: dict) -> None:
        self.policy_net.load_state_dict(state["policy_net"])
        self.value_net.load_state_dict(state["value_net"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.data = {k: v.to(self.device) for k, v in state["data"].items()}
        self.iterations = int(state["iterations"])
        self._stored_until = int(state["stored_until"])
