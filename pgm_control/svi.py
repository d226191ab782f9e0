r"""Fitting a guide to the optimality model by stochastic variational inference: one loop.

:func:`fit` is the one driver, for tabular and continuous MDPs alike: give it a guide — a family
name from the ``GUIDES`` registry of :mod:`pgm_control.guides`, a built guide, or *any* callable
with the model's signature (:mod:`pgm_control.guides.contract`) — and an ELBO estimator by name
(:mod:`pgm_control.estimators`), and it returns a :class:`~pgm_control.fit_result.FitResult`
with the ELBO history, the trained guide, its parameters and — on a tabular MDP — its policy and
the exact gap to the optimum::

    res = fit(mdp, "tabular_time_varying", estimator="exact", temperature=0.1)
    res.gap          # optimum − ELBO(q), in nats
    res.policy       # qₜ(a|s), (T, S, A), read off the guide's own a_t sites

Maximising the ELBO of a guide that shares the true dynamics is maximum-entropy RL (the
lecture's line 5): with the "exact" estimator it recovers the soft-optimal policy of the
expected backup to machine precision in well under a second — by natural-gradient ascent
(which, for the time-varying table, is soft policy iteration) or by LBFGS. The Monte-Carlo
estimators are policy-gradient methods and converge as fast as their variance allows
(:func:`gradient_variance` measures it). On a continuous MDP the loss is the Monte-Carlo ELBO of
:func:`~pgm_control.models.continuous_control_model` with pathwise ("reparam") or
score-function gradients.

``fit`` seeds its own draws and restores the caller's torch / numpy / ``random`` generators
afterwards; Ctrl-C at any point returns what exists, marked ``extra["interrupted"]``.
"""

from __future__ import annotations

import contextlib
import math
import time
import typing
import warnings

import numpy as np
import pyro
import pyro.optim
import pyro.util
import torch
from pyro import poutine
from pyro.optim import PyroOptim
from tqdm.auto import tqdm

from .backward import log_evidence, optimal_elbo
from .continuous import ContinuousMDP, _check_continuous
from .estimators import EnumELBO, ExactELBO, ScoreFunctionELBO, exact_elbo, make_estimator
from .fit_result import FitResult
from .guide_tables import read_guide_tables
from .guides import CONTINUOUS_GUIDES, TABULAR_GUIDES
from .mdp import TabularMDP, _check_mdp
from .models import continuous_control_model, control_model
from .optimizers import (
    DEFAULT_OPTIMIZER,
    DEFAULTS,
    OPTIMIZERS,
    NaturalGradientAscent,
    OptimizerDefaults,
    build_optimizer,
    has_natural_direction,
)
from .validation import (
    check_callable,
    check_int,
    check_optional_positive_int,
    check_positive_int,
    check_temperature,
)

__all__ = [
    "fit",
    "fit_continuous",
    "gradient_variance",
    "GradientStats",
    "NaturalGradientAscent",
    "OPTIMIZERS",
    "CONTINUOUS_ESTIMATORS",
]

CONTINUOUS_ESTIMATORS = ("reparam", "score")
_TOLERANCE = {"natural": 1e-13, "lbfgs": 1e-10}  # relative ELBO gain that counts as converged
_CONTINUOUS_MODEL_ARGS = ("initial_state", "vectorized", "action_prior")


def _guide_label(guide) -> str:
    return getattr(guide, "family", None) or getattr(guide, "__name__", type(guide).__name__)


def _build_guide(mdp, guide, registry, kind, guide_kwargs, estimator):
    """(guide, its name) from a registry name, a built guide or any callable guide."""
    if isinstance(guide, str):
        if guide not in registry:
            raise ValueError(
                f"`guide` must be one of the {kind} families {tuple(registry)} for a "
                f"{type(mdp).__name__} (or any guide callable), got {guide!r}"
            )
        if kind == "continuous":
            guide_kwargs = {"reparameterized": estimator == "reparam", **guide_kwargs}
        return registry[guide](mdp, **guide_kwargs), guide
    if guide_kwargs:
        raise TypeError(
            f"guide options {sorted(guide_kwargs)} are only accepted with a guide *name*; "
            "this guide is already built"
        )
    check_callable("guide", guide, "guide(mdp, *, temperature=..., num_particles=None, ...)")
    if kind == "continuous":
        if hasattr(guide, "reparameterized"):
            guide.reparameterized = estimator == "reparam"
        elif estimator != "reparam":
            raise ValueError(
                "estimator='score' needs a guide with a `reparameterized` switch (the "
                "pgm_control guides have one); Pyro autoguides always reparameterise"
            )
    return guide, _guide_label(guide)


def _guide_parameters(guide, probe) -> list[torch.Tensor]:
    """The tensors to optimise: a module's own parameters, then any param site it announces.

    ``probe()`` runs the guide once; it is traced for ``param`` sites (``pyro.param`` in a plain
    function, a ``PyroModule``'s parameters) under a forked RNG, so it draws nothing from the
    caller's stream.
    """
    with torch.random.fork_rng(devices=[]), poutine.trace(param_only=True) as capture:
        probe()
    params, seen = [], set()
    found = list(guide.parameters()) if isinstance(guide, torch.nn.Module) else []
    for site in capture.trace.nodes.values():
        value = site["value"]
        found.append(value.unconstrained() if hasattr(value, "unconstrained") else value)
    for p in found:
        if id(p) not in seen and p.requires_grad:
            seen.add(id(p))
            params.append(p)
    return params


def _snapshot(guide, params) -> dict:
    """``FitResult.params``: a module's ``state_dict()`` (loads into a fresh guide of the same
    family), or the constrained values of a function guide's ``pyro.param`` sites by name."""
    if isinstance(guide, torch.nn.Module):
        return {k: v.detach().clone() for k, v in guide.state_dict().items()}
    store = pyro.get_param_store()
    ids = {id(p) for p in params}
    return {
        name: store[name].detach().clone()
        for name, unconstrained in store.named_parameters()
        if id(unconstrained) in ids
    }


@contextlib.contextmanager
def _few_threads(small: bool):
    """Run small problems on one intra-op thread (restored afterwards).

    The tensors of a tabular ELBO are tiny; on a shared CPU, torch's thread pool then costs
    several times the arithmetic (measured: 10 ms vs 2 ms per exact ELBO step on FrozenLake).
    """
    before = torch.get_num_threads()
    if small and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def _local_rng(seed: int):
    """Seed torch / numpy / ``random`` for the fit and give the caller's states back after."""
    state = pyro.util.get_rng_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        try:
            pyro.set_rng_seed(seed)
            yield
        finally:
            pyro.util.set_rng_state(state)


def _small(mdp) -> bool:
    if isinstance(mdp, TabularMDP):
        return mdp.horizon * mdp.num_states**2 * mdp.num_actions <= 2_000_000
    return False


def fit(
    mdp,
    guide=None,
    *,
    estimator=None,
    steps: int | None = None,
    num_particles: int | None = None,
    optimizer=None,
    lr: float | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    callback=None,
    model_kwargs: dict | None = None,
    **guide_kwargs,
) -> FitResult:
    """Fit a variational guide to the control model of ``mdp`` by maximising the ELBO.

    ``ELBO(q) = E_q[log p(τ, O) − log q(τ)] ≤ log p(O)`` (the lecture's lines 1–5); for guides
    sharing the true dynamics, ``E_q[Σₜ r/α + log p(aₜ|sₜ) + H(qₜ(·|sₜ))]``. One loop for both
    kinds of MDP; the model is :func:`~pgm_control.control_model` for a ``TabularMDP`` and
    :func:`~pgm_control.continuous_control_model` for a ``ContinuousMDP``.

    Args:
        mdp: a :class:`~pgm_control.TabularMDP` or :class:`~pgm_control.ContinuousMDP`.
        guide: a family name in ``pgm_control.guides.GUIDES`` (default "tabular_time_varying"
            resp. "gaussian_mlp"), a built guide (to continue training it), or any callable
            with the model's signature — a function with ``pyro.param`` or a module (the
            contract: :mod:`pgm_control.guides.contract`).
        estimator: tabular: "exact" (default), "enum", "score", "rao_blackwell"; continuous:
            "reparam" (default) or "score"; or a pyro ``ELBO`` instance.
        steps: optimiser steps. Defaults: 200 natural, 100 LBFGS (one step is up to 20
            iterations with a strong-Wolfe line search), 1000 Adam/SGD; Monte-Carlo on a
            tabular MDP 200 (ClippedAdam); continuous 1000. The natural and LBFGS fits stop
            once two steps in a row gain less than 1e-13 resp. 1e-10 of the ELBO (relative).
        num_particles: trajectories per step for the Monte-Carlo estimators (default 4000 on a
            tabular MDP, 64 on a continuous one), passed to model and guide as their
            ``num_particles``.
        optimizer: "natural" (default for the exact estimators with a guide that offers
            ``natural_direction``; see :class:`NaturalGradientAscent`), "lbfgs" (default for
            the exact estimators otherwise), "clipped_adam" (default for Monte-Carlo on a
            tabular MDP: lr 0.05 decaying geometrically to 0.002 over the steps), "adam"
            (default on a continuous MDP), "sgd", a torch optimiser class or factory
            ``f(params, lr=...)``, or a ``pyro.optim`` optimiser (each step is then
            ``pyro.infer.SVI.step``).
        lr: learning rate (defaults: 1.0 natural/LBFGS, 0.05 Adam on a tabular MDP, 0.1 SGD,
            1e-3 on a continuous MDP).
        temperature: α > 0.
        seed: seeds the fit's draws and a registry guide's initial weights. The caller's
            torch / numpy / ``random`` generator states are restored afterwards.
        progress: show a tqdm bar with the ELBO (and, tabular, the live gap to the optimum).
        callback: ``callback(step, elbo, guide)`` after each step; return True to stop.
        model_kwargs: further arguments of the model (and guide), e.g. ``observed_steps`` or
            ``optimality`` (tabular), ``initial_state``, ``vectorized`` (default True) or
            ``action_prior`` (continuous; also accepted as keywords of ``fit``).
        **guide_kwargs: options of a guide family given by name (e.g. ``hidden=(128,)``).

    Returns:
        :class:`~pgm_control.fit_result.FitResult`. On a tabular MDP ``policy`` and the exact
        ELBO are read off the guide's own sites, and ``gap = optimum − exact ELBO`` with
        ``optimum`` = ``optimal_elbo`` for a guide sharing the true dynamics (``"open_loop"``
        cannot close it under stochastic dynamics) or ``log_evidence`` for one that learns
        q(s₀), qₜ(s'|s,a) (``"full_posterior"``). Ctrl-C at any point — set-up included —
        returns what exists, with ``extra["interrupted"] = True``.
    """
    continuous = isinstance(mdp, ContinuousMDP)
    model_kwargs = dict(model_kwargs or {})
    if continuous:
        mdp = _check_continuous(mdp)
        for key in _CONTINUOUS_MODEL_ARGS:  # fit(cmdp, initial_state=...) as in fit_continuous
            if key in guide_kwargs:
                model_kwargs[key] = guide_kwargs.pop(key)
        model_kwargs.setdefault("vectorized", True)
        _check_initial_state(mdp, model_kwargs)
        registry, kind, model = CONTINUOUS_GUIDES, "continuous", continuous_control_model
        guide = "gaussian_mlp" if guide is None else guide
        estimator = "reparam" if estimator is None else estimator
        if isinstance(estimator, str) and estimator not in CONTINUOUS_ESTIMATORS:
            raise ValueError(
                f"`estimator` must be one of {CONTINUOUS_ESTIMATORS} for a continuous MDP, "
                f"got {estimator!r}"
            )
        if "reparameterized" in guide_kwargs:
            raise TypeError("`reparameterized` is set by `estimator` ('reparam' or 'score')")
    else:
        mdp = _check_mdp(mdp)
        if mdp.is_sparse and not _exact_on_tables(estimator, guide):
            # the Pyro model and guides draw s' from dense (S,) rows
            raise TypeError(
                "`mdp` has sparse dynamics, which the Pyro model and guides cannot sample from "
                "(they draw s' from dense rows). The 'exact' estimator runs on sparse MDPs with "
                "a library family (a name in GUIDES or its instance, anything with `log_tables`)"
                "; or fit the exact ELBO directly: "
                "`policy_elbo(mdp, log_policy=torch.log_softmax(logits, -1))` is "
                "differentiable on sparse MDPs; or use `mdp.to_dense()` when S²·A is small."
            )
        registry, kind, model = TABULAR_GUIDES, "tabular", control_model
        guide = "tabular_time_varying" if guide is None else guide
        estimator = "exact" if estimator is None else estimator
    alpha = check_temperature(temperature)
    model_kwargs["temperature"] = alpha
    seed = check_int("seed", seed)
    steps = check_optional_positive_int("steps", steps)
    num_particles = check_optional_positive_int("num_particles", num_particles)
    callback = check_callable("callback", callback, "callback(step, elbo, guide)")

    run = _Run()
    with _local_rng(seed), _few_threads(_small(mdp)):
        try:
            _fit_loop(
                run, mdp, model, guide, registry, kind, estimator, steps, num_particles,
                optimizer, lr, model_kwargs, progress, callback, guide_kwargs,
            )  # fmt: skip
        except KeyboardInterrupt:
            run.interrupted = True
        finally:
            if run.bar is not None:
                run.bar.close()
        if run.start is not None:
            run.seconds = time.perf_counter() - run.start
        if not continuous and run.guide is not None:
            try:
                _final_exact(run, mdp, model_kwargs)
            except KeyboardInterrupt:
                run.interrupted = True
    return _result(run, model_kwargs, continuous, mdp)


def _exact_on_tables(estimator, guide) -> bool:
    """Whether a fit needs no Pyro sampling: the exact estimator (the default) with a guide
    whose tables come from its ``log_tables`` capability (a library family)."""
    if estimator not in (None, "exact"):
        return False
    if guide is None or isinstance(guide, str):
        return guide is None or guide in TABULAR_GUIDES
    return callable(getattr(guide, "log_tables", None))


class _Run:
    """What a fit has produced so far (so an interrupt at any point can return it)."""

    def __init__(self):
        self.guide = self.guide_name = self.estimator = self.bar = self.start = None
        self.params: list = []
        self.history: list[float] = []
        self.seconds = 0.0
        self.interrupted = self.converged = False
        self.optimizer = self.lr = self.num_particles = None
        self.optimum = self.exact = self.policy = None
        self.learns_dynamics = False


def _check_initial_state(mdp, model_kwargs):
    initial_state = model_kwargs.get("initial_state")
    if initial_state is None:
        return
    initial_state = torch.as_tensor(initial_state, dtype=mdp.action_low.dtype)
    if initial_state.shape != (mdp.state_dim,):
        raise ValueError(
            f"`initial_state` must have shape (state_dim,)=({mdp.state_dim},), "
            f"got {tuple(initial_state.shape)}"
        )
    model_kwargs["initial_state"] = initial_state


def _fit_loop(
    run, mdp, model, guide, registry, kind, estimator, steps, num_particles, optimizer, lr,
    model_kwargs, progress, callback, guide_kwargs,
):  # fmt: skip
    continuous = kind == "continuous"
    # validate the estimator now; Monte-Carlo particle defaults depend on the optimiser below
    if continuous and isinstance(estimator, str):
        est_name, elbo_est = estimator, None
    else:
        est_name, elbo_est = make_estimator(estimator, num_particles)
    if continuous:
        regime = "continuous"
    elif isinstance(elbo_est, (ExactELBO, EnumELBO)):
        regime = "exact"
    else:
        regime = "particles"
    run.estimator = est_name
    run.guide, run.guide_name = _build_guide(mdp, guide, registry, kind, guide_kwargs, est_name)
    guide = run.guide

    if continuous:
        probe_kwargs = {**model_kwargs, "num_particles": 1}
        run.params = _guide_parameters(guide, lambda: guide(mdp, **probe_kwargs))
    else:
        tables = []
        run.params = _guide_parameters(
            guide, lambda: tables.append(read_guide_tables(guide, mdp, **model_kwargs))
        )
        run.learns_dynamics = tables[0].learns_dynamics
        yardstick = log_evidence if run.learns_dynamics else optimal_elbo
        run.optimum = float(
            yardstick(mdp, temperature=model_kwargs["temperature"],
                      observed_steps=model_kwargs.get("observed_steps"))
        )  # fmt: skip
    natural_ok = regime == "exact" and has_natural_direction(guide, mdp, model_kwargs)
    if optimizer is None:
        optimizer = "natural" if natural_ok else "lbfgs" if regime == "exact" else None
        optimizer = optimizer or DEFAULT_OPTIMIZER[regime]

    def defaults(name):
        return DEFAULTS.get((regime, name), OptimizerDefaults(1000, 0.05, None, None))

    opt_name = optimizer.lower() if isinstance(optimizer, str) else None
    if steps is None:
        steps = defaults(opt_name).steps if opt_name else 1000
    if regime != "exact" and isinstance(estimator, str):
        run.num_particles = num_particles
        if num_particles is None:
            run.num_particles = defaults(opt_name).num_particles if opt_name else None
            run.num_particles = run.num_particles or (64 if continuous else 4000)
        if continuous:
            elbo_est = ScoreFunctionELBO(run.num_particles)
        else:
            est_name, elbo_est = make_estimator(estimator, run.num_particles)
    elif regime != "exact":
        run.num_particles = getattr(elbo_est, "num_particles", None)
    opt, run.optimizer, run.lr = build_optimizer(
        optimizer, run.params, lr, steps=steps, defaults=defaults, guide=guide,
        natural_ok=natural_ok, deterministic=regime == "exact", estimator=est_name,
    )  # fmt: skip
    params = run.params

    def closure():
        for p in params:
            p.grad = None
        return elbo_est.loss_and_grads(model, guide, mdp, **model_kwargs)

    if isinstance(opt, PyroOptim):
        svi = pyro.infer.SVI(model, guide, opt, loss=elbo_est)

        def step_fn():
            return svi.step(mdp, **model_kwargs)

    elif isinstance(opt, torch.optim.LBFGS):

        def step_fn():
            return float(opt.step(closure))

    elif isinstance(opt, NaturalGradientAscent):

        def loss_fn():
            return elbo_est.loss(model, guide, mdp, **model_kwargs)

        def step_fn():
            return opt.step(closure, loss_fn, mdp, model_kwargs)

    else:

        def step_fn():
            loss = closure()
            opt.step()
            return loss

    exact_loss = regime == "exact"
    run.bar = tqdm(
        total=steps, disable=not progress, desc=f"{run.guide_name}/{est_name}", leave=False
    )
    history, flat = run.history, 0
    run.start = time.perf_counter()
    for step in range(steps):
        # the first step validates shapes and supports; the rest run the same code unchecked
        with pyro.validation_enabled(pyro.infer.util.is_validation_enabled() and step == 0):
            loss = step_fn()
        elbo = -float(loss)
        if not math.isfinite(elbo):
            raise FloatingPointError(
                f"the ELBO became {elbo} at step {step}; lower `lr`"
                + (", use optimizer='clipped_adam', or shorten the horizon" if continuous else "")
                + " or check the rewards"
            )
        history.append(elbo)
        if progress and (exact_loss or step % 10 == 0 or step == steps - 1):
            if continuous:
                run.bar.set_postfix(elbo=f"{np.mean(history[-10:]):.4g}", refresh=False)
            else:
                live = elbo if exact_loss else _exact_value(guide, mdp, model_kwargs)
                run.bar.set_postfix(
                    elbo=f"{elbo:.6f}", gap=f"{run.optimum - live:.2e}", refresh=False
                )
        run.bar.update(1)
        if callback is not None and callback(step, elbo, guide):
            break
        if run.optimizer in _TOLERANCE and len(history) > 1:
            # converged: two steps in a row (for LBFGS ≤ 40 iterations) gained too little
            gain = history[-1] - history[-2]
            flat = flat + 1 if gain <= _TOLERANCE[run.optimizer] * (1 + abs(elbo)) else 0
            if flat >= 2:
                run.converged = True
                break


def _exact_value(guide, mdp, model_kwargs) -> float:
    with torch.no_grad():
        return float(exact_elbo(guide, mdp, **model_kwargs))


def _final_exact(run, mdp, model_kwargs):
    with torch.no_grad():
        tables = read_guide_tables(run.guide, mdp, **model_kwargs)
        run.policy = tables.log_policy.exp()
        run.exact = float(exact_elbo(run.guide, mdp, **model_kwargs))
    if run.optimum is not None:
        gap = run.optimum - run.exact
        attains = getattr(run.guide, "attains_optimum", False)
        if run.converged and attains and gap > 1e-6 * (1 + abs(run.optimum)):
            warnings.warn(
                f"fit stopped improving {gap:.3g} nats short of the optimum the "
                f"{run.guide_name!r} family attains ({run.optimizer}). Plain and quasi-Newton "
                "gradients stall when a low temperature saturates the policy; try "
                "optimizer='natural' (the default for tabular guides), lr=0.3, or warm-start: "
                "fit(mdp, res.guide, temperature=α).",
                RuntimeWarning,
                stacklevel=3,
            )


def _result(run, model_kwargs, continuous, mdp) -> FitResult:
    exact = run.exact
    gap = None if exact is None or run.optimum is None else run.optimum - exact
    extra = {
        "interrupted": run.interrupted,
        "steps": len(run.history),
        "optimizer": run.optimizer,
        "lr": run.lr,
        "num_particles": run.num_particles,
        "temperature": model_kwargs["temperature"],
    }
    if continuous:
        extra["horizon"] = mdp.horizon
    else:
        extra["converged"] = run.converged
        extra["optimum_name"] = "log_evidence" if run.learns_dynamics else "optimal_elbo"
        extra["limit"] = getattr(run.guide, "limit", None)  # why a family stops short
    return FitResult(
        elbo=np.asarray(run.history, dtype=np.float64),
        guide=run.guide,
        params={} if run.guide is None else _snapshot(run.guide, run.params),
        seconds=run.seconds,
        guide_name=run.guide_name,
        estimator=run.estimator,
        policy=run.policy,
        gap=gap,
        exact_elbo=exact,
        optimum=run.optimum if exact is not None else None,
        extra=extra,
    )


def fit_continuous(
    mdp,
    guide="gaussian_mlp",
    *,
    estimator: str = "reparam",
    steps: int | None = 1000,
    num_particles: int | None = 64,
    optimizer="adam",
    lr: float | None = 1e-3,
    temperature: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    callback=None,
    initial_state=None,
    vectorized: bool = True,
    action_prior=None,
    **guide_kwargs,
) -> FitResult:
    """:func:`fit` on a :class:`~pgm_control.ContinuousMDP` (a thin alias, kept for its defaults).

    ``ELBO(q) = E_q[Σₜ r(sₜ,aₜ)/α + log p(aₜ) − log q(aₜ|sₜ)]`` estimated from ``num_particles``
    vectorised trajectories (lecture 000, lines 3–5; pathwise gradients through the dynamics
    with ``estimator="reparam"``, lecture 002). ``initial_state`` fixes s₀ (state_dim,) instead
    of drawing it from ``mdp.initial``; ``vectorized`` picks the model's one-``actions``-site
    form; ``action_prior`` is the model's p(a) (uniform on the box if None). See :func:`fit`.
    """
    _check_continuous(mdp)
    model_kwargs = dict(
        initial_state=initial_state, vectorized=vectorized, action_prior=action_prior
    )
    return fit(
        mdp, guide, estimator=estimator, steps=steps, num_particles=num_particles,
        optimizer=optimizer, lr=lr, temperature=temperature, seed=seed, progress=progress,
        callback=callback, model_kwargs=model_kwargs, **guide_kwargs,
    )  # fmt: skip


class GradientStats(typing.NamedTuple):
    """Spread of an estimator's gradient at fixed parameters (over ``repeats`` draws).

    variance: Σᵢ Var(gᵢ), the trace of the gradient's covariance (0 for exact estimators).
    bias_sq: ‖mean(g) − ∇ELBO‖², which for an unbiased estimator is ≈ variance / repeats.
    exact_norm_sq: ‖∇ELBO‖² of the exact gradient, for scale.
    ms_per_step: mean wall-clock milliseconds of one ``loss_and_grads``.
    """

    variance: float
    bias_sq: float
    exact_norm_sq: float
    ms_per_step: float


def _flat_grad(params):
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    )


def gradient_variance(
    mdp,
    guide,
    estimator,
    *,
    num_particles: int | None = None,
    repeats: int = 20,
    temperature: float = 1.0,
    seed: int = 0,
) -> GradientStats:
    """Measure an estimator's gradient variance, bias and cost at the guide's current parameters.

    Args:
        mdp: a :class:`~pgm_control.TabularMDP`.
        guide: any tabular guide (see :mod:`pgm_control.guides.contract`); its parameters are
            not changed.
        estimator: a name in :data:`pgm_control.estimators.ESTIMATORS` or a pyro ``ELBO``.
        num_particles: for the Monte-Carlo estimators (default 1000).
        repeats: independent gradient draws (≥ 2).
        temperature: α.
        seed: seeds the draws, so estimators can be compared on the same random stream.
    """
    mdp = _check_mdp(mdp)
    alpha = check_temperature(temperature)
    repeats = check_positive_int("repeats", repeats, minimum=2)
    _, est = make_estimator(estimator, num_particles)
    params = _guide_parameters(guide, lambda: read_guide_tables(guide, mdp, temperature=alpha))
    saved = [p.grad for p in params]

    def grad_of(loss_fn):
        for p in params:
            p.grad = None
        loss_fn.loss_and_grads(control_model, guide, mdp, temperature=alpha)
        return _flat_grad(params)

    try:
        exact = grad_of(ExactELBO())
        grads, times = [], []
        with _local_rng(seed), pyro.validation_enabled(False), _few_threads(_small(mdp)):
            for _ in range(repeats):
                t0 = time.perf_counter()
                grads.append(grad_of(est))
                times.append(time.perf_counter() - t0)
    finally:
        for p, g in zip(params, saved):
            p.grad = g
    g = torch.stack(grads)
    mean = g.mean(0)
    return GradientStats(
        variance=float(((g - mean) ** 2).sum(-1).sum() / (repeats - 1)),
        bias_sq=float(((mean - exact) ** 2).sum()),
        exact_norm_sq=float((exact**2).sum()),
        ms_per_step=1e3 * float(np.median(times)),
    )
