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

Because the model is written with ``pyro.markov`` and index arithmetic that broadcasts, Pyro
can enumerate every state and action and sum them out exactly (variable elimination), giving
log p(O) by an independent route: :func:`enumerated_log_evidence`.
"""

from __future__ import annotations

import contextlib
import functools

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate
from pyro.ops.einsum import contract

from pgm_control.backward import _step_weights
from pgm_control.mdp import TabularMDP, _check_mdp, _check_temperature

__all__ = ["control_model", "enumerated_log_evidence", "OPTIMALITY_FORMS", "ENUMERATION_METHODS"]

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
    log_p, log_prior = mdp.log_transition, mdp.log_action_prior
    r_shift = mdp.reward.max() if optimality == "bernoulli" else 0.0
    # the evidence's log-weight (r − r_max)/α, or its Bernoulli logits, once for every (s,a,s'):
    # elementwise, so indexing it gives the same numbers as scaling each step's gather
    log_weight_table = (mdp.reward - r_shift) / alpha
    if optimality == "bernoulli":
        log_weight_table = _bernoulli_logits(log_weight_table)
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
                log_weight = _evidence_at(log_weight_table, s, a, s_next)
                if optimality == "factor":
                    pyro.factor(f"O_{t}", log_weight)
                else:
                    logits = log_weight
                    pyro.sample(
                        f"O_{t}", dist.Bernoulli(logits=logits), obs=torch.ones_like(logits)
                    )
            s = s_next
            states.append(s)
    return states


def _evidence_at(table: torch.Tensor, s, a, s_next) -> torch.Tensor:
    """table[s, a, s_next], the same numbers read the cheapest way.

    When Pyro enumerates ``s_next`` (``enumerate_support(expand=False)`` marks the value as an
    arange along its own dim), the answer is a transposed view of the rows table[s, a], as
    in Pyro's own ``Categorical.log_prob``; otherwise it is a flat-index gather (twice as fast
    as three broadcast index tensors).
    """
    if getattr(s_next, "_pyro_categorical_support", None) is not None:
        rows = table[s, a]  # (..., S'): a row copy
        if rows.dim() <= s_next.dim():
            rows = rows.reshape((1,) * (1 + s_next.dim() - rows.dim()) + rows.shape)
        if s_next.size(0) == rows.size(-1) and rows.size(-1 - s_next.dim()) == 1:
            return rows.transpose(-1 - s_next.dim(), -1).squeeze(-1)
    S, A = table.shape[0], table.shape[1]
    return torch.take(table, (s * A + a) * S + s_next)


def _empty_guide(*args, **kwargs):
    pass


ENUMERATION_METHODS = ("forward", "trace_enum_elbo")
_LOG_EINSUM = "pyro.ops.einsum.torch_log"


# ExactELBO's closed form stands in for this model; on a sparse MDP, whose rows cannot be traced
# to check that, the estimator takes the model's word (see pgm_control.estimators).
control_model.closed_form = "tabular_control"


def enumerated_log_evidence(
    mdp: TabularMDP,
    *,
    temperature: float = 1.0,
    optimality: str = "factor",
    observed_steps=None,
    method: str = "forward",
) -> torch.Tensor:
    """log p(O) by Pyro's exact enumeration of :func:`control_model`: an independent check.

    Pyro enumerates every ``s_t`` and ``a_t`` of the model in parallel (``poutine.enum`` under
    ``pyro.markov``) and scores every site on every enumerated value (``compute_log_prob``);
    the sum over all of them is then taken in one of two ways, neither of which touches the
    library's messages (``pgm_control.backward``):

    - ``"forward"`` (default): variable elimination forwards in time with Pyro's log-space
      einsum (``pyro.ops.einsum.contract``, backend ``torch_log``):
      ``m₀(s) = log p0(s)``, ``mₜ₊₁(s') = log Σ_{s,a} exp(mₜ(s) + log p(a|s) + log P(s'|s,a) +
      log p(Oₜ|s,a,s'))``, log p(O) = log Σ m_T. Each step adds the factors in log space and
      contracts (s, a) in one stabilised logsumexp, so it stays exact as α → 0 (log-weights
      spanning 10⁶ nats); ≈ 15–20× the messages' time on Taxi-v4, T = 50.
    - ``"trace_enum_elbo"``: ``TraceEnum_ELBO`` with an empty guide, whose ELBO *is* log p(O);
      Pyro chooses the contraction order itself (≈ 30–50× the messages' time) and shifts each
      operand separately, so it underflows once log-weights span more than ~700 nats.

    For ``optimality="bernoulli"`` the result is shifted by −(observed steps)·r_max/α.

    Returns:
        A scalar in the MDP's dtype (no gradient).
    """
    mdp = _check_mdp(mdp)
    if method not in ENUMERATION_METHODS:
        raise ValueError(f"`method` must be one of {ENUMERATION_METHODS}, got {method!r}")
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
    with torch.no_grad(), pyro.validation_enabled(False):
        if method == "trace_enum_elbo":
            loss = TraceEnum_ELBO(max_plate_nesting=0).loss(model, _empty_guide)  # a float
            return torch.tensor(-loss, dtype=mdp.float_dtype, device=mdp.device)
        trace = poutine.trace(poutine.enum(model, first_available_dim=-1)).get_trace()
        trace.compute_log_prob()
        trace.pack_tensors()  # each log_prob gets ._pyro_dims: one letter per enumerated site
        return _eliminate_forward(trace, mdp.horizon)


def _packed_log_prob(trace, name):
    return trace.nodes[name]["packed"]["log_prob"]


def _eliminate_forward(trace, T: int) -> torch.Tensor:
    """Sum the packed factors of an enumerated :func:`control_model` trace, s_0 to s_T."""
    m = _packed_log_prob(trace, "s_0")
    m_dims = m._pyro_dims
    for t in range(T):
        log_pa = _packed_log_prob(trace, f"a_{t}")  # dims (s_t, a_t), in some order
        joint = _packed_log_prob(trace, f"s_{t + 1}")  # dims (s_t, a_t, s_t+1), in some order
        head_dims = _union(log_pa._pyro_dims, m_dims)
        head = _aligned(log_pa, log_pa._pyro_dims, head_dims) + _aligned(m, m_dims, head_dims)
        factors = [(joint, joint._pyro_dims), (head, head_dims)]
        if f"O_{t}" in trace.nodes:  # the evidence
            evidence = _packed_log_prob(trace, f"O_{t}")
            factors.append((evidence, evidence._pyro_dims))
        dims = functools.reduce(_union, [d for _, d in factors])
        # multiply every factor in log space first, then contract (s_t, a_t) in one logsumexp:
        # a shift per factor (two operands to einsum) underflows once log-weights span ≳ 700
        # nats (α → 0), where one shift for the whole product stays exact
        product = sum(_aligned(x, x_dims, dims) for x, x_dims in factors)
        out = "".join(d for d in dims if d not in head_dims)  # s_t+1 (absent when S = 1)
        m = contract(f"{dims}->{out}", product, backend=_LOG_EINSUM)
        m_dims = out
    return torch.logsumexp(m, dim=0) if m.dim() else m


def _union(dims: str, more: str) -> str:
    return dims + "".join(d for d in more if d not in dims)


def _aligned(x: torch.Tensor, x_dims: str, dims: str) -> torch.Tensor:
    """``x`` (dims ``x_dims`` ⊆ ``dims``) viewed in the order of ``dims``, size 1 elsewhere."""
    order = sorted(range(len(x_dims)), key=lambda i: dims.index(x_dims[i]))
    x = x.permute(*order) if order else x  # packing drops size-1 dims: x may be a scalar
    kept = [x_dims[i] for i in order]
    return x.reshape([x.shape[kept.index(d)] if d in kept else 1 for d in dims])
