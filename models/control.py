r"""The control-as-inference graphical model as a Pyro program (Levine 2018, §2).

::

          O_0           O_1                 O_{T-1}        p(Oₜ = 1 | sₜ, aₜ, sₜ₊₁)
           ^             ^                     ^              = exp(r(sₜ, aₜ, sₜ₊₁) / α)
           |  \          |  \                  |  \
          a_0   \       a_1   \              a_{T-1} \     aₜ ~ p(a | sₜ)   (action prior)
         ^   \   \     ^   \   \            ^     \   \
         |    v   v    |    v   v           |      v   v
        s_0 ------> s_1 ------> s_2  ...  s_{T-1} ------> s_T
         ^                                           sₜ₊₁ ~ P(· | sₜ, aₜ)   (true dynamics)
       p0(s)

Sites: ``s_0``, then for each t in ``pyro.markov(range(T))``: ``a_{t}``, ``s_{t+1}`` and the
optimality evidence ``O_{t}``. The evidence is a ``pyro.factor`` of log-weight r/α by default;
the *teaching* form makes Oₜ an observed Bernoulli with p(Oₜ = 1) = exp((r − r_max)/α), rewards
shifted to be ≤ 0 as the lecture requires of a probability (it changes log p(O) by the constant
−(number of observed steps)·r_max/α and nothing else).

All categorical sites use ``logits = log P`` with −inf for impossible moves:
``Categorical(probs=P)`` would clamp zeros to machine epsilon and shift the evidence.

Because the model is written with ``pyro.markov`` and index arithmetic that broadcasts, Pyro's
``TraceEnum_ELBO`` can sum out every state and action exactly (variable elimination), giving
log p(O) by an independent route: :func:`enumerated_log_evidence`.
"""

from __future__ import annotations

import contextlib
import functools

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pgm_control.backward import _step_weights
from pgm_control.mdp import TabularMDP, _check_mdp, _check_temperature

__all__ = ["control_model", "enumerated_log_evidence", "OPTIMALITY_FORMS"]

OPTIMALITY_FORMS = ("factor", "bernoulli")


def _check_form(optimality: str) -> str:
    if optimality not in OPTIMALITY_FORMS:
        raise ValueError(f"`optimality` must be one of {OPTIMALITY_FORMS}, got {optimality!r}")
    return optimality


def _bernoulli_logits(log_p1: torch.Tensor) -> torch.Tensor:
    """Logits of a Bernoulli with log p(1) = log_p1 ≤ 0, exact down to log_p1 ≈ −1e-12."""
    log_p1 = log_p1.clamp(max=-1e-12)
    return log_p1 - torch.log(-torch.expm1(log_p1))


def control_model(
    mdp: TabularMDP,
    *,
    temperature: float = 1.0,
    optimality: str = "factor",
    observed_steps=None,
    num_particles: int | None = None,
):
    """The optimality PGM of ``mdp``: p(τ, O) = p0(s₀)·Πₜ p(aₜ|sₜ)·P(sₜ₊₁|sₜ,aₜ)·p(Oₜ|sₜ,aₜ,sₜ₊₁).

    Args:
        mdp: a :class:`~pgm_control.TabularMDP`.
        temperature: α > 0.
        optimality: "factor" (``pyro.factor("O_t", r/α)``) or "bernoulli" (observed Oₜ = 1).
        observed_steps: condition only on these Oₜ (e.g. ``[T - 1]``: reach the goal at the
            end); the rest are left out of the model, which marginalises them. All by default.
        num_particles: if given, draw that many trajectories at once in a ``pyro.plate``
            named "particles" (dim -1).

    Returns:
        The list [s_0, …, s_T] of sampled states (each of the plate's shape; under
        enumeration each keeps its own enumeration dim, so they are not stacked).
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    _check_form(optimality)
    w = _step_weights(mdp, observed_steps).tolist()
    log_p, log_prior, r = mdp.log_transition, mdp.log_action_prior, mdp.reward
    r_shift = mdp.reward.max() if optimality == "bernoulli" else 0.0
    plate = (
        pyro.plate("particles", num_particles, dim=-1)
        if num_particles is not None
        else contextlib.nullcontext()
    )
    with plate:
        s = pyro.sample("s_0", dist.Categorical(logits=mdp.log_initial))
        states = [s]
        for t in pyro.markov(range(mdp.horizon)):
            a = pyro.sample(f"a_{t}", dist.Categorical(logits=log_prior[s]))
            s_next = pyro.sample(f"s_{t + 1}", dist.Categorical(logits=log_p[s, a]))
            if w[t]:
                log_weight = (r[s, a, s_next] - r_shift) / alpha
                if optimality == "factor":
                    pyro.factor(f"O_{t}", log_weight)
                else:
                    logits = _bernoulli_logits(log_weight)
                    pyro.sample(
                        f"O_{t}", dist.Bernoulli(logits=logits), obs=torch.ones_like(logits)
                    )
            s = s_next
            states.append(s)
    return states


def _empty_guide(*args, **kwargs):
    pass


def enumerated_log_evidence(
    mdp: TabularMDP,
    *,
    temperature: float = 1.0,
    optimality: str = "factor",
    observed_steps=None,
) -> torch.Tensor:
    """log p(O) by Pyro's exact enumeration of :func:`control_model` (empty guide).

    ``TraceEnum_ELBO`` enumerates every ``s_t`` and ``a_t`` in parallel and contracts them with
    variable elimination along ``pyro.markov``; with no latent sites left in the guide its
    ELBO *is* the log marginal likelihood. An independent check of :func:`log_evidence`.
    For ``optimality="bernoulli"`` the result is shifted by −(observed steps)·r_max/α.
    """
    mdp = _check_mdp(mdp)
    model = config_enumerate(
        functools.partial(
            control_model,
            mdp,
            temperature=temperature,
            optimality=optimality,
            observed_steps=observed_steps,
        ),
        "parallel",
    )
    elbo = TraceEnum_ELBO(max_plate_nesting=0)
    with torch.no_grad(), pyro.validation_enabled(False):
        loss = elbo.loss(model, _empty_guide)  # a Python float, computed in the MDP's dtype
    return torch.tensor(-loss, dtype=mdp.float_dtype, device=mdp.device)
