r"""Reading any tabular guide's tables: qₜ(a|s) and, where it learns them, q(s₀), qₜ(s'|s,a).

A guide for :func:`pgm_control.control_model` is any Pyro program that samples the sites
``s_0, a_0, s_1, …, s_T`` (see :mod:`pgm_control.guides.contract`). Each ``a_t`` site's
distribution, evaluated with ``s_t`` pinned to a state s, *is* the row qₜ(·|s) of its policy
table; each ``s_{t+1}`` site, with (``s_t``, ``a_t``) pinned, is its dynamics row qₜ(·|s,a).
:func:`read_guide_tables` reads every row at once: it runs the guide one time with S·A
particles, particle n = s·A + a pinned to sₜ = s and aₜ = a at *every* step, so the ``a_t``
sites see every state and the ``s_{t+1}`` sites every (state, action) pair. The tables stay
differentiable functions of the guide's parameters (its ``param`` sites pass through to any
enclosing handler, so ``pyro.infer.SVI`` finds them), which is what lets the exact ELBO of
:func:`pgm_control.trajectory_elbo` serve as the loss of *any* guide.

:class:`TableGuide` goes the other way: it samples the control model's sites from given tables,
with every site marked for parallel enumeration (the enumerated guide of the ``"enum"``
estimator; no ``pyro.markov``, which is wrong on the guide side for T ≥ 4).
"""

from __future__ import annotations

import contextlib
import typing

import pyro
import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample

from .mdp import TabularMDP, _check_mdp

__all__ = ["GuideTables", "read_guide_tables", "TableGuide"]


class GuideTables(typing.NamedTuple):
    """The tables of a tabular guide, in log space, indexed as the model's.

    Attributes:
        log_policy: log qₜ(a|s), indexed [t, s, a], shape (T, S, A).
        log_initial: log q(s₀), shape (S,); None when it is the true p0.
        log_dynamics: log qₜ(s'|s,a), indexed [t, s, a, s'], shape (T, S, A, S); None when it
            is the true P at every step.
        learns_dynamics: the guide's q(s₀) or qₜ(s'|s,a) differ from p0, P or depend on its
            parameters: its family can hold the posterior p(τ|O), whose ELBO reaches log p(O).
    """

    log_policy: torch.Tensor
    log_initial: torch.Tensor | None
    log_dynamics: torch.Tensor | None
    learns_dynamics: bool


class _Pin(Messenger):
    """Pins the named sample sites to given values and records their distributions.

    Every sample site stops here, so an enclosing trace (e.g. the estimator's) never sees the
    pinned run; ``param`` sites pass through untouched.
    """

    def __init__(self, values: dict):
        super().__init__()
        self.values = values
        self.fns: dict = {}
        self.unknown: list[str] = []

    def _pyro_sample(self, msg):
        name = msg["name"]
        if name in self.values:
            msg["value"] = self.values[name]
            msg["is_observed"] = True
            self.fns[name] = msg["fn"]
        elif not msg["is_observed"] and not isinstance(msg["fn"], _Subsample):
            self.unknown.append(name)  # (a plate's subsample site is not a latent)
        msg["stop"] = True


def _rows(fn, size: int, n: int, name: str) -> torch.Tensor:
    """log fn(k) for k = 0 … size−1 at each of the n particles, shape (n, size)."""
    batch = tuple(fn.batch_shape)
    if tuple(fn.event_shape) != () or not getattr(fn.support, "is_discrete", False):
        raise TypeError(
            f"site {name!r} must be a discrete distribution over 0..{size - 1} (e.g. "
            f"Categorical(logits=...)), got {type(fn).__name__} with event shape "
            f"{tuple(fn.event_shape)}"
        )
    if batch not in ((), (1,), (n,)):
        raise ValueError(
            f"site {name!r} has batch shape {batch} when the guide is run with "
            f"num_particles={n}: a guide must draw (num_particles,) values, inside "
            'pyro.plate("particles", num_particles, dim=-1) (pgm_control.guides.particles_plate) '
            "or by broadcasting against the values it conditions on"
        )
    base = fn.base_dist if isinstance(fn, dist.MaskedDistribution) else fn
    if isinstance(base, torch.distributions.Categorical) and base.logits.shape[-1] == size:
        rows = base.logits  # normalised by the constructor: exactly what log_prob gathers
    else:
        values = torch.arange(size, device=_device(fn)).reshape((size,) + (1,) * len(batch))
        rows = fn.log_prob(values).reshape(size, -1).transpose(0, 1)
    return rows.reshape(-1, size).expand(n, size)


def _device(fn):
    for attr in ("logits", "probs", "loc"):
        x = getattr(fn, attr, None)
        if isinstance(x, torch.Tensor):
            return x.device
    return None


def _same(table: torch.Tensor, truth: torch.Tensor) -> bool:
    """table == truth up to the rounding of a renormalisation (−inf where truth is −inf)."""
    if table.requires_grad:
        return False
    truth = truth.to(table.dtype)
    finite = torch.isfinite(truth)
    if not torch.equal(finite, torch.isfinite(table)):
        return False
    tol = 16 * torch.finfo(table.dtype).eps
    diff = (table - truth).abs()[finite]
    return bool((diff <= tol * (1 + truth.abs()[finite])).all())


def read_guide_tables(
    guide, mdp: TabularMDP, *, use_capability: bool = True, **model_kwargs
) -> GuideTables:
    """Read a tabular guide's tables in one vectorised run with every state and action pinned.

    ``qₜ(a|s) = q(aₜ = a | sₜ = s)`` read off the ``a_t`` site, ``qₜ(s'|s,a)`` off ``s_{t+1}``,
    q(s₀) off ``s_0``; the guide is called as ``guide(mdp, num_particles=S·A, **model_kwargs)``.

    Args:
        guide: any callable with the model's signature that samples ``s_0, a_t, s_{t+1}``.
        mdp: the :class:`~pgm_control.TabularMDP` (fixes T, S, A and the true p0, P).
        use_capability: take the tables from the guide's optional ``log_tables`` capability
            where it has one (a speed-up that must return exactly what is read here; see
            :mod:`pgm_control.guides.contract`); False always reads the sites.
        **model_kwargs: passed on to the guide (``temperature`` etc.).

    Returns:
        :class:`GuideTables`, differentiable in the guide's parameters.

    Raises:
        TypeError: the guide misses one of the model's sites, has latent sites the model does
            not have, or a site is not a discrete distribution of the right size.
    """
    mdp = _check_mdp(mdp)
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    capability = getattr(guide, "log_tables", None) if use_capability else None
    if callable(capability):
        log_policy, log_initial, log_dynamics = capability(mdp, **model_kwargs)
        return _tables(mdp, log_policy, log_initial, log_dynamics)
    n = S * A
    pin = torch.arange(n, device=mdp.device)
    states, actions = pin // A, pin % A  # particle n = s·A + a
    values = {"s_0": states}
    for t in range(T):
        values[f"a_{t}"], values[f"s_{t + 1}"] = actions, states
    with _Pin(values) as pinned:
        guide(mdp, num_particles=n, **model_kwargs)
    missing = [name for name in values if name not in pinned.fns]
    if missing or pinned.unknown:
        raise TypeError(
            "a guide for the tabular control model must sample exactly its latent sites s_0, "
            f"a_t, s_(t+1) for t < T = {T}; this one misses {missing[:4]} and has unknown "
            f"latent sites {pinned.unknown[:4]} (see pgm_control.guides.contract)"
        )
    fns = pinned.fns
    log_initial = _rows(fns["s_0"], S, n, "s_0")[0]
    first_of_state = torch.arange(S, device=mdp.device) * A  # particles with aₜ = 0
    log_policy = torch.stack(
        [_rows(fns[f"a_{t}"], A, n, f"a_{t}")[first_of_state] for t in range(T)]
    )
    log_dynamics = torch.stack(
        [_rows(fns[f"s_{t + 1}"], S, n, f"s_{t + 1}").reshape(S, A, S) for t in range(T)]
    )
    return _tables(mdp, log_policy, log_initial, log_dynamics)


def _tables(mdp, log_policy, log_initial, log_dynamics) -> GuideTables:
    """GuideTables, with q(s₀), qₜ(s'|s,a) dropped (None) where they are the true p0, P."""
    T = mdp.horizon
    own_initial = log_initial is not None and not _same(log_initial, mdp.log_initial)
    own_dynamics = False  # a guide sharing P (None) never needs the dense (S, A, S) log P
    if log_dynamics is not None:
        own_dynamics = not _same(log_dynamics, mdp.log_transition.expand(T, -1, -1, -1))
    learns = own_initial or own_dynamics
    if learns:
        log_initial = mdp.log_initial if log_initial is None else log_initial
        if log_dynamics is None:
            log_dynamics = mdp.log_transition.expand(T, -1, -1, -1)
    return GuideTables(
        log_policy,
        log_initial if learns else None,
        log_dynamics if learns else None,
        learns,
    )


class TableGuide:
    """A guide that samples the control model's sites from a tabular guide's tables.

    Called with the model's signature; reads the tables of ``guide`` (so its parameters'
    ``param`` sites appear in the trace) and draws ``s_0, a_t, s_{t+1}`` from them, each marked
    ``infer={"enumerate": "parallel"}`` when ``enumerate`` is set — the enumerated guide of
    ``TraceEnum_ELBO``. No ``pyro.markov``: each site keeps its own enumeration dim.
    """

    def __init__(self, guide, *, enumerate: bool = True):
        self.guide = guide
        self.enumerate = enumerate

    def __call__(self, mdp, *, num_particles=None, **model_kwargs):
        tables = read_guide_tables(self.guide, mdp, **model_kwargs)
        log_q0 = mdp.log_initial if tables.log_initial is None else tables.log_initial
        log_pi, log_qd = tables.log_policy, tables.log_dynamics
        infer = {"enumerate": "parallel"} if self.enumerate else {}
        plate = (
            pyro.plate("particles", num_particles, dim=-1)
            if num_particles is not None
            else contextlib.nullcontext()
        )
        with plate:
            s = pyro.sample("s_0", dist.Categorical(logits=log_q0), infer=dict(infer))
            states = [s]
            for t in range(mdp.horizon):
                a = pyro.sample(f"a_{t}", dist.Categorical(logits=log_pi[t, s]), infer=dict(infer))
                logits = mdp.log_transition[s, a] if log_qd is None else log_qd[t, s, a]
                s = pyro.sample(f"s_{t + 1}", dist.Categorical(logits=logits), infer=dict(infer))
                states.append(s)
        return states
