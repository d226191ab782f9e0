r"""The guide contract: what any guide for the control models must do (the one place it is written).

A **guide** is any callable with the model's signature::

    guide(mdp, *, temperature=1.0, num_particles=None, **model_kwargs)

— a plain function that uses ``pyro.param``, a ``PyroModule``, or a ``torch.nn.Module`` — that
samples the latent sites of the model it approximates:

* tabular (:func:`pgm_control.control_model`): ``s_0``, then for t = 0 … T−1 ``a_{t}`` and
  ``s_{t+1}``, each a discrete distribution over 0 … S−1 (states) or 0 … A−1 (actions), e.g.
  ``Categorical(logits=...)``; a site's distribution may depend on the values sampled before it
  (``a_t`` on ``s_t``; ``s_{t+1}`` on ``s_t`` and ``a_t``);
* continuous (:func:`pgm_control.continuous_control_model`): ``s_0`` (unless the model is given
  ``initial_state``) and either ``a_{t}`` per step or, with ``vectorized=True``, one ``actions``
  site; a stochastic dynamics model's ``s_{t+1}``.

Arguments the guide does not need (``temperature``, ``optimality``, ...) are accepted and
ignored. **Particles**: when ``num_particles`` is given, the guide draws that many trajectories
at once, either inside ``pyro.plate("particles", num_particles, dim=-1)`` exactly as the model
does (:func:`particles_plate` opens it, and opens nothing for None) or with no plate, drawing
values of shape (num_particles,) that broadcast against the model's plate. The Monte-Carlo
estimators ("score", "rao_blackwell", "reparam") pass their particle count through this
argument to model and guide alike, and refuse a guide whose sites come out with another shape.

Nothing else is required. In particular, for a tabular MDP the library reads the guide's tables
itself (:func:`pgm_control.guide_tables.read_guide_tables`): it runs the guide *once* with
every (state, action) pair pinned at every step — S·A particles in one vectorised pass — and
reads log qₜ(a|s) off each ``a_t`` site's distribution and q(s₀), qₜ(s'|s,a) off the state
sites. That gives, for any guide:

* the **exact ELBO with gradients** (estimator ``"exact"``: :func:`pgm_control.trajectory_elbo`
  of the read tables, differentiable in the guide's parameters) and Pyro's enumeration of the
  same tables (``"enum"``);
* ``FitResult.policy`` (T, S, A) and the **exact gap**: against ``optimal_elbo`` when the
  guide's ``s_0``/``s_{t+1}`` are the true p0 and P (it shares the dynamics), against
  ``log_evidence`` when it learns q(s₀) or qₜ(s'|s,a) (its family can hold p(τ|O) itself).

The **Rao–Blackwell** estimator needs no hint either: for the control model it conditions the
baseline of ``a_t`` on the value of ``s_t`` and that of ``s_{t+1}`` on (``s_t``, ``a_t``),
read from the trace by site name; a guide whose latent sites are named otherwise is refused
with ``baseline="state"`` (use ``baseline="mean"``).

**Parameters.** A plain function uses ``pyro.param`` (Pyro's global param store, as in any
Pyro tutorial; ``FitResult.params`` holds their constrained values by name). A module owns its
parameters: :func:`pgm_control.fit` optimises ``guide.parameters()`` together with any param
site the guide announces, and ``FitResult.params`` is its ``state_dict()`` —
``Family(mdp).load_state_dict(res.params)`` rebuilds the fitted guide. The library's own
families are ``torch.nn.Module`` s that announce their parameters as ``param`` sites named
``"<name>.<parameter>"`` without writing to the global store (the form Pyro itself uses for a
``PyroModule`` under ``pyro.settings.set(module_local_params=True)``), so plain
``pyro.infer.SVI`` with any ``pyro.optim`` optimiser trains them too, and two guides never share
a parameter.

**Optional capabilities** (duck-typed speed-ups; nothing requires them, and ``fit`` treats a
guide without them through the same generic path):

* ``natural_direction(mdp, *, temperature, observed_steps=None)`` → ``{parameter name: ascent
  direction}``, called right after the exact ELBO's gradients were set: the natural-gradient
  direction for :class:`pgm_control.svi.NaturalGradientAscent` (``optimizer="natural"``, the
  default where it exists). The time-varying table returns the soft advantage
  ``Qₜ^q(s,a)/α − Vₜ^q(s)/α + log p(a|s) − log qₜ(a|s)``, so a step of 1 is soft policy
  iteration.
* ``attains_optimum = True`` — the family contains the policy that attains its yardstick;
  ``fit`` then warns when an optimiser converges short of it.

**Saving.** ``FitResult.save(path)`` / ``FitResult.load(path)`` pickle the result with its
guide, so a guide must pickle: keep it a module-level function or class (no lambdas or local
closures stored on it).
"""

from __future__ import annotations

import contextlib

import pyro
import torch

__all__ = ["particles_plate", "announce_parameters"]


def particles_plate(num_particles: int | None):
    """``pyro.plate("particles", num_particles, dim=-1)``, or a no-op context for None.

    The plate every model and guide of this library opens for vectorised particles::

        with particles_plate(num_particles):
            s = pyro.sample("s_0", dist.Categorical(logits=mdp.log_initial))
    """
    if num_particles is None:
        return contextlib.nullcontext()
    return pyro.plate("particles", num_particles, dim=-1)


class _Owned:
    """``value.unconstrained()`` for Pyro's optimisers: the module's own parameter tensor."""

    __slots__ = ("parameter",)

    def __init__(self, parameter: torch.Tensor):
        self.parameter = parameter

    def __call__(self) -> torch.Tensor:
        return self.parameter


def announce_parameters(module: torch.nn.Module, prefix: str) -> None:
    """Announce ``module``'s parameters as Pyro ``param`` sites ``"<prefix>.<name>"``.

    Nothing is written to the global param store: each site's value is a detached alias of the
    parameter whose ``unconstrained()`` returns the parameter itself, which is all
    ``pyro.infer.SVI`` and ``pyro.optim`` need to find and update it. The alias is temporary, so
    the module keeps pickling (Pyro's own ``module_local_params`` form stores a weakref on the
    parameter, which does not pickle).
    """
    for name, p in module.named_parameters():
        alias = p.detach()
        alias.unconstrained = _Owned(p)
        fullname = f"{prefix}.{name}"
        pyro.poutine.runtime.effectful(_return_alias, type="param")(
            fullname, alias, constraint=pyro.distributions.constraints.real, event_dim=None,
            name=fullname,
        )  # fmt: skip


def _return_alias(name, alias, *args, **kwargs):
    return alias
