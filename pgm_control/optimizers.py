"""The one optimiser factory of :func:`pgm_control.fit` and natural-gradient ascent.

:func:`build_optimizer` turns a name ("natural", "lbfgs", "adam", "clipped_adam", "sgd"), a
torch optimiser class or factory, or a ``pyro.optim`` optimiser into the optimiser ``fit``
steps, for tabular and continuous MDPs alike; :data:`DEFAULTS` holds the settings each kind of
problem gets when the caller sets none (measured in ``benchmarks/svi_convergence.py`` and
``benchmarks/fit_defaults.py``). :class:`NaturalGradientAscent` uses a guide's optional
``natural_direction`` (see :mod:`pgm_control.guides.contract`).
"""

from __future__ import annotations

import typing

import torch
from pyro.optim import PyroOptim
from pyro.optim.clipped_adam import ClippedAdam
from torch.optim.adam import adam

from .validation import check_positive_float

__all__ = [
    "OPTIMIZERS",
    "OptimizerDefaults",
    "DEFAULTS",
    "DEFAULT_OPTIMIZER",
    "NaturalGradientAscent",
    "has_natural_direction",
    "build_optimizer",
    "LeanAdam",
]

_FUSED_ADAM = getattr(torch, "_fused_adam_", None)  # the kernel behind adam(fused=True)
_TORCH_VERSION = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])

OPTIMIZERS = ("natural", "lbfgs", "adam", "clipped_adam", "sgd")


class OptimizerDefaults(typing.NamedTuple):
    """Default steps, learning rate (and its end point for a geometric decay) and particles."""

    steps: int
    lr: float
    lr_end: float | None  # exponential decay to this lr over the steps (None: constant)
    num_particles: int | None


# settings by (kind of problem, optimiser); see `fit` for what each one is
DEFAULTS = {
    ("exact", "natural"): OptimizerDefaults(200, 1.0, None, None),
    ("exact", "lbfgs"): OptimizerDefaults(100, 1.0, None, None),
    ("exact", "adam"): OptimizerDefaults(1000, 0.05, None, None),
    ("exact", "clipped_adam"): OptimizerDefaults(1000, 0.05, None, None),
    ("exact", "sgd"): OptimizerDefaults(1000, 0.1, None, None),
    # Monte-Carlo on a tabular MDP (measured in benchmarks/svi_convergence.py, "defaults")
    ("particles", "clipped_adam"): OptimizerDefaults(200, 0.05, 0.002, 4000),
    ("particles", "adam"): OptimizerDefaults(1000, 0.05, None, 4000),
    ("particles", "sgd"): OptimizerDefaults(1000, 0.1, None, 4000),
    ("continuous", "adam"): OptimizerDefaults(1000, 1e-3, None, 64),
    ("continuous", "clipped_adam"): OptimizerDefaults(1000, 1e-3, None, 64),
    ("continuous", "sgd"): OptimizerDefaults(1000, 1e-3, None, 64),
}
DEFAULT_OPTIMIZER = {"particles": "clipped_adam", "continuous": "adam"}


class NaturalGradientAscent:
    """Natural-gradient ascent on an exact ELBO, for guides with ``natural_direction``.

    Each step moves every parameter along the direction the guide reports (the contract's
    optional capability: ``guide.natural_direction(mdp, temperature=α, ...)``, called after the
    gradients of −ELBO were set) by ``lr``, halving the step until the ELBO does not decrease.
    For the softmax tables that direction is the gradient preconditioned by the diagonal of its
    Fisher information (Kakade 2001): it undoes the factor dₜ(s)·qₜ(a|s) that makes plain
    gradients vanish in rarely visited states and saturated actions, so it does not stall at
    low temperatures the way LBFGS can. For ``"tabular_time_varying"`` the direction is the soft
    advantage of the current policy and a step of 1 is soft policy iteration: the optimum in T
    steps, for any α.
    """

    def __init__(self, guide, lr: float = 1.0, *, max_halvings: int = 40):
        self.guide, self.lr, self.max_halvings = guide, lr, max_halvings

    def step(self, closure, loss_fn, mdp, model_kwargs=None) -> float:
        """One step; ``closure()`` returns −ELBO and sets gradients, ``loss_fn()`` returns −ELBO."""
        loss = float(closure())
        with torch.no_grad():
            direction = self.guide.natural_direction(mdp, **(model_kwargs or {}))
            named = dict(self.guide.named_parameters())
            start = {n: p.detach().clone() for n, p in named.items()}
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


def has_natural_direction(guide, mdp, model_kwargs) -> bool:
    probe = getattr(guide, "natural_direction", None)
    if not callable(probe) or not hasattr(guide, "named_parameters"):
        return False
    with torch.no_grad():
        return probe(mdp, **model_kwargs) is not None


def build_optimizer(
    optimizer, params, lr, *, steps, defaults, guide, natural_ok, deterministic, estimator
):
    """(torch or pyro optimiser, its name, lr): the one optimiser factory of :func:`fit`.

    ``optimizer`` is a name in :data:`OPTIMIZERS`, a torch optimiser class or factory
    ``f(params, lr=...)``, or a ``pyro.optim`` optimiser; ``defaults(name)`` gives the
    :class:`OptimizerDefaults` of a name; ``natural_ok`` says whether the guide offers
    ``natural_direction`` under an exact estimator; ``deterministic`` whether the objective is
    exact (LBFGS needs that); ``estimator`` names it in messages.
    """
    if isinstance(optimizer, PyroOptim):
        if lr is not None:
            raise ValueError("`lr` is set inside a pyro.optim optimiser; pass lr=None")
        name = getattr(optimizer, "pt_optim_constructor", type(optimizer)).__name__
        return optimizer, name, None
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {optimizer!r}")
        d = defaults(name)
        lr = d.lr if lr is None else check_positive_float("lr", lr)
        if name == "natural":
            if not natural_ok:
                label = getattr(guide, "family", None) or type(guide).__name__
                raise ValueError(
                    "optimizer='natural' needs an exact estimator ('exact' or 'enum') on a "
                    "TabularMDP and a guide with the optional `natural_direction` capability "
                    f"(softmax tables); got {estimator!r} and {label!r}. Use "
                    "'lbfgs' or 'adam'."
                )
            return NaturalGradientAscent(guide, lr), name, lr
        if name == "lbfgs":
            if not deterministic:
                raise ValueError(
                    "LBFGS needs a deterministic objective; with a Monte-Carlo estimator "
                    f"({estimator!r}) use 'adam' or 'sgd'"
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
        elif name == "clipped_adam":
            # gradients clipped at 10 per coordinate: pathwise gradients through long rollouts
            # of chaotic dynamics occasionally explode; `lrd` decays lr geometrically per step
            lrd = 1.0 if d.lr_end is None else (d.lr_end / lr) ** (1 / steps)
            opt = ClippedAdam(params, lr=lr, clip_norm=10.0, lrd=lrd)
        else:
            opt = torch.optim.SGD(params, lr=lr)
        return opt, name, lr
    if (
        isinstance(optimizer, type)
        and issubclass(optimizer, torch.optim.Optimizer)
        or callable(optimizer)
    ):
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


class LeanAdam:
    """torch's fused Adam update without ``torch.optim.Optimizer``'s per-step bookkeeping.

    ``torch.optim.Adam(params, lr, fused=True).step()`` spends ~15 of its ~30 µs on a
    profiler record, hooks and the state lookup; in a loop whose whole step is ~0.3 ms (MaxEnt
    IRL on a 28-state table) that is 5–10%. This runs the kernel that
    ``torch.optim.adam.adam(..., fused=True)`` runs (``torch._fused_adam_``, called directly
    when all parameters share a device and dtype, else through that functional API), with
    torch's default betas and eps on the same state (a float32 step count per parameter, as
    fused Adam keeps it): bit for bit the trajectory of ``torch.optim.Adam(fused=True)``
    (tested). Floating-point CPU or CUDA parameters only (:meth:`supports`); ``step`` takes
    no closure.
    """

    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.supports(self.params):
            raise TypeError("LeanAdam takes floating-point CPU or CUDA parameters (fused Adam)")
        self.lr = check_positive_float("lr", lr)
        self.exp_avgs = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.exp_avg_sqs = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    @staticmethod
    def supports(params) -> bool:
        """Whether fused Adam takes these parameters (real floating point, on CUDA, or on CPU
        from torch 2.4, which added the CPU kernel)."""
        cpu = _TORCH_VERSION >= (2, 4)
        return all(
            p.is_floating_point()
            and not p.is_complex()
            and (p.device.type == "cuda" or (cpu and p.device.type == "cpu"))
            for p in params
        )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One Adam update of the parameters that have a gradient (others keep their state)."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        exp_avgs = [self.exp_avgs[i] for i in live]
        exp_avg_sqs = [self.exp_avg_sqs[i] for i in live]
        steps = [self.steps[i] for i in live]
        hyper = dict(amsgrad=False, lr=self.lr, beta1=0.9, beta2=0.999, weight_decay=0.0,
                     eps=1e-8, maximize=False)  # fmt: skip
        with torch.no_grad():
            if _FUSED_ADAM is not None and len({(p.device, p.dtype) for p in params}) == 1:
                # what ``adam(fused=True)`` runs for one device and dtype, minus its grouping
                torch._foreach_add_(steps, 1)
                _FUSED_ADAM(params, grads, exp_avgs, exp_avg_sqs, [], steps, **hyper)
            else:
                adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, fused=True, **hyper)
