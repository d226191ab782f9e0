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
* ``dynamics="empirical"``: under *stochastic* dynamics the optimal logit
  log(ρ_E/ρ_π)(s,a,s') = log(ρ_E/ρ_π)(s,a) ignores where the slip went, so Fu et al.'s
  per-sample shaping g(s') + γ·h(s') − h(s) learns the slip noise instead of the goal. This
  mode counts P̂(s'|s,a) from the env steps seen, takes the shaping in expectation with a
  potential per step (:func:`expected_shaping`, the finite-horizon advantage's own form) and
  trains the generator exactly in P̂ over the demonstrations' horizon; its state-only g
  recovers the goal and transfers across slip probabilities;
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
from .backward import soft_value_iteration
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
from .mdp import TabularMDP
from .networks import torch_threads
from .reward_models import REWARD_INPUTS, RewardWrapper, TabularReward, reward_table
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
    "expected_shaping",
    "empirical_transition",
    "DISCRIMINATORS",
    "DYNAMICS",
]

DISCRIMINATORS = ("airl", "classifier")
DYNAMICS = ("samples", "empirical")


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


def expected_shaping(
    reward: torch.Tensor,
    potential: torch.Tensor | None,
    transition: torch.Tensor,
    terminal: torch.Tensor,
) -> torch.Tensor:
    """AIRL's f with the shaping term in expectation over s', indexed as f[t, s, a], (T, S, A).

    ``fₜ(s,a) = Σ_s' P(s'|s,a)·(r(s,a,s') + hₜ₊₁(s')) − hₜ(s)``, h_T ≡ 0 and h ≡ 0 at terminal
    states — the finite-horizon soft advantage's own form, Aₜ = E[r + Vₜ₊₁(s')] − Vₜ(s)
    (Levine 2018, eq. 9 with the expected backup): with hₜ = Vₜ of r it *is* α·log(πₜ/p).
    The per-sample form r + γ·h(s') − h(s) (:class:`ShapedReward`, Fu et al. 2018, eq. 4)
    equals it only under deterministic dynamics; under stochastic ones the discriminator's
    optimal logit log(ρ_E/ρ_π)(s,a,s') does not depend on s', so a reward on s' and a
    potential on s' fitted to single samples of s' absorb the slip noise instead of the goal
    (the double-sampling bias of fitting E[·|s,a] from one draw).

    Args:
        reward: r(s, a, s'), (S, A, S).
        potential: hₜ(s) for t = 0..T−1, (T, S); None: h ≡ 0 (f = E[r], T = 1 row).
        transition: P(s'|s, a), (S, A, S) (the empirical one of :func:`empirical_transition`).
        terminal: bool (S,), states where episodes end (h = 0 there).
    """
    r_bar = (transition * reward).sum(-1)  # E_{s'}[r(s,a,s')], (S, A)
    if potential is None:
        return r_bar[None]
    h = torch.where(terminal.to(potential.device), 0.0, potential)  # (T, S)
    h_next = torch.cat([h[1:], torch.zeros_like(h[:1])])  # hₜ₊₁, h_T = 0
    return r_bar[None] + torch.einsum("sax,tx->tsa", transition.to(h.dtype), h_next) - h[:, :, None]


def empirical_transition(counts: torch.Tensor, terminal: torch.Tensor) -> torch.Tensor:
    """P̂(s'|s,a) = n(s,a,s')/n(s,a) from transition counts (S, A, S); (S, A, S).

    A terminal state is absorbing (the model of :meth:`TabularMDP.from_gymnasium`); an (s, a)
    never tried stays in s (a finite placeholder: it carries no data, and the discriminator
    never evaluates it).
    """
    S = counts.shape[0]
    eye = torch.eye(S, dtype=counts.dtype, device=counts.device)[:, None, :]  # stay in s
    n = counts.sum(-1, keepdim=True)
    P = torch.where(n > 0, counts / n.clamp(min=1), eye.expand_as(counts))
    return torch.where(terminal.to(counts.device)[:, None, None], eye, P)


def _model_policy(reward_model, transition, starts, terminal, horizon, alpha):
    """The generator under ``dynamics="empirical"``: the exact soft-optimal (T, S, A) policy
    of r_ψ in the empirical model (expected backup, α; terminal states absorb and pay 0)."""
    S, A, _ = transition.shape
    with torch.no_grad():
        reward = reward_table(reward_model, S, A).to(transition.dtype)
    reward[terminal.to(reward.device)] = 0.0
    model = TabularMDP(transition, reward, starts / starts.sum(), horizon, dtype=transition.dtype)
    return soft_value_iteration(model, temperature=alpha, backup="expected").policy


def _table_logits(f, steps, log_policy, alpha, log_prior):
    """logit Dₜ = fₜ(s,a)/α + log p(a|s) − log πₜ(a|s) at every step, (N, T); f (T or 1, S, A)."""
    s, a = steps.states[:, :-1].to(f.device), steps.actions.to(f.device)
    t = torch.arange(s.shape[1], device=f.device).expand_as(s)
    t_f = t if f.shape[0] > 1 else torch.zeros_like(t)
    return f[t_f, s, a] / alpha + log_prior[s, a] - log_policy.detach()[t, s, a]


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
    dynamics: str = "samples",
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
        dynamics: how the discriminator and the generator see the env's dynamics.
            ``"samples"``: model-free — f at each sampled (s, a, s'), the generator soft
            Q-learning on the env (discounted, stationary). ``"empirical"``: the transition
            counts of every step seen (demonstrations and policy samples) give P̂(s'|s,a);
            the shaped f is taken in expectation over s' with a potential per step,
            fₜ(s,a) = E_P̂[r_ψ + hₜ₊₁(s')] − hₜ(s) (:func:`expected_shaping`, the finite-horizon
            advantage's form — the state-only reward that transfers under *stochastic*
            dynamics), and the generator is the exact time-varying soft-optimal policy of r_ψ
            in P̂ over the demonstrations' horizon (``soft_value_iteration``, expected backup;
            ``policy_steps``, ``discount`` and ``policy_learning_rate`` are then unused).
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
        :class:`~pgm_control.IRLResult` with ``reward`` the learned r_ψ (S, A, S) (zero after the
        states seen to terminate), ``policy`` the generator's (T, S, A) (stationary with
        ``dynamics="samples"``), ``extra["transition"]`` P̂ with ``dynamics="empirical"``,
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
    if dynamics not in DYNAMICS:
        raise ValueError(f"`dynamics` must be one of {DYNAMICS}, got {dynamics!r}")
    if shaping is None:
        shaping = reward_inputs != "state_action"
    empirical = dynamics == "empirical"
    if empirical:
        # h_t(s), t = 0..T−1 (h_T = 0), the finite-horizon potential of expected_shaping
        potential = nn.Parameter(torch.zeros(T, S, dtype=dtype, device=device)) if shaping else None
        f_model, learner = reward_model, None
        disc_params = [*reward_model.parameters(), *([potential] if shaping else [])]
        counts = torch.zeros(S, A, S, dtype=dtype, device=device)  # n(s, a, s') seen
        starts = torch.zeros(S, dtype=dtype, device=device)  # n(s₀) seen
    else:
        f_model = ShapedReward(reward_model, S, gamma) if shaping else reward_model
        learner = SoftQLearning(
            RewardWrapper(env, f_model), alpha, gamma, learning_rate=policy_learning_rate,
            lr_decay=0.5, seed=seed, progress=False, dtype=torch.float64,
        )  # fmt: skip
        disc_params = list(f_model.parameters())
    sample_env = env_copy(env)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    optimizer = torch.optim.Adam(disc_params, lr=lr * alpha)
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
            if empirical:
                _add_counts(counts, starts, demos, S, A)
            for _ in bar:
                if empirical:  # 1. the generator: exact soft RL on r_ψ in P̂
                    P_hat = empirical_transition(counts, terminal)
                    pi = _model_policy(reward_model, P_hat, starts, terminal, T, alpha)
                else:  # 1. the generator: soft Q-learning on f_ψ in the env
                    learner.learn(policy_steps, progress=False)
                    pi = learner.policy.to(device=device, dtype=dtype)
                rows = pi.double()  # float32 rows sum to 1 only to ~1e-6: the sampler checks
                samples, seen = policy_samples(  # 2. its trajectories
                    sample_env, rows / rows.sum(-1, keepdim=True) if empirical else pi, M, T,
                    seed=int(rng.integers(2**31)),
                )  # fmt: skip
                terminal |= seen
                if shaping and not empirical:
                    f_model.terminal.copy_(terminal)
                expert = mask_after_terminal(demos, terminal)
                if empirical:
                    _add_counts(counts, starts, samples, S, A)
                    P_hat = empirical_transition(counts, terminal)
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
                    if empirical and discriminator == "airl":
                        f = expected_shaping(
                            reward_table(reward_model, S, A), potential, P_hat, terminal
                        )
                        logit_e = _table_logits(f, expert, log_pi, alpha, log_prior)
                        logit_p = _table_logits(f, samples, log_pi, alpha, log_prior)
                    else:
                        log_pi_s = log_pi if log_pi.ndim == 2 else log_pi[0]  # unused by σ(g/α)
                        logit_e = discriminator_logits(f_model, expert, log_pi_s, **kw)
                        logit_p = discriminator_logits(f_model, samples, log_pi_s, **kw)
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
    if empirical:
        P_hat = empirical_transition(counts, terminal)
        policy = _model_policy(reward_model, P_hat, starts, terminal, T, alpha)
        h = potential.detach().clone() if shaping else None
        extra = {"transition": P_hat}
    else:
        policy, extra = learner.policy, {}
        h = f_model.potential.detach().clone() if shaping else None
    return sample_based_result(
        reward_model, policy, terminal, T, algorithm=f"adversarial_irl ({discriminator})",
        temperature=alpha, backup="expected", history=history,
        seconds=time.perf_counter() - start, interrupted=interrupted,
        extra={"discriminator": discriminator, "shaping": shaping, "dynamics": dynamics,
               "potential": h, **extra},
    )  # fmt: skip


def _add_counts(counts, starts, steps: Demonstrations, S: int, A: int) -> None:
    """Add the live transitions n(s, a, s') and the start states of ``steps`` in place."""
    N = steps.num_demonstrations
    counts += steps.counts(S, A, by_time=False, dtype=counts.dtype).to(counts.device) * N
    starts += torch.bincount(steps.states[:, 0], minlength=S).to(starts)


def _accuracy(right: torch.Tensor, weights: torch.Tensor) -> float:
    return float((right.to(weights.dtype) * weights).sum() / weights.sum().clamp(min=1))
