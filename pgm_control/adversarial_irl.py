"""Adversarial inverse RL: the GAN view of MaxEnt IRL (Finn et al. 2016b; Fu et al. 2018).

A discriminator tells expert transitions from the policy's; given the *form*

    D_ψ(s,a,s') = p(a|s)·exp(f_ψ(s,a,s')/α) / (p(a|s)·exp(f_ψ(s,a,s')/α) + π(a|s)),
    logit D = log D − log(1 − D) = f_ψ/α + log p(a|s) − log π(a|s),

(the lecture's exp(f)/(exp(f) + π) with the action prior p(a|s) of the optimality model put
back, α = 1 there), its optimum (D = ½ on the expert's support, π = π_E) is
f* = α·log(π_E(a|s)/p(a|s)) — the expert's soft advantage, a reward whose soft value is 0
everywhere and whose soft-optimal policy *is* π_E. (Without the prior, a uniform p would shift
f* by −α·log A per step, a constant cost that, with terminating episodes, rewards ending
early.) The policy is trained with the
library's soft algorithm (tabular soft Q-learning at temperature α) on the reward f_ψ: it
maximises E[Σₜ f_ψ − α·log π] = α·E[Σₜ logit D], the generator's objective (the lecture's
"log D − log(1 − D)").

* ``reward_inputs="state_action"``: f_ψ(s, a); ``"next_state"``: the state-only f_ψ(s') that
  cannot absorb the dynamics (Fu et al.'s disentangled reward) and so transfers when the
  dynamics change (re-optimise it under the new ones);
* ``discriminator="classifier"``: the plain classifier D = σ(g_ψ/α) (GAIL's discriminator, with
  the same soft learner on the reward g_ψ) for the lecture's contrast — it imitates while it
  trains, but its logit is only ρ_E/ρ_π, not a reward: re-optimised on its own it does not give
  the expert back.

As in :mod:`pgm_control.guided_cost_learning`, trajectories end where the env terminates.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
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
)
from .networks import torch_threads
from .reward_models import REWARD_INPUTS, RewardWrapper, TabularReward
from .soft_q_learning import SoftQLearning
from .validation import (
    check_discount,
    check_int,
    check_positive_float,
    check_positive_int,
    check_temperature,
)

__all__ = [
    "adversarial_irl",
    "discriminator_logits",
    "discriminator_loss",
    "ShapedReward",
    "DISCRIMINATORS",
]

DISCRIMINATORS = ("airl", "classifier")


class ShapedReward(nn.Module):
    """f(s,a,s') = r_ψ(s,a,s') + γ·h_φ(s')·[s' not terminal] − h_φ(s) (Fu et al. 2018, eq. 4).

    The potential h_φ (S,) (initialised to 0) lets the discriminator's f be the expert's
    advantage while r_ψ stays a reward: potential-based shaping changes no optimal policy
    (Ng et al. 1999), and with a state-only r_ψ the pair disentangles reward from dynamics.
    ``terminal`` (a bool buffer (S,)) holds the states seen to end an episode: their potential
    is 0 (nothing follows them).
    """

    def __init__(self, reward: nn.Module, num_states: int, discount: float):
        super().__init__()
        param = next(iter(reward.parameters()))
        self.reward = reward
        self.discount = float(discount)
        self.potential = nn.Parameter(
            torch.zeros(num_states, dtype=param.dtype, device=param.device)
        )
        self.register_buffer(
            "terminal", torch.zeros(num_states, dtype=torch.bool, device=param.device)
        )

    def forward(self, states, actions, next_states) -> torch.Tensor:
        h_next = torch.where(self.terminal[next_states], 0.0, self.potential[next_states])
        return (
            self.reward(states, actions, next_states)
            + self.discount * h_next
            - self.potential[states]
        )


def discriminator_logits(
    model: nn.Module,
    steps: Demonstrations,
    log_policy: torch.Tensor,
    *,
    temperature: float = 1.0,
    discriminator: str = "airl",
    log_prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """logit D_ψ at every step, indexed [n, t], shape (N, T).

    ``"airl"``: f_ψ(sₜ,aₜ,sₜ₊₁)/α + log p(aₜ|sₜ) − log π(aₜ|sₜ) (π detached);
    ``"classifier"``: g_ψ/α.

    Args:
        model: f_ψ (or g_ψ), called as ``model(s, a, s')``.
        steps: the transitions (masked steps are computed too; weigh them out).
        log_policy: log π(a|s) of the current policy, (S, A).
        temperature: α > 0.
        discriminator: "airl" or "classifier".
        log_prior: log p(a|s) of the action prior, (S, A); None: p ≡ 1 (the lecture's form).
    """
    alpha = check_temperature(temperature)
    if discriminator not in DISCRIMINATORS:
        raise ValueError(f"`discriminator` must be one of {DISCRIMINATORS}, got {discriminator!r}")
    device = log_policy.device
    s, a, s1 = (x.to(device) for x in (steps.states[:, :-1], steps.actions, steps.states[:, 1:]))
    logits = model(s, a, s1) / alpha
    if discriminator == "airl":
        logits = logits - log_policy.detach()[s, a]
        if log_prior is not None:
            logits = logits + log_prior[s, a]
    return logits


def discriminator_loss(expert_logits, expert_mask, policy_logits, policy_mask) -> torch.Tensor:
    """Binary cross-entropy, expert = 1 and policy = 0, summed over live steps per trajectory.

    ``E_τ~expert[Σₜ softplus(−logitₜ)] + E_τ~π[Σₜ softplus(logitₜ)]`` (masked steps out). The
    steps are weighed per *trajectory* (not averaged over steps) so that the optimum is
    logit = log(c_E/c_π) with c the expected visit counts per episode: an episode that ends
    early has fewer steps, and averaging over steps would shift every logit by the log-ratio
    of the mean episode lengths — a constant reward that pays for ending episodes (or for
    avoiding ends) on an env with terminal states (Kostrikov et al. 2019).

    Args:
        expert_logits, policy_logits: (N, T) and (M, T) discriminator logits.
        expert_mask, policy_mask: the live steps, same shapes, floating 0/1.
    """
    expert = (expert_mask * F.softplus(-expert_logits)).sum() / expert_logits.shape[0]
    policy = (policy_mask * F.softplus(policy_logits)).sum() / policy_logits.shape[0]
    return expert + policy


def adversarial_irl(
    env,
    demonstrations,
    *,
    horizon: int | None = None,
    temperature: float = 1.0,
    reward_inputs: str = "state_action",
    discriminator: str = "airl",
    reward_model: nn.Module | None = None,
    shaping: bool | None = None,
    iterations: int = 20,
    samples_per_iteration: int = 200,
    policy_steps: int = 2000,
    discriminator_steps: int = 10,
    lr: float = 1.0,
    discount: float = 0.99,
    policy_learning_rate: float = 0.5,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = 1,
) -> IRLResult:
    """Adversarial IRL (Fu et al. 2018) from ``env.step`` alone.

    Each iteration: (1) ``policy_steps`` steps of soft Q-learning on the env paying f_ψ;
    (2) ``samples_per_iteration`` trajectories of the current soft policy π (≤ T steps);
    (3) ``discriminator_steps`` Adam steps on the discriminator's cross-entropy
    (:func:`discriminator_loss`) between the demonstrations' steps and π's.

    Args:
        env: a gymnasium env (or id) with Discrete observations and actions.
        demonstrations: :class:`~pgm_control.Demonstrations` (or Trajectories, or a
            (states, actions) pair) of horizon T.
        horizon: T; must equal the demonstrations' horizon when given.
        temperature: α > 0 (of D's form and of the soft learner).
        reward_inputs: what f_ψ depends on, one of
            :data:`~pgm_control.reward_models.REWARD_INPUTS` ("state_action", "next_state" —
            the state-only reward that transfers —, "state").
        discriminator: "airl" (D = exp(f/α)/(exp(f/α) + π)) or "classifier" (D = σ(g/α)).
        reward_model: r_ψ as a module ``model(s, a, s')``; default a zero
            :class:`~pgm_control.reward_models.TabularReward` with ``reward_inputs``.
        shaping: f = r_ψ + γ·h(s') − h(s) with a learned potential h (:class:`ShapedReward`,
            Fu et al.'s disentangled form) instead of f = r_ψ; default True for a state-only
            r_ψ (``reward_inputs`` other than "state_action"), False otherwise. The result's
            reward is r_ψ alone (what transfers); the potential is in ``params``.
        iterations, samples_per_iteration, policy_steps: as in
            :func:`~pgm_control.guided_cost_learning`.
        discriminator_steps: Adam steps on ψ per batch.
        lr: Adam's step size on f_ψ/α (nats).
        discount: γ of the soft Q-learner.
        policy_learning_rate: the soft Q-learner's first-visit step size (decaying as n^-0.5).
        seed: seeds the learner, the rollouts and the sample env.
        num_threads: torch threads during the run (restored after; None: leave as is); one
            is fastest for small tables.
        progress: a tqdm bar; Ctrl-C returns what was learned so far.

    Returns:
        :class:`~pgm_control.IRLResult` with ``reward`` the learned f_ψ (S, A, S) (zero after the
        states seen to terminate), ``policy`` the soft learner's (T, S, A) (stationary),
        ``backup="expected"`` (f is re-optimised by soft RL in the true dynamics), and history
        ``discriminator_loss``, ``expert_accuracy``, ``policy_accuracy`` (the fractions of
        expert / policy steps D classifies right) per iteration.
    """
    env = make_env(env)
    S, A = discrete_sizes(env)
    demos = check_env_demonstrations(demonstrations, S, A, horizon)
    T = demos.horizon
    alpha = check_temperature(temperature)
    if discriminator not in DISCRIMINATORS:
        raise ValueError(f"`discriminator` must be one of {DISCRIMINATORS}, got {discriminator!r}")
    if reward_model is None:
        if reward_inputs not in REWARD_INPUTS:
            raise ValueError(
                f"`reward_inputs` must be one of {REWARD_INPUTS}, got {reward_inputs!r}"
            )
        reward_model = TabularReward(S, A, inputs=reward_inputs)
    iterations = check_positive_int("iterations", iterations)
    M = check_positive_int("samples_per_iteration", samples_per_iteration)
    policy_steps = check_positive_int("policy_steps", policy_steps)
    discriminator_steps = check_positive_int("discriminator_steps", discriminator_steps)
    lr = check_positive_float("lr", lr)
    gamma = check_discount(discount)
    seed = check_int("seed", seed)
    params = [p for p in reward_model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("`reward_model` has no trainable parameters")
    device, dtype = params[0].device, params[0].dtype
    if shaping is None:
        shaping = reward_inputs != "state_action"
    f_model = ShapedReward(reward_model, S, gamma) if shaping else reward_model

    learner = SoftQLearning(
        RewardWrapper(env, f_model), alpha, gamma, learning_rate=policy_learning_rate,
        lr_decay=0.5, seed=seed, progress=False, dtype=torch.float64,
    )  # fmt: skip
    sample_env = env_copy(env)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    optimizer = torch.optim.Adam(f_model.parameters(), lr=lr * alpha)
    log_prior = torch.full((S, A), -math.log(A), dtype=dtype, device=device)  # the learner's
    terminal = torch.zeros(S, dtype=torch.bool)
    history = {"discriminator_loss": [], "expert_accuracy": [], "policy_accuracy": []}
    interrupted = False
    with torch_threads(num_threads):
        start = time.perf_counter()
        bar = tqdm(
            range(iterations), disable=not progress, desc=f"adversarial IRL ({discriminator})"
        )
        try:
            for _ in bar:
                learner.learn(policy_steps, progress=False)  # 1. the generator: soft RL on f_ψ
                pi = learner.policy.to(device=device, dtype=dtype)
                samples, seen = policy_samples(  # 2. its trajectories
                    sample_env, pi, M, T, seed=int(rng.integers(2**31))
                )
                terminal |= seen
                if shaping:
                    f_model.terminal.copy_(terminal)
                expert = mask_after_terminal(demos, terminal)
                w_e, w_p = (
                    expert.step_weights(dtype).to(device),
                    samples.step_weights(dtype).to(device),
                )
                log_pi = torch.log(pi)
                for k in range(discriminator_steps):  # 3. the discriminator
                    kw = {
                        "temperature": alpha,
                        "discriminator": discriminator,
                        "log_prior": log_prior,
                    }
                    logit_e = discriminator_logits(f_model, expert, log_pi, **kw)
                    logit_p = discriminator_logits(f_model, samples, log_pi, **kw)
                    loss = discriminator_loss(logit_e, w_e, logit_p, w_p)
                    if not torch.isfinite(loss):
                        raise ValueError(
                            "the discriminator loss is not finite: the reward model returned "
                            "NaN or inf (check its parameters and `lr`)"
                        )
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    if k == 0:
                        history["discriminator_loss"].append(float(loss.detach()))
                        history["expert_accuracy"].append(_accuracy(logit_e > 0, w_e))
                        history["policy_accuracy"].append(_accuracy(logit_p < 0, w_p))
                bar.set_postfix(loss=f"{history['discriminator_loss'][-1]:.4g}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            sample_env.close()
    return sample_based_result(
        reward_model, learner.policy, terminal, T, algorithm=f"adversarial_irl ({discriminator})",
        temperature=alpha, backup="expected", history=history,
        seconds=time.perf_counter() - start, interrupted=interrupted,
        extra={"discriminator": discriminator, "shaping": shaping,
               "potential": f_model.potential.detach().clone() if shaping else None},
    )  # fmt: skip


def _accuracy(right: torch.Tensor, weights: torch.Tensor) -> float:
    return float((right.to(weights.dtype) * weights).sum() / weights.sum().clamp(min=1))
