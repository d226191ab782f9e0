"""The importance-sampling planner: self-normalised IS of the optimality posterior p(τ | O).

The lecture's Monte-Carlo route to p̂(aₜ | sₜ, O): "take a bunch of samples through the model,
choose actions proportional to the exponentiated sum of rewards". With a proposal q(τ)::

    wₖ ∝ p(τₖ, O) / q(τₖ) = p(τₖ)·exp(Σₜ r/α) / q(τₖ),        τₖ ~ q,  k = 1..K
    p̂(a₀ | s₀, O) = Σₖ w̄ₖ·𝟙[a₀ₖ = a₀],   w̄ = softmax(log w)
    ESS = 1 / Σₖ w̄ₖ²,   log p̂(O | s₀) = logsumexp(log w) − log K

With the prior as proposal the ratio p(τ)/q(τ) is 1 and wₖ = exp(Σₜ r/α): the lecture's formula.
MPPI (:mod:`pgm_control.mppi`) is this estimator run in receding horizon.

The weights are read off Pyro traces of the *same* generative models the rest of the library
uses (:func:`~pgm_control.models.control_model`,
:func:`~pgm_control.models.continuous_control_model`), all K particles at once in one
``pyro.plate``::

    log wₖ = Σ_{observed sites} log p  +  Σ_{sites the proposal drew} (log p − log q).

A tabular proposal is a policy q(a|s), so it runs as a guide (it needs the states) and the
model is replayed against it. A continuous proposal is over open-loop action sequences: all K
plans are drawn at once, the model is conditioned on them (its prior log p(a) becomes an
observed term) and log q of the plans is subtracted. Sites the proposal leaves to the model
(the next states of a stochastic learned model, or every site when ``proposal`` is None) are
drawn from the model's own conditionals, so their ratio is 1. This is Pyro's
``vectorized_importance_weights`` with that one generalisation; unlike ``pyro.infer.Importance``
it never loops over particles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pgm_control.models.continuous import continuous_control_model
from pgm_control.models.control import control_model

from .continuous import ContinuousMDP
from .mdp import TabularMDP, _check_policy
from .validation import check_int, check_positive_int, check_temperature

__all__ = ["ImportanceResult", "WeightDegeneracyWarning", "importance_posterior"]

_DEGENERATE_FRACTION = 0.01  # warn when ESS < 1% of K


class WeightDegeneracyWarning(UserWarning):
    """The effective sample size fell below 1% of the particles: the estimate rests on a few."""


@dataclasses.dataclass(frozen=True, eq=False)
class ImportanceResult:
    """Weighted action sequences from :func:`importance_posterior` (or one MPPI iteration).

    Attributes:
        log_weights: log wₖ = log p(τₖ, O) − log q(τₖ), unnormalised, shape (K,).
        weights: w̄ = softmax(log w), shape (K,); sums to 1.
        ess: effective sample size 1 / Σ w̄², in [1, K].
        actions: the sampled sequences, (K, H) action indices (tabular) or
            (K, H, action_dim) (continuous).
        returns: Σₜ r(sₜ, aₜ) of each particle, shape (K,) (without a continuous MDP's
            terminal reward, which enters the weights only).
        first_action: tabular: the posterior marginal p̂(a₀ | s₀, O), shape (A,);
            continuous: the posterior mean E[a₀ | s₀, O], shape (action_dim,).
        plan: the posterior mean of the plan, indexed as plan[t]: tabular (H, A) marginals
            p̂(aₜ | s₀, O) (the mean of one-hot actions), continuous (H, action_dim).
        log_evidence: log p̂(O | s₀) = logsumexp(log w) − log K, an unbiased estimate of
            p(O | s₀) on the log scale (biased low by Jensen).
        temperature: α.
    """

    log_weights: torch.Tensor
    weights: torch.Tensor
    ess: float
    actions: torch.Tensor
    returns: torch.Tensor
    first_action: torch.Tensor
    plan: torch.Tensor
    log_evidence: float
    temperature: float

    @property
    def num_samples(self) -> int:
        return self.log_weights.shape[0]

    @property
    def ess_fraction(self) -> float:
        """ESS / K: 1 for equal weights, 1/K when one particle holds all the mass."""
        return self.ess / self.num_samples

    def __repr__(self) -> str:
        return (
            f"ImportanceResult(K={self.num_samples}, ESS={self.ess:.1f} "
            f"({100 * self.ess_fraction:.2g}%), log_evidence={self.log_evidence:.4g}, "
            f"alpha={self.temperature:g}, first_action={_short(self.first_action)})"
        )


def _short(t: torch.Tensor) -> str:
    return np.array2string(t.detach().cpu().numpy(), precision=3, separator=", ")


# ------------------------------------------------------------------------- checks
def _check_tabular_state(mdp: TabularMDP, state) -> int:
    if isinstance(state, torch.Tensor):
        if state.numel() != 1 or state.is_floating_point() or state.is_complex():
            raise ValueError(
                f"`state` must be one integer state index, got a tensor of shape "
                f"{tuple(state.shape)} and dtype {state.dtype}"
            )
        state = state.item()
    state = check_int("state", state)
    if not 0 <= state < mdp.num_states:
        raise ValueError(f"`state` must lie in [0, {mdp.num_states}), got {state}")
    return int(state)


def _check_continuous_state(mdp: ContinuousMDP, state) -> torch.Tensor:
    """A (state_dim,) float tensor; dtype and device follow ``state`` (float64 for non-floats)."""
    if not isinstance(state, torch.Tensor):
        try:
            state = torch.as_tensor(np.asarray(state))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"`state` must be a tensor or array, got {type(state).__name__}"
            ) from exc
    if not state.is_floating_point():
        if state.is_complex() or state.dtype == torch.bool:
            raise TypeError(f"`state` must hold real numbers, got dtype {state.dtype}")
        state = state.to(torch.float64)
    if state.shape != (mdp.state_dim,):
        raise ValueError(
            f"`state` must have shape (state_dim,) = ({mdp.state_dim},), got {tuple(state.shape)}"
        )
    if not torch.isfinite(state).all():
        raise ValueError(f"`state` must be finite, got {state.tolist()}")
    return state


# -------------------------------------------------------------------------- RNG
class _RandomStream:
    """A private random stream: code run under ``with stream:`` draws from it (Pyro samples
    through torch's global generator), and the global generator is left as it was found."""

    def __init__(self, seed: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self._cpu = torch.get_rng_state()
        self._cuda = {}
        self._seed = int(seed)

    @contextlib.contextmanager
    def __call__(self, device: torch.device):
        cuda = device.type == "cuda"
        index = device.index if device.index is not None else 0
        with torch.random.fork_rng(devices=[index] if cuda else []):
            torch.set_rng_state(self._cpu)
            if cuda:
                if index not in self._cuda:
                    with torch.cuda.device(index):
                        torch.cuda.manual_seed(self._seed)
                    self._cuda[index] = torch.cuda.get_rng_state(index)
                torch.cuda.set_rng_state(self._cuda[index], index)
            try:
                yield
            finally:
                self._cpu = torch.get_rng_state()
                if cuda:
                    self._cuda[index] = torch.cuda.get_rng_state(index)


# ---------------------------------------------------------------------- weights
def _log_weights(model_trace, guide_trace) -> torch.Tensor:
    """log p(τ, O) − log q(τ) per particle from a model trace replayed against a guide trace."""
    drawn = set() if guide_trace is None else {
        name for name, site in guide_trace.nodes.items() if site["type"] == "sample"
    }  # fmt: skip
    missing = drawn - set(model_trace.nodes)
    if missing:
        raise ValueError(f"the proposal samples sites the model does not have: {sorted(missing)}")
    model_trace.compute_log_prob(lambda name, site: site["is_observed"] or name in drawn)
    log_w = 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"] or name in drawn:  # the optimality factors O, proposed sites
            log_w = log_w + site["log_prob"]
    if drawn:
        guide_trace.compute_log_prob()
        for name in drawn:
            log_w = log_w - guide_trace.nodes[name]["log_prob"]
    return log_w


def _weigh(model, guide):
    """Run the proposal (a guide, or None for the model's own prior) and the model on it."""
    guide_trace = None if guide is None else poutine.trace(guide).get_trace()
    replayed = model if guide_trace is None else poutine.replay(model, trace=guide_trace)
    model_trace = poutine.trace(replayed).get_trace()
    return _log_weights(model_trace, guide_trace), model_trace


def _summarise(log_w: torch.Tensor, num_samples: int, warn: int):
    """Normalised weights, ESS and log p̂(O). ``warn``: the stacklevel of the degeneracy warning
    (pointing at the user's call), or 0 for none."""
    log_w = log_w.expand(num_samples) if log_w.ndim == 0 else log_w
    log_z = torch.logsumexp(log_w, 0)
    if not torch.isfinite(log_z):
        if torch.isnan(log_z):
            raise ValueError("importance log-weights contain NaN; check the reward and dynamics")
        raise ValueError(
            "every importance weight is zero (or the log-weights overflow): the proposal put no "
            "mass where the model has any; use the prior as proposal or a wider one"
        )
    weights = torch.exp(log_w - log_z)
    ess = 1.0 / float((weights * weights).sum())
    if warn and ess < _DEGENERATE_FRACTION * num_samples:
        warnings.warn(
            f"importance weights are degenerate: ESS = {ess:.1f} of K = {num_samples} "
            f"({100 * ess / num_samples:.2g}% < {100 * _DEGENERATE_FRACTION:g}%). The estimate "
            "rests on a few particles: raise the temperature or K, or use a proposal closer "
            "to the posterior (e.g. MPPI's refitted Gaussian).",
            WeightDegeneracyWarning,
            stacklevel=warn,
        )
    log_evidence = float(log_z) - math.log(num_samples)
    return log_w, weights, ess, log_evidence


# ---------------------------------------------------------------------- tabular
def _policy_proposal(mdp: TabularMDP, log_q: torch.Tensor, num_samples: int):
    """q(τ) = p0(s₀)·Πₜ q(aₜ|sₜ)·P(sₜ₊₁|sₜ,aₜ): the model's own dynamics, a proposal policy."""
    log_p = mdp.log_transition
    with pyro.plate("particles", num_samples, dim=-1):
        s = pyro.sample("s_0", dist.Categorical(logits=mdp.log_initial))
        for t in pyro.markov(range(mdp.horizon)):
            a = pyro.sample(f"a_{t}", dist.Categorical(logits=log_q[t, s]))
            s = pyro.sample(f"s_{t + 1}", dist.Categorical(logits=log_p[s, a]))


def _tabular_posterior(mdp, s_0, horizon, num_samples, alpha, proposal, warn):
    onehot = torch.zeros(mdp.num_states, dtype=mdp.float_dtype, device=mdp.device)
    onehot[s_0] = 1.0
    sub = mdp.replace(initial=onehot, horizon=horizon)
    guide = None
    if proposal is not None:
        q = _check_policy(sub, proposal, "proposal")
        if ((q == 0) & (sub.action_prior > 0)).any():
            raise ValueError(
                "`proposal` gives probability 0 to an action the prior allows: importance "
                "sampling would miss part of the posterior; give every such action mass > 0"
            )
        guide = functools.partial(_policy_proposal, sub, torch.log(q), num_samples)
    model = functools.partial(control_model, sub, temperature=alpha, num_particles=num_samples)
    log_w, trace = _weigh(model, guide)
    log_w, weights, ess, log_ev = _summarise(log_w, num_samples, warn)
    states = torch.stack(trace.nodes["_RETURN"]["value"], -1)  # indexed as states[k, t]
    actions = torch.stack([trace.nodes[f"a_{t}"]["value"] for t in range(horizon)], -1)
    returns = sub.reward[states[:, :-1], actions, states[:, 1:]].sum(-1)
    onehots = torch.nn.functional.one_hot(actions, mdp.num_actions).to(weights.dtype)
    plan = torch.einsum("k,kta->ta", weights, onehots)  # indexed as plan[t, a]
    return ImportanceResult(log_w, weights, ess, actions, returns, plan[0], plan, log_ev, alpha)


# ------------------------------------------------------------------- continuous
def _check_sequence_proposal(proposal, horizon: int, action_dim: int):
    if not isinstance(proposal, torch.distributions.Distribution):
        raise TypeError(
            "`proposal` must be a torch Distribution over whole action sequences, event shape "
            f"(horizon, action_dim) = ({horizon}, {action_dim}), e.g. "
            "Normal(plan, sigma).to_event(2); got " + type(proposal).__name__
        )
    if tuple(proposal.event_shape) != (horizon, action_dim) or tuple(proposal.batch_shape):
        raise ValueError(
            f"`proposal` must have batch shape () and event shape ({horizon}, {action_dim}); got "
            f"batch {tuple(proposal.batch_shape)}, event {tuple(proposal.event_shape)}"
        )


def _continuous_posterior(mdp, s_0, num_samples, alpha, prior, proposal, warn, traced=True):
    """IS on ``continuous_control_model`` of ``mdp`` (its horizon is the plan's) from s₀.

    ``traced=False`` (deterministic dynamics and a proposal only) evaluates the same model
    density in closed form, :func:`_log_joint_deterministic`, skipping Pyro's trace machinery
    on a hot path (MPPI; the tests, or ``MPPI(check=True)``, check the two routes agree).
    """
    model = functools.partial(
        continuous_control_model, mdp, temperature=alpha, initial_state=s_0,
        num_particles=num_samples, action_prior=prior, vectorized=True,
    )  # fmt: skip
    if proposal is None:  # the model's own prior: w = exp(Σ r/α)
        log_w, trace = _weigh(model, None)
        _, actions, rewards = trace.nodes["_RETURN"]["value"]
    else:  # an open-loop proposal: draw all K plans at once and condition the model on them
        actions = proposal.sample((num_samples,))
        if traced:
            log_w, trace = _weigh(poutine.condition(model, data={"actions": actions}), None)
            rewards = trace.nodes["_RETURN"]["value"][2]
        else:
            log_w, rewards = _log_joint_deterministic(mdp, s_0, actions, alpha, prior)
        log_w = log_w - proposal.log_prob(actions)
    log_w, weights, ess, log_ev = _summarise(log_w, num_samples, warn)
    plan = torch.einsum("k,kti->ti", weights, actions)  # indexed as plan[t, i]
    return ImportanceResult(
        log_w, weights, ess, actions, rewards.sum(-1), plan[0], plan, log_ev, alpha
    )


def _log_joint_deterministic(mdp, s_0, actions, alpha, prior):
    """log p(a₀:H₋₁, O | s₀) of the vectorised continuous model, for deterministic dynamics.

    The model's trace holds exactly these terms at given actions: the action prior
    Σₜ log p(aₜ), the factor Σₜ r(sₜ, aₜ)/α along the rollout sₜ₊₁ = f(sₜ, aₜ) and, if the
    MDP has one, the terminal factor r_T(s_H)/α. Returns (log p (K,), rewards (K, H)).
    """
    states, s = [], s_0
    for a in actions.unbind(-2):
        states.append(s)
        s = mdp.dynamics(s, a)
        if isinstance(s, torch.distributions.Distribution):
            raise TypeError("the closed-form weights need deterministic dynamics")
    states = torch.stack(torch.broadcast_tensors(*states), 0).movedim(0, -2)
    rewards = mdp.reward(states, actions)
    log_p = prior.log_prob(actions).sum(-1) + rewards.sum(-1) / alpha
    if mdp.terminal_reward is not None:
        log_p = log_p + mdp.terminal_reward(s) / alpha
    return log_p, rewards


# --------------------------------------------------------------------- public
def importance_posterior(
    mdp: TabularMDP | ContinuousMDP,
    state,
    *,
    horizon: int,
    num_samples: int,
    temperature: float,
    proposal=None,
    seed: int = 0,
    action_prior=None,
) -> ImportanceResult:
    """Self-normalised importance sampling of p(a₀:H₋₁ | s₀ = state, O) (lecture: MPPI ≡ IS).

    ``log wₖ = log p(τₖ, O) − log q(τₖ) = Σₜ r/α + log p(a…) − log q(a…)``,
    ``w̄ = softmax(log w)``, ``p̂(a₀|s₀,O) = Σₖ w̄ₖ 𝟙[a₀ₖ = a]``: Levine 2018's posterior
    p(τ|O) ∝ p(τ)·exp(Σₜ r/α) (§2.2) as an expectation under q; with a Gaussian q over action
    sequences it is MPPI (Williams et al. 2017, Alg. 2).

    Args:
        mdp: a :class:`~pgm_control.TabularMDP` (weights from
            :func:`~pgm_control.models.control_model`) or a :class:`~pgm_control.ContinuousMDP`
            (from :func:`~pgm_control.models.continuous_control_model`, vectorised form).
        state: s₀: a state index (tabular) or a (state_dim,) tensor (continuous; the plan's
            dtype and device follow it).
        horizon: H >= 1, the number of planned actions (replaces ``mdp.horizon``).
        num_samples: K >= 1 particles, all drawn in one vectorised trace.
        temperature: α > 0.
        proposal: q over actions. None: the model's action prior (wₖ = exp(Σ r/α)). Tabular: a
            policy q(a|s), shape (H, S, A) or (S, A), positive wherever the prior is; states
            follow the true dynamics. Continuous: a Distribution over sequences with event
            shape (H, action_dim), e.g. ``Normal(plan, σ).to_event(2)``.
        seed: seeds a private random stream; the global torch RNG is left untouched.
        action_prior: continuous only: p(a) for one action (uniform on the box if None).

    Returns:
        :class:`ImportanceResult`. Warns with :class:`WeightDegeneracyWarning` when
        ESS < 1% of K.
    """
    alpha = check_temperature(temperature)
    horizon = check_positive_int("horizon", horizon)
    num_samples = check_positive_int("num_samples", num_samples)
    seed = check_int("seed", seed)
    stream = _RandomStream(seed)
    if isinstance(mdp, TabularMDP):
        if action_prior is not None:
            raise TypeError(
                "`action_prior` is for continuous MDPs; a TabularMDP carries its own "
                "(use mdp.replace(action_prior=...))"
            )
        s_0 = _check_tabular_state(mdp, state)
        with stream(mdp.device), torch.no_grad():
            return _tabular_posterior(mdp, s_0, horizon, num_samples, alpha, proposal, 4)
    if isinstance(mdp, ContinuousMDP):
        s_0 = _check_continuous_state(mdp, state)
        sub = mdp if horizon == mdp.horizon else mdp.replace(horizon=horizon)
        if proposal is not None:
            _check_sequence_proposal(proposal, horizon, mdp.action_dim)
        with stream(s_0.device), torch.no_grad():
            return _continuous_posterior(sub, s_0, num_samples, alpha, action_prior, proposal, 4)
    raise TypeError(f"`mdp` must be a TabularMDP or a ContinuousMDP, got {type(mdp).__name__}")
