"""SVI for continuous MDPs: fit a guide to p(τ | O) through the differentiable dynamics.

The loss is Pyro's ``Trace_ELBO`` with vectorised particles on
:func:`~pgm_control.models.continuous_control_model`:

    ELBO(q) = E_q[ Σₜ r(sₜ, aₜ)/α + log p(aₜ) − log q(aₜ|sₜ) ]      (lecture 000, line 5)

With ``estimator="reparam"`` the actions are aₜ = g_φ(εₜ, sₜ) and sₜ₊₁ = f(sₜ, aₜ) is a
differentiable torch function, so ∇_φ ELBO is the pathwise gradient through the whole rollout
(lecture 002, "reparameterization trick"); with ``"score"`` the samples are detached and
``Trace_ELBO`` falls back to the score-function (REINFORCE with entropy bonus) estimator.
Start states are drawn from ``mdp.initial`` (the env's reset distribution) unless
``initial_state`` fixes one, so a closed-loop policy learns to act from many states.
"""

from __future__ import annotations

import time

import numpy as np
import pyro
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO
from tqdm.auto import tqdm

from .continuous import _check_continuous
from .fit_result import FitResult
from .mdp import _check_temperature

__all__ = ["fit_continuous", "CONTINUOUS_ESTIMATORS"]

CONTINUOUS_ESTIMATORS = ("reparam", "score")

_OPTIMIZERS = {
    "adam": lambda lr: pyro.optim.Adam({"lr": lr}),
    # ClippedAdam clips each parameter's gradient norm at 10: pathwise gradients through
    # long rollouts of chaotic dynamics occasionally explode
    "clipped_adam": lambda lr: pyro.optim.ClippedAdam({"lr": lr, "clip_norm": 10.0}),
    "sgd": lambda lr: pyro.optim.SGD({"lr": lr}),
}


def _make_guide(mdp, guide, estimator, guide_kwargs):
    """(guide object, its name) from a registry name or a guide object, switched to pathwise
    samples for "reparam" and to detached ones for "score"."""
    reparameterized = estimator == "reparam"
    if "reparameterized" in guide_kwargs:
        raise TypeError("`reparameterized` is set by `estimator` ('reparam' or 'score')")
    if isinstance(guide, str):
        from pgm_control.guides import CONTINUOUS_GUIDES  # guides depend on the core, not back

        if guide not in CONTINUOUS_GUIDES:
            raise ValueError(
                f"unknown continuous guide {guide!r}; choose one of {sorted(CONTINUOUS_GUIDES)}"
                " or pass a guide object"
            )
        return CONTINUOUS_GUIDES[guide](mdp, reparameterized=reparameterized, **guide_kwargs), guide
    if guide_kwargs:
        raise TypeError(
            f"guide keyword arguments {sorted(guide_kwargs)} only apply when `guide` is a "
            "registry name"
        )
    if not callable(guide):
        raise TypeError(f"`guide` must be a registry name or a callable, got {guide!r}")
    if hasattr(guide, "reparameterized"):
        guide.reparameterized = reparameterized
    elif not reparameterized:
        raise ValueError(
            "estimator='score' needs a guide with a `reparameterized` switch (the "
            "pgm_control guides have one); Pyro autoguides always reparameterise"
        )
    return guide, getattr(guide, "family", None) or type(guide).__name__


def _make_optimizer(optimizer, lr):
    if isinstance(optimizer, pyro.optim.PyroOptim):
        return optimizer
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"`lr` must be a number > 0, got {lr!r}")
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return pyro.optim.PyroOptim(optimizer, {"lr": lr})
    if optimizer not in _OPTIMIZERS:
        raise ValueError(
            f"`optimizer` must be one of {sorted(_OPTIMIZERS)}, a torch.optim.Optimizer class "
            f"or a pyro.optim optimizer, got {optimizer!r}"
        )
    return _OPTIMIZERS[optimizer](lr)


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
    """Maximise the ELBO of a continuous-action guide by SVI.

    ELBO(q) = E_q[Σₜ r(sₜ,aₜ)/α + log p(aₜ) − log q(aₜ|sₜ)], estimated with ``num_particles``
    vectorised trajectories per step (lecture 000, "Computing Evidence Lower Bound", steps
    3–5: p(s₀) and the dynamics cancel because the guide shares them).

    Args:
        mdp: a :class:`~pgm_control.ContinuousMDP` with differentiable dynamics/reward.
        guide: a registry name ("gaussian_mlp", "open_loop_normal") or a guide object with
            the model's signature (e.g. ``pyro.infer.autoguide.AutoNormal(model)``).
        estimator: "reparam" (pathwise gradients) or "score" (score function); sets the
            guide's ``reparameterized`` switch (also on a guide object passed in).
        steps: optimisation steps (None: 1000).
        num_particles: trajectories per ELBO estimate, vectorised (None: 64).
        optimizer: "adam", "clipped_adam", "sgd", a ``torch.optim.Optimizer`` class or a
            ``pyro.optim`` optimizer (None: "adam").
        lr: learning rate of a named optimizer or class (None: 1e-3).
        temperature: α > 0.
        seed: seeds Pyro/torch before the guide is built and trained.
        progress: show a tqdm bar with the running ELBO.
        callback: ``callback(step, elbo, guide)`` after every step; returning True stops.
        initial_state: a fixed s₀ (state_dim,) instead of draws from ``mdp.initial``.
        vectorized: use the model's single ``actions`` site (fast) or per-step sites.
        action_prior: the model's p(a) (uniform on the box if None).
        **guide_kwargs: passed to the guide's registry constructor.

    Returns:
        A :class:`~pgm_control.FitResult`; ``elbo`` is the per-step estimate (nats per
        trajectory). A KeyboardInterrupt stops training and returns what was fitted so far
        (``extra["interrupted"] = True``). Training runs in a fresh Pyro param-store scope;
        the trained weights live in the returned guide (a PyroModule) and in ``params``.
    """
    from pgm_control.models import continuous_control_model  # models import the core

    # None means "the default": pgm_control.svi.fit forwards its unset arguments as None
    steps = 1000 if steps is None else steps
    num_particles = 64 if num_particles is None else num_particles
    optimizer = "adam" if optimizer is None else optimizer
    lr = 1e-3 if lr is None else lr
    mdp = _check_continuous(mdp)
    alpha = _check_temperature(temperature)
    if estimator not in CONTINUOUS_ESTIMATORS:
        raise ValueError(
            f"`estimator` must be one of {CONTINUOUS_ESTIMATORS} for a continuous MDP, "
            f"got {estimator!r}"
        )
    for arg, value in (("steps", steps), ("num_particles", num_particles)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be an int >= 1, got {value!r}")
    if initial_state is not None:
        initial_state = torch.as_tensor(initial_state, dtype=mdp.action_low.dtype)
        if initial_state.shape != (mdp.state_dim,):
            raise ValueError(
                f"`initial_state` must have shape (state_dim,)=({mdp.state_dim},), "
                f"got {tuple(initial_state.shape)}"
            )
    if callback is not None and not callable(callback):
        raise TypeError("`callback` must be callable(step, elbo, guide) or None")

    pyro.set_rng_seed(seed)
    guide, guide_name = _make_guide(mdp, guide, estimator, guide_kwargs)
    optim = _make_optimizer(optimizer, lr)
    loss = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=0)
    model_kwargs = dict(
        temperature=alpha,
        initial_state=initial_state,
        action_prior=action_prior,
        vectorized=vectorized,
    )
    history = []
    interrupted = False
    # a fresh param store: nothing leaks in from earlier fits or out to later ones
    with pyro.get_param_store().scope() as param_state:
        svi = SVI(continuous_control_model, guide, optim, loss)
        start = time.perf_counter()
        bar = tqdm(range(steps), disable=not progress, desc=f"SVI {guide_name}/{estimator}")
        try:
            for step in bar:
                elbo = -svi.step(mdp, **model_kwargs)
                if not np.isfinite(elbo):
                    raise FloatingPointError(
                        f"the ELBO estimate became {elbo} at step {step}; lower `lr`, use "
                        "optimizer='clipped_adam', or shorten the horizon"
                    )
                history.append(elbo)
                if step % 10 == 0 or step == steps - 1:
                    bar.set_postfix(elbo=f"{np.mean(history[-10:]):.4g}")
                if callback is not None and callback(step, elbo, guide):
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        # constrained values; "net$$$0.weight" (pyro.module's separator) reads "net.0.weight"
        params = {
            k.replace("$$$", "."): v.detach().clone() for k, v in pyro.get_param_store().items()
        }
    return FitResult(
        elbo=np.asarray(history, dtype=float),
        guide=guide,
        params=params,
        seconds=seconds,
        guide_name=guide_name,
        estimator=estimator,
        extra={
            "interrupted": interrupted,
            "temperature": alpha,
            "num_particles": num_particles,
            "horizon": mdp.horizon,
            "param_state": param_state,
        },
    )
