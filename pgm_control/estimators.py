r"""ELBO estimators for the tabular control model, as Pyro ``ELBO`` classes.

All four plug into ``pyro.infer.SVI(control_model, guide, optim, loss=...)`` and into
:func:`pgm_control.fit`. They estimate the same objective — the lecture's line 2,
``ELBO(q) = E_q[log p(τ, O) − log q(τ)]`` — with different bias/variance/cost:

===================  =====================================================================
``"exact"``          any guide's analytic ELBO (its tables read off its sites, then a forward
                     recursion over its own state distribution) as a differentiable loss:
                     zero variance, a few ms/step
``"enum"``           Pyro's ``TraceEnum_ELBO`` summing over every trajectory of the guide:
                     exact too, by an independent route, for horizons T ≤ 31
``"score"``          ``Trace_ELBO`` with vectorised particles: the score-function gradient
                     ``E[∇log q(τ)·(log p(τ,O) − log q(τ))]``, i.e. REINFORCE with an
                     entropy bonus on the whole-trajectory return
``"rao_blackwell"``  the same gradient with each site's score multiplied only by the
                     cost *to go* from that site, minus a leave-one-out baseline b(s) over
                     the particles in the same state (the lecture's b(sₜ))
===================  =====================================================================

``"rao_blackwell"`` is what ``TraceGraph_ELBO`` does with its dependency graph, written for a
sequential program: in a Markov chain, a term computed before site k cannot depend on site k,
so the cost-to-go of site k is the sum of the terms from k on, in execution order. No
provenance tracking is needed, which makes it ~20× faster than ``TraceGraph_ELBO`` here.
"""

from __future__ import annotations

import re

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from pyro.infer.elbo import ELBO
from pyro.infer.util import is_validation_enabled, torch_item
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape

from .backward import _step_weights
from .elbo import trajectory_elbo
from .guide_tables import TableGuide, _same, read_guide_tables
from .mdp import TabularMDP
from .validation import check_positive_int, check_temperature

__all__ = [
    "ExactELBO",
    "EnumELBO",
    "ScoreFunctionELBO",
    "RaoBlackwellELBO",
    "ESTIMATORS",
    "make_estimator",
    "exact_elbo",
]

# 2T + 1 enumerated sites need as many tensor dims; torch allows 64.
MAX_ENUM_HORIZON = 31


def _split_mdp(args, kwargs):
    if args:
        return args[0], kwargs
    if "mdp" in kwargs:
        kwargs = dict(kwargs)
        return kwargs.pop("mdp"), kwargs
    return None, kwargs


def _check_control_model(model, mdp, kwargs, estimator: str):
    """The model must be the tabular control model of ``mdp``: checked from its own trace.

    Its latent sites must be ``s_0, a_t, s_{t+1}`` with p0, the action prior and P as their
    distributions (read like a guide's tables, with every state and action pinned). The closed
    form then stands in for it. :class:`ExactELBO` checks once per (model, mdp, arguments).
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(
            f"the {estimator!r} estimator needs a TabularMDP as the model's first argument, "
            f"got {type(mdp).__name__}"
        )
    label = getattr(model, "__name__", type(model).__name__)
    if mdp.is_sparse:  # its s' rows cannot be traced without the dense (S, A, S) table
        if getattr(model, "closed_form", None) == "tabular_control":
            return  # the model declares it is the tabular control model of its `mdp`
        raise TypeError(
            f"the {estimator!r} estimator on a sparse MDP needs a model that declares "
            f"`closed_form = 'tabular_control'` (as pgm_control.control_model does); {label!r} "
            "does not, and a sparse MDP's rows cannot be traced to check it"
        )
    try:
        tables = read_guide_tables(model, mdp, **kwargs)
    except TypeError as err:
        raise TypeError(
            f"the {estimator!r} estimator computes the ELBO of `pgm_control.control_model` in "
            f"closed form; model {label!r} does not sample its sites ({err}). Use 'score' or "
            "'rao_blackwell' for other models."
        ) from None
    prior = mdp.log_action_prior.expand(mdp.horizon, -1, -1)
    if tables.learns_dynamics or not _same(tables.log_policy, prior):
        raise TypeError(
            f"the {estimator!r} estimator computes the ELBO of `pgm_control.control_model` in "
            f"closed form; model {label!r} has other distributions than the MDP's p0, action "
            "prior and P. Use 'score' or 'rao_blackwell' for other models."
        )


def exact_elbo(guide, mdp: TabularMDP, **model_kwargs) -> torch.Tensor:
    """ELBO(q) of any tabular guide against ``control_model(mdp, **model_kwargs)``, exactly.

    ``ELBO = E_q[log p0 − log q0 + Σₜ r/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ) + log P − log qₜ(s'|s,a)]``
    (the lecture's line 3; line 5 when the guide shares p0 and P): the guide's tables are read
    off its sites (:func:`~pgm_control.guide_tables.read_guide_tables`) and summed by the
    forward recursion of :func:`~pgm_control.elbo.trajectory_elbo`. Differentiable in the
    guide's parameters. For ``optimality="bernoulli"`` the model's constant shift
    −(observed steps)·r_max/α is included, as in the model.
    """
    kwargs = dict(model_kwargs)
    if kwargs.pop("num_particles", None) is not None:
        raise ValueError("the exact estimators draw no particles; drop `num_particles`")
    optimality = kwargs.get("optimality", "factor")
    tables = read_guide_tables(guide, mdp, **kwargs)
    alpha = check_temperature(kwargs.get("temperature", 1.0))
    observed_steps = kwargs.get("observed_steps")
    elbo = trajectory_elbo(
        mdp,
        tables.log_policy,
        log_initial=tables.log_initial,
        log_dynamics=tables.log_dynamics,
        temperature=alpha,
        observed_steps=observed_steps,
    )
    if optimality == "bernoulli":  # the model's constant shift −(observed steps)·r_max/α
        w = _step_weights(mdp, observed_steps)
        elbo = elbo - w.sum().to(elbo.dtype) * mdp.reward.max().to(elbo.dtype) / alpha
    elif optimality != "factor":
        raise ValueError(f"`optimality` must be 'factor' or 'bernoulli', got {optimality!r}")
    return elbo


class ExactELBO(ELBO):
    """Any tabular guide's exact ELBO as a Pyro loss: zero variance (Levine 2018, §4; line 3).

    The guide's tables are read off its own sites (:func:`pgm_control.guide_tables.
    read_guide_tables`: one vectorised run with every state and action pinned) and the ELBO is
    the forward recursion of :func:`pgm_control.trajectory_elbo` over them —
    ``Σₜ Σ_s dₜ(s) Σ_a qₜ(a|s)·(r̄(s,a)/α + log p(a|s) − log qₜ(a|s))`` for a guide sharing the
    true dynamics, plus the log-ratios of q(s₀), qₜ(s'|s,a) for one that learns them. It is
    differentiable in the guide's parameters, whatever the guide. The model must be
    :func:`pgm_control.control_model` (checked from its trace once; its arguments are the
    ELBO's arguments). Use it with any optimiser, LBFGS included::

        svi = pyro.infer.SVI(control_model, guide, pyro.optim.Adam({"lr": 0.1}), ExactELBO())
        svi.step(mdp, temperature=0.5)
    """

    def __init__(self):
        super().__init__(num_particles=1)
        self._checked = None  # (model, mdp, arguments) last checked: the loop calls with the same

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("ExactELBO computes the ELBO in closed form; it draws no traces")

    def differentiable_loss(self, model, guide, *args, **kwargs):
        mdp, kwargs = _split_mdp(args, kwargs)
        arguments = repr(sorted(kwargs.items()))
        last = self._checked
        if last is None or last[0] is not model or last[1] is not mdp or last[2] != arguments:
            _check_control_model(model, mdp, kwargs, "exact")
            self._checked = (model, mdp, arguments)
        return -exact_elbo(guide, mdp, **kwargs)

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return torch_item(loss)


class EnumELBO(TraceEnum_ELBO):
    """``TraceEnum_ELBO`` over every trajectory of the guide: exact, by an independent route.

    The guide's tables are read off its sites (as for ``"exact"``) and a
    :class:`~pgm_control.guide_tables.TableGuide` samples ``s_0, a_t, s_{t+1}`` from them, every
    site enumerated in parallel *without* ``pyro.markov`` (guide-side markov enumeration
    silently gives a wrong ELBO for T ≥ 4); Pyro sums q(τ)·(log p(τ, O) − log q(τ)) over every
    trajectory by variable elimination. That needs 2T + 1 tensor dims, so horizons past T = 31
    are refused (use ``"exact"``). Vectorised particles make no sense for a sum over all
    trajectories and are refused too. Any guide works; no method is required of it.
    """

    def __init__(self):
        super().__init__(max_plate_nesting=0)

    def _enumerated(self, guide, args, kwargs):
        mdp, _ = _split_mdp(args, kwargs)
        horizon = getattr(mdp, "horizon", None)
        if not isinstance(mdp, TabularMDP):
            raise TypeError(
                f"the 'enum' estimator needs a TabularMDP as the model's first argument, got "
                f"{type(mdp).__name__}"
            )
        if horizon > MAX_ENUM_HORIZON:
            raise ValueError(
                f"the 'enum' estimator enumerates 2T + 1 = {2 * horizon + 1} sites, each in its "
                f"own tensor dim; torch allows 64, so it only works for T ≤ {MAX_ENUM_HORIZON}. "
                "Use estimator='exact' (the same number, by a forward recursion)."
            )
        if kwargs.get("num_particles") is not None:
            raise ValueError(
                "the 'enum' estimator sums over all trajectories; drop `num_particles`"
            )
        return TableGuide(guide, enumerate=True)

    def loss(self, model, guide, *args, **kwargs):
        return super().loss(model, self._enumerated(guide, args, kwargs), *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        enum_guide = self._enumerated(guide, args, kwargs)
        return super().differentiable_loss(model, enum_guide, *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        enum_guide = self._enumerated(guide, args, kwargs)
        return super().loss_and_grads(model, enum_guide, *args, **kwargs)


def _particle_traces(model, guide, args, kwargs, num_particles, estimator, importance):
    """(model trace, guide trace) of ``num_particles`` trajectories drawn at once.

    The particle count reaches model and guide through their own ``num_particles`` argument,
    so both open ``pyro.plate("particles", dim=-1)`` (the guide contract). A guide whose latent
    sites come out with another shape is refused here, before it can silently share one draw
    among all particles.
    """
    if kwargs.get("num_particles") is not None:
        raise ValueError(
            f"the {estimator!r} estimator draws its own particles; drop the model's "
            "`num_particles` (set it on the estimator)"
        )
    kwargs = {**kwargs, "num_particles": num_particles}
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or isinstance(site["fn"], _Subsample):
            continue
        batch = tuple(site["fn"].batch_shape)
        if batch != (num_particles,):
            raise ValueError(
                f"the guide's site {name!r} has batch shape {batch} with num_particles="
                f"{num_particles}: a guide must draw num_particles trajectories at once, inside "
                'pyro.plate("particles", num_particles, dim=-1) as the model does '
                "(pgm_control.guides.particles_plate(num_particles)), or with no plate and "
                "values of shape (num_particles,)"
            )
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    if is_validation_enabled():
        check_model_guide_match(model_trace, guide_trace, max_plate_nesting=1)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace = prune_subsample_sites(model_trace)
    if importance:  # log-probs and score parts, as pyro.infer.enum.get_importance_trace does
        model_trace.compute_log_prob()
        guide_trace.compute_score_parts()
        if is_validation_enabled():  # the guide's shapes were checked above (plate or not)
            for site in model_trace.nodes.values():
                if site["type"] == "sample":
                    check_site_shape(site, 1)
    return model_trace, guide_trace


class ScoreFunctionELBO(Trace_ELBO):
    """``Trace_ELBO`` over ``num_particles`` trajectories drawn at once in the model's own plate.

    The particle count goes to model and guide as their ``num_particles`` argument, so both
    open ``pyro.plate("particles")`` (the guide contract); the loss is the mean over particles.
    On a tabular MDP its gradient is the score-function (REINFORCE) estimator of the ELBO: per
    trajectory, ``Σₜ ∇log qₜ(aₜ|sₜ) · R`` with the entropy-regularised return
    ``R = Σₜ (r/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ))`` (lecture: max-ent policy gradient). Unbiased,
    but every score is multiplied by the *whole* return: the high-variance baseline. With a
    reparameterised continuous guide (estimator ``"reparam"``) the same loss gives the pathwise
    gradient through the dynamics.
    """

    def __init__(self, num_particles: int = 1000):
        num_particles = check_positive_int("num_particles", num_particles)
        super().__init__(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)

    def _get_traces(self, model, guide, args, kwargs):
        model_trace, guide_trace = _particle_traces(
            model, guide, args, kwargs, self.num_particles, "score", True
        )
        if is_validation_enabled():
            check_if_enumerated(guide_trace)
        yield model_trace, guide_trace


def _loo_mean(cost: torch.Tensor, context: torch.Tensor | None):
    """Mean of ``cost`` over the *other* particles with the same context, and where one exists.

    Returns (mean, has_other), both of shape (N,); mean is 0 where a particle is alone. It is
    independent of particle i's own draws, so using it as a baseline keeps an estimator
    unbiased; and, the particles being i.i.d., it is an unbiased estimate of E[cost | context].
    """
    n = cost.shape[0]
    if context is None:
        has_other = torch.full_like(cost, n > 1, dtype=torch.bool)
        return (cost.sum() - cost) / max(n - 1, 1), has_other
    group = torch.broadcast_to(context, cost.shape).reshape(-1)  # small integers ≥ 0
    sums = torch.zeros(int(group.max()) + 1, dtype=cost.dtype, device=cost.device)
    sums.index_add_(0, group, cost)
    counts = torch.bincount(group).to(cost.dtype)[group]
    has_other = counts > 1
    mean = torch.where(has_other, (sums[group] - cost) / (counts - 1).clamp(min=1), 0.0)
    return mean, has_other


class RaoBlackwellELBO(ELBO):
    """Score-function ELBO with reward-to-go, a state baseline and a leave-one-out critic.

    One vectorised trace of N trajectories. Write the ELBO's terms in execution order,
    ``ℓ_k = Σ(model log-probs at site k and the factors after it) − log q(z_k)``, and the cost
    to go ``C_k = Σ_{j≥k} ℓ_j``. For a site z_k conditioned on a state c_k (read from the trace
    by site name: sₜ for aₜ, (sₜ, aₜ) for sₜ₊₁; no hint is needed from the guide), let ``V̂_k``
    be the mean of C_k over the *other* particles with the same c_k. The gradient estimate is
    that of the surrogate

        ``mean_particles[ Σ_k log q(z_k) · stop_grad(C_k − C_m + V̂_m − V̂_k) ]``

    with m the next scored site that names a context. In the structured guides (whose only
    scored sites are the actions) this is the advantage
    ``r(sₜ,aₜ,sₜ₊₁)/α + log p(aₜ|sₜ) − log qₜ(aₜ|sₜ) + V̂ₜ₊₁(sₜ₊₁) − V̂ₜ(sₜ)``:

    * cost to go — earlier terms do not depend on z_k, so their scores drop out (reward-to-go);
    * ``V̂_k`` — the lecture's baseline b(sₜ), independent of z_k, so unbiased;
    * ``V̂_m`` in place of ``C_m`` — Rao-Blackwellisation: C_m is replaced by an unbiased
      estimate of E[C_m | c_m] built from the other particles, which are independent of this
      one. This needs c_m to be a Markov state (the future depends on the past only through
      it), which holds for every guide in :mod:`pgm_control.guides`. A particle alone in its
      state keeps its own C_m.

    The pathwise −∇log q(z_k) of a non-reparameterised site has mean zero and is dropped.
    The result is unbiased (tested against the exact gradient) with a fraction of the
    variance of ``Trace_ELBO`` and no provenance tracking (``TraceGraph_ELBO`` spends ~86% of
    its time there).

    Args:
        num_particles: trajectories per gradient estimate (≥ 2 for baselines and critic).
        baseline: "state" (V̂_k by context, default), "mean" (over all other particles) or
            None.
        critic: replace the cost to go after the next context by its leave-one-out estimate
            (default True); False gives plain reward-to-go with a baseline.
    """

    _BASELINES = ("state", "mean", None)

    def __init__(
        self, num_particles: int = 1000, *, baseline: str | None = "state", critic: bool = True
    ):
        num_particles = check_positive_int("num_particles", num_particles)
        if baseline not in self._BASELINES:
            raise ValueError(f"`baseline` must be one of {self._BASELINES}, got {baseline!r}")
        super().__init__(num_particles=num_particles, max_plate_nesting=0)
        self.baseline = baseline
        self.critic = bool(critic)

    def _get_trace(self, model, guide, args, kwargs):
        return self._traces(model, guide, args, kwargs)

    def _traces(self, model, guide, args, kwargs):
        return _particle_traces(
            model, guide, args, kwargs, self.num_particles, "rao_blackwell", False
        )

    def _surrogate(self, model, guide, args, kwargs):
        """(ELBO per particle, surrogate per particle), both of shape (N,)."""
        model_trace, guide_trace = self._traces(model, guide, args, kwargs)
        n = self.num_particles
        shape = (n,)
        latent = [
            name
            for name, site in guide_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
        ]
        position = {name: k for k, name in enumerate(latent)}
        terms = [0.0] * max(len(latent), 1)
        pathwise = 0.0  # terms with gradients of their own (learnable models, reparam sites)
        k = 0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            k = position.get(name, k)  # factors and observations join the latest latent site
            log_p = _site_log_prob(site, shape)
            terms[k] = terms[k] + log_p
            if log_p.requires_grad:
                pathwise = pathwise + log_p
        scored, contexts = [], {}
        for k, name in enumerate(latent):
            site = guide_trace.nodes[name]
            log_q = _site_log_prob(site, shape)
            terms[k] = terms[k] - log_q
            if site["fn"].has_rsample:
                pathwise = pathwise - log_q
            elif log_q.requires_grad:
                scored.append((k, log_q))
            if self.baseline == "state" or self.critic:
                context = _control_context(name, guide_trace, self.baseline == "state")
                if context is not None:
                    contexts[k] = context
        # a term no site touched is still the float 0.0: give it the sites' dtype and device
        ref = next((t for t in terms if isinstance(t, torch.Tensor)), None)
        like = {} if ref is None else {"dtype": ref.dtype, "device": ref.device}
        terms = torch.stack([torch.broadcast_to(_like(t, like), shape) for t in terms])
        cost_to_go = terms.flip(0).cumsum(0).flip(0).detach()  # C_k = Σ_{j≥k} ℓ_j
        surrogate = torch.broadcast_to(_like(pathwise, like), shape)
        if n < 2:
            for k, log_q in scored:
                surrogate = surrogate + log_q * cost_to_go[k]
            return terms.sum(0).detach(), surrogate
        # V̂_k: leave-one-out means of C_k by the site's context (computed once per site)
        by_context = {k: _loo_mean(cost_to_go[k], c) for k, c in contexts.items()}
        # bootstrap at the next *scored* site with a context (a_{t+1} given s_{t+1} for aₜ)
        context_sites = sorted(k for k, _ in scored if k in contexts)
        for k, log_q in scored:
            mult = cost_to_go[k]
            nxt = next((m for m in context_sites if m > k), None)
            if self.critic and nxt is not None:
                v_next, has_other = by_context[nxt]
                mult = mult - torch.where(has_other, cost_to_go[nxt] - v_next, 0.0)
            if self.baseline == "state" and k in by_context:
                mult = mult - by_context[k][0]
            elif self.baseline is not None:
                mult = mult - _loo_mean(cost_to_go[k], None)[0]
            surrogate = surrogate + log_q * mult
        return terms.sum(0).detach(), surrogate

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            elbo, _ = self._surrogate(model, guide, args, kwargs)
        return -torch_item(elbo.mean())

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """−ELBO estimate as a tensor whose gradient is this estimator's gradient."""
        elbo, surrogate = self._surrogate(model, guide, args, kwargs)
        surrogate = surrogate.mean()
        return -(elbo.mean() + surrogate - surrogate.detach())

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return torch_item(loss)


_SITE = re.compile(r"^(a|s)_(\d+)$")


def _control_context(name: str, guide_trace, required: bool):
    """The state a control-model site is conditioned on, read from the trace by site name.

    ``a_t`` is drawn given sₜ (its context: the value of ``s_t``), ``s_{t+1}`` given (sₜ, aₜ)
    (the pair, as one integer key); ``s_0`` has none. Another name cannot be placed: with a
    state baseline (``required``) that is an error, not a silent fallback.
    """
    match = _SITE.match(name)
    nodes = guide_trace.nodes
    if match is not None:
        kind, t = match.group(1), int(match.group(2))
        if kind == "a" and f"s_{t}" in nodes:
            return nodes[f"s_{t}"]["value"]
        if kind == "s" and t == 0:
            return None
        if kind == "s" and f"s_{t - 1}" in nodes and f"a_{t - 1}" in nodes:
            s, a = nodes[f"s_{t - 1}"]["value"], nodes[f"a_{t - 1}"]["value"]
            return s * (int(a.max()) + 1) + a  # lexicographic key of the pair (sₜ, aₜ)
    if required:
        raise ValueError(
            f"RaoBlackwellELBO(baseline='state') conditions each site's baseline on the state it "
            f"is drawn in, which it reads from the control model's site names (a_t given s_t, "
            f"s_(t+1) given s_t and a_t); it cannot place the guide's site {name!r}. Use "
            "baseline='mean' (or None) for other models."
        )
    return None


def _like(value, like: dict) -> torch.Tensor:
    """``value`` as a tensor: a tensor as it is, a Python number in ``like``'s dtype/device."""
    return value if isinstance(value, torch.Tensor) else torch.tensor(value, **like)


def _site_log_prob(site, shape) -> torch.Tensor:
    log_p = site["fn"].log_prob(site["value"])
    if log_p.shape != shape and log_p.numel() != 1:
        raise ValueError(
            f"site {site['name']!r} has log-prob shape {tuple(log_p.shape)}; RaoBlackwellELBO "
            f"needs one value per particle {shape}: the model and guide may not have plates "
            "of their own"
        )
    scale, mask = site["scale"], site["mask"]
    if mask is not None:
        log_p = torch.where(mask, log_p, torch.zeros_like(log_p))
    if not (isinstance(scale, (int, float)) and scale == 1.0):
        log_p = scale * log_p
    return log_p


ESTIMATORS: dict = {
    "exact": ExactELBO,
    "enum": EnumELBO,
    "score": ScoreFunctionELBO,
    "rao_blackwell": RaoBlackwellELBO,
}

_PARTICLE_ESTIMATORS = ("score", "rao_blackwell")


def make_estimator(estimator, num_particles: int | None = None) -> tuple[str, ELBO]:
    """(name, Pyro ELBO instance) from a name in :data:`ESTIMATORS` or an ``ELBO`` instance.

    ``num_particles`` is used by "score" and "rao_blackwell" (default 1000) and must be None
    for "exact" and "enum", which need no samples.
    """
    if isinstance(estimator, ELBO):
        if num_particles is not None:
            raise ValueError("pass `num_particles` to the ELBO instance itself, not to fit")
        return type(estimator).__name__, estimator
    if estimator == "reparam":
        raise ValueError(
            "the 'reparam' estimator needs differentiable continuous dynamics (a ContinuousMDP); "
            "tabular MDPs have discrete sites: use 'exact', 'enum', 'score' or 'rao_blackwell'"
        )
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"`estimator` must be one of {tuple(ESTIMATORS)} or a pyro ELBO instance, got "
            f"{estimator!r}"
        )
    if estimator in _PARTICLE_ESTIMATORS:
        return estimator, ESTIMATORS[estimator](1000 if num_particles is None else num_particles)
    if num_particles is not None:
        raise ValueError(
            f"the {estimator!r} estimator is exact and draws no particles; drop `num_particles`"
        )
    return estimator, ESTIMATORS[estimator]()
