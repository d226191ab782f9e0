"""Guided cost learning: MaxEnt IRL when only ``env.step`` is available (Finn et al. 2016).

The reward r_ψ is fitted by maximum likelihood under the optimality model
p(τ | O, ψ) = p(τ)·exp(Σₜ r_ψ(sₜ,aₜ,sₜ₊₁)/α) / Z(ψ), p(τ) = p0·Πₜ p(aₜ|sₜ)·P(sₜ₊₁|sₜ,aₜ)
(Levine 2018, §2; the IRL lecture), whose gradient is

    ∇ψ L = E_expert[Σₜ ∇ψ r_ψ]/α − ∇ψ log Z(ψ),   ∇ψ log Z = E_{p(τ|O,ψ)}[Σₜ ∇ψ r_ψ]/α.

With the tables, log Z is :func:`pgm_control.log_evidence` and its gradient the forward–backward
marginals (:func:`pgm_control.maxent_irl`). Without them, trajectories τⱼ ~ q of the current
policy π are reweighted: the dynamics cancel in p(τ|O)/q(τ), so with self-normalised weights

    w̄ⱼ ∝ wⱼ = exp(Σₜ r_ψ/α)·Πₜ p(aₜ|sₜ) / Πₜ π(aₜ|sₜ),     ∇ψ log Z ≈ Σⱼ w̄ⱼ·Σₜ ∇ψ r_ψ(τⱼ)/α,

which is exactly the autograd gradient of log Ẑ = log (1/M)·Σⱼ wⱼ
(:func:`importance_log_partition`). Its effective sample size ESS = 1/Σⱼ w̄ⱼ² says how many
samples the estimate rests on; the policy is improved on the current r_ψ between reward steps
(tabular soft Q-learning on the env with r_ψ in place of its reward), which keeps q close to
p(τ|O, ψ) and the ESS up. Finn et al.'s demo mixing is optional: the demonstrations join the
samples and every sample is weighted against the mixture of both proposals (the balance
heuristic; the demonstrations' proposal is their smoothed empirical policy).

Which posterior. The weights above estimate the exact (optimistic) trajectory posterior, the
model of :func:`pgm_control.log_evidence`; the learned reward is therefore evaluated through the
optimistic backup (``IRLResult.backup == "optimistic"``), and a state–action reward is needed
on stochastic dynamics (a state-only one cannot make the optimistic posterior cautious).
"""

from __future__ import annotations

import math
import time
import typing

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .algorithm import make_env
from .demonstrations import Demonstrations
from .irl_result import IRLResult
from .irl_samples import (
    check_env_demonstrations,
    discrete_sizes,
    env_copy,
    mask_after_terminal,
    policy_samples,
    sample_based_result,
    trajectory_log_prob,
)
from .networks import torch_threads
from .reward_models import RewardWrapper
from .soft_q_learning import SoftQLearning
from .validation import (
    check_discount,
    check_int,
    check_positive_float,
    check_positive_int,
    check_temperature,
)

__all__ = ["guided_cost_learning", "importance_log_partition", "PartitionEstimate"]


class PartitionEstimate(typing.NamedTuple):
    """Result of :func:`importance_log_partition`.

    Attributes:
        log_partition: log Ẑ, a scalar differentiable in the returns.
        weights: the self-normalised weights w̄ⱼ (M,), detached.
        ess: the effective sample size 1/Σⱼ w̄ⱼ², in [1, M].
    """

    log_partition: torch.Tensor
    weights: torch.Tensor
    ess: float


def importance_log_partition(
    returns: torch.Tensor,
    log_proposal: torch.Tensor,
    log_prior=0.0,
    *,
    temperature: float = 1.0,
) -> PartitionEstimate:
    """The importance-sampling estimate of log Z(ψ) = log E_{p(τ)}[exp(Σₜ r_ψ/α)].

    ``log Ẑ = log (1/M)·Σⱼ exp(Rⱼ/α + log p(aⱼ) − log q(aⱼ))`` for trajectories τⱼ ~ q that
    follow the true dynamics (which cancel); its gradient Σⱼ w̄ⱼ·∇ψ Rⱼ/α is the self-normalised
    estimate of ∇ψ log Z (Finn et al. 2016, eq. 4; Levine 2018 IRL lecture).

    Args:
        returns: Rⱼ = Σₜ r_ψ(sₜ,aₜ,sₜ₊₁) of each sample, shape (M,), differentiable in ψ.
        log_proposal: log q(τⱼ) up to the dynamics, Σₜ log π(aₜ|sₜ), shape (M,).
        log_prior: Σₜ log p(aₜ|sₜ) of the action prior, (M,) or a scalar (0 for p ≡ 1).
        temperature: α > 0.

    Returns:
        :class:`PartitionEstimate`.

    Raises:
        ValueError: shapes differ, or a weight is NaN / every weight is zero.
    """
    alpha = check_temperature(temperature)
    if not isinstance(returns, torch.Tensor) or returns.ndim != 1 or len(returns) < 1:
        raise ValueError(
            f"`returns` must be a 1-d tensor (M,), got {getattr(returns, 'shape', returns)}"
        )
    log_q = torch.as_tensor(log_proposal, dtype=returns.dtype, device=returns.device)
    if log_q.shape != returns.shape:
        raise ValueError(
            f"`log_proposal` must have the shape of `returns` {tuple(returns.shape)}, got "
            f"{tuple(log_q.shape)}"
        )
    log_p = torch.as_tensor(log_prior, dtype=returns.dtype, device=returns.device)
    log_w = returns / alpha + log_p - log_q.detach()
    log_sum = torch.logsumexp(log_w, 0)
    if not torch.isfinite(log_sum):
        what = "NaN" if torch.isnan(log_sum) else "no finite weight"
        raise ValueError(
            f"importance log-weights give {what}: check the reward model's output and that "
            "the proposal log-probabilities are finite"
        )
    weights = torch.exp(log_w - log_sum).detach()
    ess = float(1.0 / (weights * weights).sum())
    return PartitionEstimate(log_sum - math.log(len(returns)), weights, ess)


def _returns(model: nn.Module, demos: Demonstrations, device) -> torch.Tensor:
    """Σₜ mask·r_ψ(sₜ,aₜ,sₜ₊₁) of each trajectory, (N,), differentiable in ψ."""
    s, a, s1 = (x.to(device) for x in (demos.states[:, :-1], demos.actions, demos.states[:, 1:]))
    r = model(s, a, s1)
    return (demos.step_weights(r.dtype).to(device) * r).sum(-1)


def _empirical_log_policy(demos: Demonstrations, log_prior: torch.Tensor) -> torch.Tensor:
    """log π̂_D(a|s) = log((n(s,a) + p(a|s)) / (n(s) + 1)): the demos' policy, prior-smoothed."""
    S, A = log_prior.shape
    counts = demos.counts(S, A, dtype=log_prior.dtype).sum((0, 3)).to(log_prior.device)
    counts = counts * demos.num_demonstrations  # visits n(s, a) on live steps
    prior = torch.exp(log_prior)
    return torch.log((counts + prior) / (counts.sum(-1, keepdim=True) + 1.0))


def guided_cost_learning(
    env,
    reward_model: nn.Module,
    demonstrations,
    *,
    horizon: int | None = None,
    temperature: float = 1.0,
    iterations: int = 40,
    samples_per_iteration: int = 200,
    policy_steps: int = 2000,
    reward_steps: int = 5,
    lr: float = 0.5,
    discount: float = 0.99,
    policy_learning_rate: float = 0.5,
    mix_demonstrations: bool = True,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = 1,
) -> IRLResult:
    """Guided cost learning (Finn et al. 2016) from ``env.step`` alone.

    Each iteration (the algorithm box of the lecture):

    1. policy improvement: ``policy_steps`` steps of tabular soft Q-learning
       (:class:`~pgm_control.SoftQLearning`, temperature α, discount γ) on the env with the
       current r_ψ as its reward (:class:`~pgm_control.reward_models.RewardWrapper`);
    2. ``samples_per_iteration`` trajectories τⱼ of the current soft policy π, at most T steps;
    3. ``reward_steps`` Adam steps on ψ minimising the negative log-likelihood estimate
       −(1/N)·Σₙ R_ψ(τₙ^demo)/α + log Ẑ(ψ) (:func:`importance_log_partition`), i.e. ascending
       ∇ψ L ≈ E_demo[∇ψ R]/α − Σⱼ w̄ⱼ·∇ψ R(τⱼ)/α.

    Trajectories end where the env terminates (the state is absorbing and pays nothing
    afterwards; see :mod:`pgm_control.irl_samples`).

    Args:
        env: a gymnasium env (or id) with Discrete observations and actions; only ``reset``
            and ``step`` are used.
        reward_model: r_ψ, a module called as ``model(s, a, s')`` on index tensors
            (:class:`~pgm_control.reward_models.TabularReward`, ``LinearReward``); trained in
            place.
        demonstrations: :class:`~pgm_control.Demonstrations` (or Trajectories, or a
            (states, actions) pair) of horizon T.
        horizon: T; must equal the demonstrations' horizon when given.
        temperature: α > 0 of p(O|s,a,s') = exp(r_ψ/α).
        iterations: outer iterations (≥ 1).
        samples_per_iteration: M policy trajectories per reward step.
        policy_steps: env steps of soft Q-learning per iteration.
        reward_steps: Adam steps on ψ per batch of samples (the weights are recomputed for
            the changing ψ; the proposal stays fixed).
        lr: Adam's step size on r_ψ/α (nats; the parameters move by ≈ lr·α per step).
        discount: γ of the soft Q-learner (its policy is only the proposal).
        policy_learning_rate: the soft Q-learner's first-visit step size (decaying as n^-0.5,
            so that it keeps following the changing reward).
        mix_demonstrations: add the demonstrations to the samples, weighted against the
            mixture of π and their empirical policy (Finn et al. 2016, §4).
        seed: seeds the learner, the rollouts and the sample env (the caller's RNGs are
            untouched).
        num_threads: torch threads during the run (restored after; None: leave as is); one
            is fastest for small tables.
        progress: a tqdm bar over iterations; Ctrl-C returns what was learned so far.

    Returns:
        :class:`~pgm_control.IRLResult` with ``reward`` (S, A, S) (zero after the states seen to
        terminate), ``policy`` the learner's final soft policy (T, S, A) (stationary),
        ``backup="optimistic"``, the module in ``reward_model``, and history arrays ``loss``
        (the negative log-likelihood estimate per demonstration), ``ess``, ``ess_fraction``
        (ESS/M) and ``log_partition`` per iteration.
    """
    env = make_env(env)
    S, A = discrete_sizes(env)
    demos = check_env_demonstrations(demonstrations, S, A, horizon)
    T = demos.horizon
    alpha = check_temperature(temperature)
    iterations = check_positive_int("iterations", iterations)
    M = check_positive_int("samples_per_iteration", samples_per_iteration)
    policy_steps = check_positive_int("policy_steps", policy_steps)
    reward_steps = check_positive_int("reward_steps", reward_steps)
    lr = check_positive_float("lr", lr)
    gamma = check_discount(discount)
    seed = check_int("seed", seed)
    params = [p for p in reward_model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("`reward_model` has no trainable parameters")
    device, dtype = params[0].device, params[0].dtype

    learner = SoftQLearning(
        RewardWrapper(env, reward_model), alpha, gamma, learning_rate=policy_learning_rate,
        lr_decay=0.5, seed=seed, progress=False, dtype=torch.float64,
    )  # fmt: skip
    sample_env = env_copy(env)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    log_prior = torch.full((S, A), -math.log(A), dtype=dtype, device=device)
    optimizer = torch.optim.Adam(params, lr=lr * alpha)
    terminal = torch.zeros(S, dtype=torch.bool)
    history = {"loss": [], "ess": [], "ess_fraction": [], "log_partition": []}
    interrupted = False
    with torch_threads(num_threads):
        start = time.perf_counter()
        bar = tqdm(range(iterations), disable=not progress, desc="guided cost learning")
        try:
            for _ in bar:
                learner.learn(policy_steps, progress=False)  # 1. policy improvement on r_ψ
                pi = learner.policy.to(device=device, dtype=dtype)
                samples, seen = policy_samples(  # 2. trajectories of π in the env
                    sample_env, pi, M, T, seed=int(rng.integers(2**31))
                )
                terminal |= seen
                expert = mask_after_terminal(demos, terminal)
                batch, log_q, log_p = _proposal(
                    samples, expert, torch.log(pi), log_prior, mix_demonstrations
                )
                for k in range(reward_steps):  # 3. reward steps with the IS partition gradient
                    estimate = importance_log_partition(
                        _returns(reward_model, batch, device), log_q, log_p, temperature=alpha
                    )
                    loss = (
                        estimate.log_partition
                        - _returns(reward_model, expert, device).mean() / alpha
                    )
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    if k == 0:
                        history["loss"].append(float(loss.detach()))
                        history["ess"].append(estimate.ess)
                        history["ess_fraction"].append(estimate.ess / len(estimate.weights))
                        history["log_partition"].append(float(estimate.log_partition.detach()))
                bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", ess=f"{history['ess'][-1]:.1f}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            sample_env.close()
    return sample_based_result(
        reward_model, learner.policy, terminal, T, algorithm="guided_cost_learning",
        temperature=alpha, backup="optimistic", history=history,
        seconds=time.perf_counter() - start, interrupted=interrupted,
        extra={"mix_demonstrations": bool(mix_demonstrations)},
    )  # fmt: skip


def _proposal(samples, expert, log_pi, log_prior, mix):
    """The sample batch and its log q (up to dynamics) and log p(a) sums, optionally mixed."""
    if not mix:
        return (
            samples,
            trajectory_log_prob(log_pi, samples),
            trajectory_log_prob(log_prior, samples),
        )
    batch = _concat(samples, expert)
    M, N = samples.num_demonstrations, expert.num_demonstrations
    log_pi_d = _empirical_log_policy(expert, log_prior)
    log_q = torch.logaddexp(
        math.log(M / (M + N)) + trajectory_log_prob(log_pi, batch),
        math.log(N / (M + N)) + trajectory_log_prob(log_pi_d, batch),
    )
    return batch, log_q, trajectory_log_prob(log_prior, batch)


def _concat(a: Demonstrations, b: Demonstrations) -> Demonstrations:
    device = a.states.device
    mask = torch.cat(
        [a.step_weights(torch.float64).bool(), b.step_weights(torch.float64).bool().to(device)]
    )
    return Demonstrations(
        torch.cat([a.states, b.states.to(device)]),
        torch.cat([a.actions, b.actions.to(device)]),
        mask,
    )
