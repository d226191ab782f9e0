r"""Fitting a guide to the optimality model by stochastic variational inference.

:func:`fit` is the one driver: pick a guide family by name (the ``GUIDES`` registry of
:mod:`pgm_control.guides`), an ELBO estimator by name (:mod:`pgm_control.estimators`), and it
returns a :class:`~pgm_control.fit_result.FitResult` with the ELBO history, the trained guide,
its policy and — on a tabular MDP — the gap to the exact optimum::

    res = fit(mdp, "tabular_time_varying", estimator="exact", temperature=0.1)
    res.gap          # optimal_elbo − ELBO(q), in nats
    res.policy       # qₜ(a|s), (T, S, A)

Maximising the ELBO of a guide that shares the true dynamics is maximum-entropy RL (the
lecture's line 5): with the "exact" estimator it recovers the soft-optimal policy of the
expected backup to machine precision in well under a second — by natural-gradient ascent
(which, for the time-varying table, is soft policy iteration) or by LBFGS. The Monte-Carlo
estimators are policy-gradient methods and converge as fast as their variance allows
(:func:`gradient_variance` measures it).

Guides follow one contract, shared with the continuous families: a registry entry is a
constructor ``Guide(mdp, **guide_kwargs)`` returning a callable with the model's signature,
``guide(mdp, *, temperature=..., num_particles=None, ...)``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
import typing
import warnings

import numpy as np
import pyro
import torch
from pyro.optim import PyroOptim

from .continuous import ContinuousMDP
from .estimators import ExactELBO, make_estimator
from .fit_result import FitResult
from .mdp import _check_mdp, _check_temperature

__all__ = ["fit", "gradient_variance", "GradientStats", "NaturalGradientAscent", "OPTIMIZERS"]

OPTIMIZERS = ("natural", "lbfgs", "adam", "sgd")
_DEFAULT_STEPS = {"natural": 200, "lbfgs": 100, "adam": 1000, "sgd": 1000}
_DEFAULT_LR = {"natural": 1.0, "lbfgs": 1.0, "adam": 0.05, "sgd": 0.1}
_EXACT = ("exact", "enum")
_TOLERANCE = {"natural": 1e-13, "lbfgs": 1e-10}  # relative ELBO gain that counts as converged


class NaturalGradientAscent:
    """Natural-gradient ascent on an exact ELBO, for guides with ``natural_scale()``.

    Each step moves every softmax table along ``∂ELBO/∂θ ÷ (w·q)`` — the gradient
    preconditioned by the diagonal of its Fisher information (Kakade 2001) — by ``lr``, halving
    the step until the ELBO does not decrease. The division undoes the factor dₜ(s)·qₜ(a|s)
    that makes plain gradients vanish in rarely visited states and saturated actions, so it
    does not stall at low temperatures the way LBFGS can; for ``"tabular_time_varying"`` a
    step of 1 is soft policy iteration and reaches the optimum in T steps.
    """

    def __init__(self, guide, lr: float = 1.0, *, max_halvings: int = 40):
        self.guide, self.lr, self.max_halvings = guide, lr, max_halvings

    def step(self, closure, loss_fn, mdp) -> float:
        """One step; ``closure()`` returns −ELBO and sets gradients, ``loss_fn()`` returns −ELBO."""
        loss = float(closure())
        with torch.no_grad():
            scales = self.guide.natural_scale(mdp)
            named = dict(self.guide.named_parameters())
            start = {n: p.detach().clone() for n, p in named.items()}
            direction = {}
            for n, p in named.items():
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                w = scales[n]
                direction[n] = torch.where(w > 0, -g / w.clamp(min=1e-300), 0.0)
            step = self.lr
            for _ in range(self.max_halvings):
                for n, p in named.items():
                    p.copy_(start[n] + step * direction[n])
                if float(loss_fn()) <= loss + 1e-12 * (1 + abs(loss)):
                    return loss
                step *= 0.5
            for n, p in named.items():  # no ascent found: stay put
                p.copy_(start[n])
        return loss


def _model():
    from .models.control import control_model

    return control_model


def _guide_registry() -> dict:
    from .guides import TABULAR_GUIDES

    return TABULAR_GUIDES


def _build_guide(mdp, guide, seed, guide_kwargs):
    """(guide object, family name) from a registry name or an already built tabular guide."""
    registry = _guide_registry()
    if isinstance(guide, str):
        if guide not in registry:
            raise ValueError(
                f"`guide` must be one of the tabular families {tuple(registry)} for a TabularMDP "
                f"(or a guide object built from one), got {guide!r}"
            )
        cls = registry[guide]
        if "seed" in inspect.signature(cls).parameters:
            guide_kwargs = {"seed": seed, **guide_kwargs}
        return cls(mdp, **guide_kwargs), guide
    if guide_kwargs:
        raise TypeError(
            f"guide options {sorted(guide_kwargs)} are only accepted with a guide *name*; "
            "this guide is already built"
        )
    if not callable(getattr(guide, "exact_elbo", None)) or not hasattr(guide, "parameters"):
        raise TypeError(
            "`guide` must be a guide name or a tabular guide object from `pgm_control.guides`; "
            f"got {type(guide).__name__}. For other guides use `pyro.infer.SVI` directly."
        )
    guide._match(mdp)
    return guide, getattr(guide, "family", type(guide).__name__)


def _build_optimizer(optimizer, guide, lr, estimator_name, mdp):
    """(torch or pyro optimiser, its name, lr) — see :func:`fit` for what is accepted."""
    params = list(guide.parameters())
    natural_ok = estimator_name in _EXACT and guide.natural_scale(mdp) is not None
    if optimizer is None:
        optimizer = "natural" if natural_ok else "lbfgs" if estimator_name in _EXACT else "adam"
    if isinstance(optimizer, PyroOptim):
        if lr is not None:
            raise ValueError("`lr` is set inside a pyro.optim optimiser; pass lr=None")
        name = getattr(optimizer, "pt_optim_constructor", type(optimizer)).__name__
        return optimizer, name, None
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {optimizer!r}")
        lr = _DEFAULT_LR[name] if lr is None else lr
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"`lr` must be a positive finite number, got {lr!r}")
        if name == "natural":
            if not natural_ok:
                raise ValueError(
                    "optimizer='natural' needs an exact estimator ('exact' or 'enum') and a guide "
                    f"with softmax tables (natural_scale); got {estimator_name!r} and "
                    f"{getattr(guide, 'family', type(guide).__name__)!r}. Use 'lbfgs' or 'adam'."
                )
            return NaturalGradientAscent(guide, lr), name, lr
        if name == "lbfgs":
            if estimator_name not in _EXACT:
                raise ValueError(
                    "LBFGS needs a deterministic objective; with a Monte-Carlo estimator "
                    f"({estimator_name!r}) use 'adam' or 'sgd'"
                )
            opt = torch.optim.LBFGS(
                params,
                lr=lr,
                max_iter=20,
                history_size=50,
                line_search_fn="strong_wolfe",
                tolerance_grad=1e-12,
                tolerance_change=1e-16,
            )
        elif name == "adam":
            opt = torch.optim.Adam(params, lr=lr)
        else:
            opt = torch.optim.SGD(params, lr=lr)
        return opt, name, lr
    if callable(optimizer):
        opt = optimizer(params) if lr is None else optimizer(params, lr=lr)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                "a callable `optimizer` must return a torch.optim.Optimizer when called with the "
                f"guide's parameters, got {type(opt).__name__}"
            )
        return opt, type(opt).__name__, lr
    raise TypeError(
        f"`optimizer` must be a name in {OPTIMIZERS}, a torch optimiser class/factory, or a "
        f"pyro.optim optimiser; got {type(optimizer).__name__}"
    )


@contextlib.contextmanager
def _few_threads(mdp):
    """Run small problems on one intra-op thread (restored afterwards).

    The tensors of a tabular ELBO are tiny; on a shared CPU, torch's thread pool then costs
    several times the arithmetic (measured: 10 ms vs 2 ms per exact ELBO step on FrozenLake).
    """
    small = mdp.horizon * mdp.num_states**2 * mdp.num_actions <= 2_000_000
    before = torch.get_num_threads()
    if small and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps!r}")
    return int(steps)


def fit(
    mdp,
    guide="tabular_time_varying",
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
    **guide_kwargs,
) -> FitResult:
    """Fit a variational guide to ``control_model(mdp, temperature=α)`` by maximising the ELBO.

    ``ELBO(q) = E_q[log p(τ, O) − log q(τ)] ≤ log p(O)`` (the lecture's lines 1–5); for guides
    sharing the true dynamics, ``E_q[Σₜ r/α + log p(aₜ|sₜ) + H(qₜ(·|sₜ))]``.

    Args:
        mdp: a :class:`~pgm_control.TabularMDP`, or a ``ContinuousMDP`` (then this dispatches
            to :func:`pgm_control.continuous_svi.fit_continuous` with the same arguments and
            ``estimator="reparam"`` by default).
        guide: a family name in ``pgm_control.guides.GUIDES`` ("tabular",
            "tabular_time_varying", "neural", "open_loop", "full_posterior") or a tabular
            guide object (to continue training it).
        estimator: "exact" (default), "enum", "score", "rao_blackwell" or a pyro ``ELBO``.
        steps: optimiser steps (default 200 for natural, 100 for LBFGS — where one step is up
            to 20 iterations with a strong-Wolfe line search — and 1000 for Adam/SGD). The
            natural and LBFGS fits stop once two steps in a row gain less than 1e-13 resp.
            1e-10 of the ELBO (relative).
        num_particles: trajectories per step for "score"/"rao_blackwell" (default 1000).
        optimizer: "natural" (default for the exact estimators with a table guide: natural-
            gradient ascent, see :class:`NaturalGradientAscent`), "lbfgs" (default for the
            exact estimators with the "neural" guide), "adam" (default for the Monte-Carlo
            ones), "sgd", a torch optimiser class or factory ``f(params, lr=...)``, or a
            ``pyro.optim`` optimiser (then each step is ``pyro.infer.SVI.step``).
        lr: learning rate (default 1.0 for natural and LBFGS, 0.05 for Adam, 0.1 for SGD).
        temperature: α > 0.
        seed: seeds Pyro/torch sampling and the initial weights of the "neural" guide.
        progress: show a tqdm bar with the ELBO and the live gap to the exact optimum.
        callback: ``callback(step, elbo, guide)`` after each step; return True to stop.
        **guide_kwargs: options of the guide family (e.g. ``hidden=(128,)`` for "neural").

    Returns:
        :class:`~pgm_control.fit_result.FitResult`. ``gap`` is ``guide.optimum − exact ELBO``:
        ``optimal_elbo`` for the structured families (``"open_loop"`` cannot close it under
        stochastic dynamics), ``log_evidence`` for ``"full_posterior"``. Pressing Ctrl-C stops
        cleanly and returns what was fitted so far (``extra["interrupted"] = True``).
    """
    if isinstance(mdp, ContinuousMDP):
        from .continuous_svi import fit_continuous

        # pass on only what the caller set, so fit_continuous's own defaults apply
        settings = dict(steps=steps, num_particles=num_particles, optimizer=optimizer, lr=lr)
        settings = {k: v for k, v in settings.items() if v is not None}
        return fit_continuous(
            mdp, guide, estimator=estimator or "reparam", temperature=temperature, seed=seed,
            progress=progress, callback=callback, **settings, **guide_kwargs,
        )  # fmt: skip
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable(step, elbo, guide), got {callback!r}")
    pyro.set_rng_seed(seed)
    guide_obj, guide_name = _build_guide(mdp, guide, seed, guide_kwargs)
    est_name, elbo_est = make_estimator("exact" if estimator is None else estimator, num_particles)
    params = list(guide_obj.parameters())
    opt, opt_name, lr = _build_optimizer(optimizer, guide_obj, lr, est_name, mdp)
    steps = _check_steps(_DEFAULT_STEPS.get(opt_name, 1000) if steps is None else steps)

    model = _model()
    model_kwargs = {"temperature": alpha}
    optimum = float(guide_obj.optimum(mdp, temperature=alpha))
    exact_loss = est_name in ("exact", "enum")  # the loss is the exact ELBO itself

    def closure():
        for p in params:
            p.grad = None
        return elbo_est.loss_and_grads(model, guide_obj, mdp, **model_kwargs)

    if isinstance(opt, PyroOptim):
        svi = pyro.infer.SVI(model, guide_obj, opt, loss=elbo_est)
        step_fn = lambda: svi.step(mdp, **model_kwargs)  # noqa: E731
    elif isinstance(opt, torch.optim.LBFGS):
        step_fn = lambda: float(opt.step(closure))  # noqa: E731
    elif isinstance(opt, NaturalGradientAscent):

        def loss_fn():
            return elbo_est.loss(model, guide_obj, mdp, **model_kwargs)

        step_fn = lambda: opt.step(closure, loss_fn, mdp)  # noqa: E731
    else:

        def step_fn():
            loss = closure()
            opt.step()
            return loss

    def current_exact():
        with torch.no_grad():
            return float(guide_obj.exact_elbo(mdp, **model_kwargs))

    from tqdm.auto import tqdm

    history: list[float] = []
    interrupted = converged = False
    flat = 0
    bar = tqdm(total=steps, disable=not progress, desc=f"{guide_name}/{est_name}", leave=False)
    with _few_threads(mdp):
        start = time.perf_counter()
        try:
            for step in range(steps):
                # the first step validates shapes and supports; the rest run the same code unchecked
                with pyro.validation_enabled(pyro.infer.util.is_validation_enabled() and step == 0):
                    loss = step_fn()
                elbo = -float(loss)
                if not math.isfinite(elbo):
                    raise FloatingPointError(
                        f"the ELBO became {elbo} at step {step}; lower `lr` or check the rewards"
                    )
                history.append(elbo)
                if progress and (exact_loss or step % 10 == 0 or step == steps - 1):
                    live = elbo if exact_loss else current_exact()
                    bar.set_postfix(elbo=f"{elbo:.6f}", gap=f"{optimum - live:.2e}", refresh=False)
                bar.update(1)
                if callback is not None and callback(step, elbo, guide_obj):
                    break
                if opt_name in _TOLERANCE and len(history) > 1:
                    # converged: two steps in a row (for LBFGS ≤ 40 iterations) gained too little
                    gain = history[-1] - history[-2]
                    flat = flat + 1 if gain <= _TOLERANCE[opt_name] * (1 + abs(elbo)) else 0
                    if flat >= 2:
                        converged = True
                        break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        exact = current_exact()
    gap = optimum - exact
    if (
        converged
        and getattr(guide_obj, "attains_optimum", False)
        and gap > 1e-6 * (1 + abs(optimum))
    ):
        warnings.warn(
            f"fit stopped improving {gap:.3g} nats short of the optimum the {guide_name!r} family "
            f"attains ({opt_name}). Plain and quasi-Newton gradients stall when a low temperature "
            f"(α = {alpha:g}) saturates the policy; try optimizer='natural' (the default for "
            "tabular guides), lr=0.3, or warm-start: fit(mdp, res.guide, temperature=α).",
            RuntimeWarning,
            stacklevel=2,
        )
    return FitResult(
        elbo=np.asarray(history, dtype=np.float64),
        guide=guide_obj,
        params={
            f"{guide_obj.name}.{n}": p.detach().clone() for n, p in guide_obj.named_parameters()
        },
        seconds=seconds,
        guide_name=guide_name,
        estimator=est_name,
        policy=guide_obj.policy(),
        gap=gap,
        exact_elbo=exact,
        optimum=optimum,
        extra={
            "interrupted": interrupted,
            "converged": converged,
            "steps": len(history),
            "optimizer": opt_name,
            "lr": lr,
            "num_particles": getattr(elbo_est, "num_particles", None) if not exact_loss else None,
            "temperature": alpha,
        },
    )


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
        guide: a tabular guide object (its parameters are not changed).
        estimator: a name in :data:`pgm_control.estimators.ESTIMATORS` or a pyro ``ELBO``.
        num_particles: for the Monte-Carlo estimators (default 1000).
        repeats: independent gradient draws (≥ 2).
        temperature: α.
        seed: seeds the draws, so estimators can be compared on the same random stream.
    """
    mdp = _check_mdp(mdp)
    alpha = _check_temperature(temperature)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"`repeats` must be an int >= 2, got {repeats!r}")
    _, est = make_estimator(estimator, num_particles)
    model = _model()
    params = list(guide.parameters())
    saved = [p.grad for p in params]

    def grad_of(loss_fn):
        for p in params:
            p.grad = None
        loss_fn.loss_and_grads(model, guide, mdp, temperature=alpha)
        return _flat_grad(params)

    try:
        exact = grad_of(ExactELBO())
        pyro.set_rng_seed(seed)
        grads, times = [], []
        with pyro.validation_enabled(False), _few_threads(mdp):
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
