"""The ``pgm-control`` command: control as inference on small MDPs, from the shell.

::

    pgm-control demo                                  # FrozenLake 4x4 slippery, T=15, α=0.1
    pgm-control demo --env CliffWalking-v1:slippery --temperature 1 --plot cliff.png
    pgm-control exact --env lottery --horizon 1 --temperature 1
    pgm-control exact --env FrozenLake-v1:8x8,nonslippery --horizon 30
    pgm-control fit --guide neural --estimator rao_blackwell --num-particles 500 --plot fit.png
    pgm-control fit --env pendulum --guide gaussian_mlp --steps 300 --lr 0.01
    pgm-control plan --num-samples 20000 --plot weights.png        # IS vs the exact posterior
    pgm-control plan --env pendulum --plot swing_up.png             # MPPI in gymnasium

``--env`` takes a gymnasium toy-text id with options after a colon (``4x4``/``8x8`` → map_name,
``slippery``/``nonslippery`` → is_slippery, ``key=value`` → any other ``gymnasium.make``
keyword), or one of the built-in MDPs ``lottery``, ``chain`` and ``random`` (``key=value``
options go to :func:`~pgm_control.lottery_mdp`, :func:`~pgm_control.chain_mdp`,
:func:`~pgm_control.random_mdp`). ``fit`` and ``plan`` also take the continuous-control twins
``pendulum`` and ``mountain_car`` (:mod:`pgm_control.envs`; ``Pendulum-v1`` and
``MountainCarContinuous-v0`` name the same).

Subcommands live in :data:`SUBCOMMANDS`, a dict from name to a registration function that adds
its sub-parser (use :func:`add_problem_arguments` for the shared flags) and sets ``func`` to a
handler ``func(args) -> int``. A new command is one function and one entry.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import math
import re
import sys
import textwrap
import typing
import warnings
from collections.abc import Callable

import numpy as np
import torch

from .backward import SoftValues, log_evidence, optimal_elbo, soft_value_iteration
from .continuous import ContinuousMDP
from .elbo import elbo_terms
from .envs import mountain_car_continuous, pendulum
from .forward import policy_state_distribution, state_marginals
from .mdp import TabularMDP, chain_mdp, lottery_mdp, random_mdp

__all__ = [
    "main",
    "build_parser",
    "SUBCOMMANDS",
    "add_problem_arguments",
    "EnvSpec",
    "parse_env",
    "build_mdp",
    "build_problem",
    "goal_states",
    "UsageError",
]

DEFAULT_ENV = "FrozenLake-v1"
DEFAULT_HORIZON = 15
DEFAULT_TEMPERATURE = 0.1
DEFAULT_PLOT = "pgm_control_demo.png"

_BACKUPS = ("optimistic", "expected")


class UsageError(Exception):
    """A problem with the command line that argparse could not see (reported with exit 2)."""


# --------------------------------------------------------------------------- environments
class EnvSpec(typing.NamedTuple):
    """A parsed ``--env`` value: a gymnasium id or built-in name, and its keyword options."""

    name: str
    options: dict

    def __str__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}:{opts}" if opts else self.name


BUILTIN_ENVS: dict[str, Callable[..., TabularMDP]] = {
    "lottery": lambda horizon, seed, **kw: lottery_mdp(horizon=horizon, **kw),
    "chain": lambda horizon, seed, **kw: chain_mdp(horizon=horizon, **kw),
    "random": lambda horizon, seed, **kw: random_mdp(horizon=horizon, seed=seed, **kw),
}

# continuous-control twins of gymnasium envs, for `fit` and `plan` (options key=value)
CONTINUOUS_ENVS: dict[str, Callable[..., ContinuousMDP]] = {
    "pendulum": lambda horizon, **kw: pendulum(horizon, **kw),
    "mountain_car": lambda horizon, **kw: mountain_car_continuous(horizon, **kw),
}
_CONTINUOUS_ALIASES = {"Pendulum-v1": "pendulum", "MountainCarContinuous-v0": "mountain_car"}

_GYM_FLAGS = {
    "slippery": ("is_slippery", True),
    "nonslippery": ("is_slippery", False),
    "non-slippery": ("is_slippery", False),
}


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as map_name=8x8


def parse_env(text: str) -> EnvSpec:
    """Parse ``NAME[:OPTION[,OPTION...]]`` into an :class:`EnvSpec` (an argparse ``type``).

    NAME is a built-in (``lottery``, ``chain``, ``random``), a continuous twin (``pendulum``,
    ``mountain_car``, for ``fit`` and ``plan``) or a registered gymnasium id. Gymnasium
    options: ``4x4``/``8x8`` (map_name), ``slippery``/``nonslippery`` (is_slippery),
    ``key=value``. Built-ins and twins take ``key=value`` only.

    Raises:
        argparse.ArgumentTypeError: unknown name or malformed option.
    """
    name, _, rest = text.strip().partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"empty environment name in {text!r}")
    name = _CONTINUOUS_ALIASES.get(name, name)
    builtin = name in BUILTIN_ENVS or name in CONTINUOUS_ENVS
    if not builtin:
        import gymnasium as gym

        try:
            gym.spec(name)
        except gym.error.Error as exc:
            known = ", ".join(sorted(BUILTIN_ENVS))
            continuous = ", ".join(CONTINUOUS_ENVS)
            reason = str(exc).rstrip(".")
            raise argparse.ArgumentTypeError(
                f"unknown environment {name!r} ({reason}). Use a gymnasium toy-text id such as "
                f"FrozenLake-v1, CliffWalking-v1 or Taxi-v4, or one of: {known} (fit and plan "
                f"also take {continuous})"
            ) from None
    options: dict = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        if "=" in item:
            key, _, value = item.partition("=")
            if not key.isidentifier():
                raise argparse.ArgumentTypeError(f"bad option {item!r} in {text!r}")
            options[key] = _literal(value)
        elif not builtin and item.lower() in _GYM_FLAGS:
            key, value = _GYM_FLAGS[item.lower()]
            options[key] = value
        elif not builtin and re.fullmatch(r"\d+x\d+", item):
            options["map_name"] = item
        else:
            hint = "key=value" if builtin else "4x4, 8x8, slippery, nonslippery or key=value"
            raise argparse.ArgumentTypeError(
                f"unknown option {item!r} for {name!r} in {text!r}; expected {hint}"
            )
    return EnvSpec(name, options)


def build_mdp(spec: EnvSpec | str, *, horizon: int, seed: int = 0) -> TabularMDP:
    """The :class:`TabularMDP` an ``--env`` value names, with horizon T.

    Raises:
        UsageError: the environment cannot be built (bad keyword, not a tabular env, ...).
    """
    spec = _as_spec(spec)
    if spec.name in CONTINUOUS_ENVS:
        raise UsageError(
            f"{spec.name!r} is a continuous-control env: it works with `pgm-control fit` and "
            "`pgm-control plan`; exact inference needs a tabular env"
        )
    try:
        if spec.name in BUILTIN_ENVS:
            return BUILTIN_ENVS[spec.name](horizon, seed, **spec.options)
        import gymnasium as gym

        try:
            return TabularMDP.from_gymnasium(spec.name, horizon, **spec.options)
        except gym.error.Error as exc:
            raise UsageError(f"cannot make {spec}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot build environment {spec}: {exc}") from None


def build_problem(
    spec: EnvSpec | str, *, horizon: int, seed: int = 0
) -> TabularMDP | ContinuousMDP:
    """Like :func:`build_mdp`, but ``pendulum`` and ``mountain_car`` give a ContinuousMDP.

    Raises:
        UsageError: the environment cannot be built.
    """
    spec = _as_spec(spec)
    if spec.name not in CONTINUOUS_ENVS:
        return build_mdp(spec, horizon=horizon, seed=seed)
    try:
        return CONTINUOUS_ENVS[spec.name](horizon, **spec.options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot build environment {spec}: {exc}") from None


def _as_spec(spec: EnvSpec | str) -> EnvSpec:
    if isinstance(spec, EnvSpec):
        return spec
    try:
        return parse_env(spec)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None


def goal_states(mdp: TabularMDP) -> torch.Tensor | None:
    """Bool mask (S,) of the states that count as success, or None when the MDP has no goal.

    FrozenLake: the ``G`` cell. The chain: its right-most state. Otherwise the terminal states
    entered with the highest reward (CliffWalking's goal, Taxi's drop-offs, the lottery's
    "won"); None if the MDP has no terminal states (random MDPs).
    """
    S = mdp.num_states
    obs = getattr(mdp, "state_to_obs", None)
    obs = torch.arange(S, device=mdp.device) if obs is None else obs
    if mdp.desc is not None:
        flat = [str(x) for x in _flat(mdp.desc)]
        if "G" in flat and len(flat) == int(obs.max()) + 1:
            is_goal = torch.tensor([c == "G" for c in flat], device=mdp.device)
            return is_goal[obs]
    if mdp.name.startswith("chain"):
        mask = torch.zeros(S, dtype=torch.bool, device=mdp.device)
        mask[-1] = True
        return mask
    if mdp.terminal is None or not bool(mdp.terminal.any()):
        return None
    # the reward paid on entering each state from elsewhere: max over (s, a) that reach it
    enters = (mdp.transition > 0) & ~torch.eye(S, dtype=torch.bool, device=mdp.device)[:, None]
    entry = torch.where(enters, mdp.reward, torch.full_like(mdp.reward, -math.inf))
    entry = entry.amax(dim=(0, 1))
    best = entry[mdp.terminal].max()
    return mdp.terminal & (entry == best)


def _flat(desc):
    for row in desc:
        if isinstance(row, (str, bytes)):
            yield from (row.decode() if isinstance(row, bytes) else row)
        else:
            yield from row


# --------------------------------------------------------------------------- arguments
def _number(cast, accept, expected: str):
    """An argparse ``type=``: parse with ``cast``, then require ``accept(value)``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_positive_float = _number(float, lambda v: v > 0 and math.isfinite(v), "a finite number > 0")
_nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_unit_interval = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


_ENV_HELP = (
    "gymnasium toy-text id with options, e.g. FrozenLake-v1, FrozenLake-v1:8x8, "
    "FrozenLake-v1:nonslippery, CliffWalking-v1:slippery, Taxi-v4; or a built-in: "
    "lottery, chain, random (options key=value)"
)


def add_problem_arguments(
    parser: argparse.ArgumentParser,
    *,
    plot_default: str | None,
    plot_help: str = "write a PNG of V0 with policy arrows for both backups",
    continuous: bool = False,
) -> None:
    """Add the flags every subcommand shares: --env, --horizon, --temperature, --seed, --plot.

    Args:
        parser: the subcommand's parser.
        plot_default: the PNG written when --plot is not given (None: no plot).
        plot_help: what the PNG shows.
        continuous: the command also takes ``pendulum``/``mountain_car``; --horizon and
            --temperature then default to None, to be filled per env by the command (its
            epilog should list the defaults).
    """
    env_help = _ENV_HELP + (
        "; or a continuous twin: pendulum, mountain_car" if continuous else ""
    )  # fmt: skip
    per_env = "per env, see below" if continuous else "%(default)s"
    parser.add_argument(
        "--env", type=parse_env, default=DEFAULT_ENV, metavar="NAME[:OPTS]",
        help=f"{env_help}. Default: %(default)s (4x4, slippery)",
    )  # fmt: skip
    parser.add_argument(
        "--horizon", "-T", type=_positive_int,
        default=None if continuous else DEFAULT_HORIZON,
        help=f"number of decisions T (default: {per_env})",
    )  # fmt: skip
    parser.add_argument(
        "--temperature", "--alpha", type=_positive_float,
        default=None if continuous else DEFAULT_TEMPERATURE,
        help=f"temperature α > 0, p(O=1|s,a,s') = exp(r/α) (default: {per_env})",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of the random MDP and of all sampling (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--plot", metavar="PATH", default=plot_default,
        help=plot_help + (" (default: %(default)s)" if plot_default else " (default: no plot)"),
    )  # fmt: skip
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")


# --------------------------------------------------------------------------- computations
class _BackupResult(typing.NamedTuple):
    values: SoftValues
    v0: float  # E_p0[V₀(s₀)], reward units
    bound: float  # optimistic: log E_p0 exp(V₀/α) = log p(O); expected: E_p0[V₀]/α = ELBO*
    elbo: float  # ELBO of this backup's policy as a structured guide
    success: float | None  # P(s_T ∈ goal) acting with this policy in the true dynamics
    expected_return: float  # E[Σ r] acting with this policy in the true dynamics


def _solve(mdp: TabularMDP, alpha: float, backup: str) -> _BackupResult:
    sv = soft_value_iteration(mdp, temperature=alpha, backup=backup)
    v0 = sv.v[0]
    if backup == "optimistic":
        bound = torch.logsumexp(mdp.log_initial + v0 / alpha, dim=0)
    else:
        bound = (mdp.initial * v0).sum() / alpha
    terms = elbo_terms(mdp, sv.policy, temperature=alpha)
    goal = goal_states(mdp)
    success = None
    if goal is not None:
        success = float(policy_state_distribution(mdp, sv.policy)[-1][goal].sum())
    return _BackupResult(
        sv, float((mdp.initial * v0).sum()), float(bound), float(terms.elbo), success,
        float(terms.reward) * alpha,
    )  # fmt: skip


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _header(command: str, mdp: TabularMDP, alpha: float) -> str:
    return (
        f"pgm-control {command}: {mdp.name} (S={mdp.num_states}, A={mdp.num_actions}, "
        f"T={mdp.horizon}, alpha={alpha:g})"
    )


def _v0_label(mdp: TabularMDP) -> str:
    return "V0(s0)" if bool((mdp.initial == 1).any()) else "E_p0[V0(s0)]"


def _write_plot(path: str, mdp: TabularMDP, results: dict[str, _BackupResult], alpha: float):
    from .plotting import plot_values

    fig, axes = _figure(2)
    for ax, (backup, res) in zip(axes, results.items()):
        what = "posterior p(a|s,O)" if backup == "optimistic" else "max-ent policy"
        plot_values(mdp, res.values, ax=ax, title=f"{backup} backup: V0 and {what} at t=0")
    fig.suptitle(f"{mdp.name}, T={mdp.horizon}, alpha={alpha:g}")
    return _save(fig, path)


def _figure(num_panels: int, height: float = 4.6):
    """A bare Figure (no pyplot backend: safe headless and in notebooks) and its Axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * num_panels, height), layout="constrained")
    axes = fig.subplots(1, num_panels, squeeze=False)[0]
    return fig, list(axes)


def _save(fig, path: str) -> str:
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise UsageError(f"cannot write --plot {path!r}: {exc}") from None
    return path


def _problem(args) -> TabularMDP:
    return build_mdp(args.env, horizon=args.horizon, seed=args.seed)


# --------------------------------------------------------------------------- subcommands
def _run_demo(args) -> int:
    from .models import enumerated_log_evidence

    mdp, alpha = _problem(args), args.temperature
    results = {b: _solve(mdp, alpha, b) for b in _BACKUPS}
    log_z = float(log_evidence(mdp, temperature=alpha))
    log_z_enum = float(enumerated_log_evidence(mdp, temperature=alpha))
    elbo_star = float(optimal_elbo(mdp, temperature=alpha))
    agree = math.isclose(log_z, log_z_enum, rel_tol=1e-9, abs_tol=1e-9)
    opt, exp = results["optimistic"], results["expected"]
    v0 = _v0_label(mdp)
    rows = [
        ("quantity", "value", "note"),
        (f"soft {v0}, optimistic backup", _fmt(opt.v0), "exact posterior (backward messages)"),
        (f"soft {v0}, expected backup", _fmt(exp.v0), "structured guide / max-ent RL"),
        ("log p(O), backward messages", _fmt(log_z), "log E_p0 exp(V0/alpha)"),
        (
            "log p(O), Pyro enumeration",
            _fmt(log_z_enum),
            "agrees" if agree else f"DISAGREES by {abs(log_z - log_z_enum):.3g}",
        ),
        ("optimal ELBO*", _fmt(elbo_star), "best structured guide, nats"),
        ("optimism gap log p(O) - ELBO*", _fmt(log_z - elbo_star), "nats, >= 0"),
        ("P(goal at T), expected-backup policy", _fmt(exp.success), "true dynamics, exact"),
        ("P(goal at T), optimistic policy", _fmt(opt.success), "true dynamics, exact"),
    ]
    print(_header("demo", mdp, alpha))
    print(_table(rows))
    if not args.no_plot and args.plot:
        print(f"wrote {_write_plot(args.plot, mdp, results, alpha)}")
    return 0 if agree else 1


def _run_exact(args) -> int:
    mdp, alpha = _problem(args), args.temperature
    results = {b: _solve(mdp, alpha, b) for b in _BACKUPS}
    log_z = float(log_evidence(mdp, temperature=alpha))
    elbo_star = float(optimal_elbo(mdp, temperature=alpha))
    rows = [("backup", _v0_label(mdp), "log p(O)|ELBO*", "ELBO(pi)", "gap", "P(goal)", "E[return]")]
    for backup, res in results.items():
        gap = log_z - res.elbo
        rows.append(
            (backup, _fmt(res.v0), _fmt(res.bound), _fmt(res.elbo), _fmt(gap),
             _fmt(res.success), _fmt(res.expected_return))
        )  # fmt: skip
    print(_header("exact", mdp, alpha))
    print(f"log p(O) = {_fmt(log_z)}  ELBO* = {_fmt(elbo_star)}  gap = {_fmt(log_z - elbo_star)}")
    print(_table(rows))
    print(
        "log p(O)|ELBO*: what the backup's V0 gives, log E_p0 exp(V0/alpha) (optimistic) or "
        "E_p0[V0]/alpha (expected).\nELBO(pi), gap = log p(O) - ELBO(pi) = KL(q || p(tau|O)), "
        "P(goal) and E[return] are for acting with the backup's policy in the true dynamics."
    )
    if args.plot and not args.no_plot:
        print(f"wrote {_write_plot(args.plot, mdp, results, alpha)}")
    return 0


def _register_demo(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="exact inference on FrozenLake (or --env): values, log p(O), ELBO*, optimism",
        description=(
            "Solve the optimality PGM exactly and print: soft V0 at the start under the "
            "optimistic (exact posterior) and expected (structured guide) backups, log p(O) "
            "from backward messages and from Pyro's enumeration, the optimal ELBO, the "
            "optimism gap, and how often each policy reaches the goal in the TRUE dynamics. "
            "Writes a PNG of V0 with policy arrows. Exits with status 1 if the two values of "
            "log p(O) disagree."
        ),
    )
    add_problem_arguments(parser, plot_default=DEFAULT_PLOT)
    parser.set_defaults(func=_run_demo)
    return parser


def _register_exact(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "exact",
        help="table of V0, log p(O) / ELBO*, and the gap per backup",
        description=(
            "For each backup (optimistic = exact posterior, expected = structured variational "
            "guide) print V0 at the start, the bound its values compute, the ELBO of its "
            "policy, the gap log p(O) - ELBO, and its success and return in the true dynamics."
        ),
    )
    add_problem_arguments(parser, plot_default=None)
    parser.set_defaults(func=_run_exact)
    return parser


# --------------------------------------------------------------------------- fit and plan
# fit and plan leave --horizon, --temperature, ... at None and fill them per env from these
# tables (listed in their --help). The continuous settings are benchmarks/mppi_pendulum.py's.
_FIT_DEFAULTS: dict[str, dict] = {
    "tabular": {"horizon": DEFAULT_HORIZON, "temperature": DEFAULT_TEMPERATURE,
                "guide": "tabular_time_varying"},
    "pendulum": {"horizon": 30, "temperature": 1.0, "guide": "gaussian_mlp"},
    "mountain_car": {"horizon": 100, "temperature": 1.0, "guide": "gaussian_mlp"},
}  # fmt: skip
_PLAN_DEFAULTS: dict[str, dict] = {
    "tabular": {"horizon": DEFAULT_HORIZON, "temperature": DEFAULT_TEMPERATURE, "method": "is",
                "num_samples": 10_000},
    "pendulum": {"horizon": 30, "temperature": 1.0, "method": "mppi", "num_samples": 1024,
                 "noise_scale": 1.0, "noise_correlation": 0.95, "iterations": 1, "steps": 200},
    "mountain_car": {"horizon": 100, "temperature": 1.0, "method": "mppi", "num_samples": 1024,
                     "noise_scale": 1.0, "noise_correlation": 0.95, "iterations": 1,
                     "steps": 999},
}  # fmt: skip
# flags that only mean something for continuous envs / for MPPI
_CONTINUOUS_FLAGS = ("noise_scale", "noise_correlation", "iterations", "steps")
_MPPI_FLAGS = ("noise_correlation", "iterations", "steps")

# continuous episodes and IS plans start here: the pendulum hanging at rest (the swing-up),
# the car at rest in the middle of gymnasium's reset range, x ~ U(-0.6, -0.4)
_STARTS = {"pendulum": (math.pi, 0.0), "mountain_car": (-0.5, 0.0)}
_START_NOTES = {"pendulum": "theta=pi, thetadot=0 (hanging at rest)", "mountain_car": "x=-0.5, v=0"}

# action names, keyed by the start of the MDP's name (for the tables only)
_ACTION_NAMES = {
    "FrozenLake": ("left", "down", "right", "up"),
    "CliffWalking": ("up", "right", "down", "left"),
    "Taxi": ("south", "north", "east", "west", "pickup", "dropoff"),
    "chain": ("left", "right"),
    "lottery": ("buy", "keep"),
}


def _env_kind(spec: EnvSpec) -> str:
    return spec.name if spec.name in CONTINUOUS_ENVS else "tabular"


def _fill_defaults(args, table: dict[str, dict]) -> str:
    """Set every option still None to its default for ``args.env``; returns the env's kind."""
    kind = _env_kind(args.env)
    for name, value in table[kind].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return kind


def _defaults_epilog(table: dict[str, dict]) -> str:
    lines = ["defaults per env (override with the flags):"]
    for kind, defaults in table.items():
        # a no-break space keeps each flag with its value when the line wraps
        flags = " ".join(f"--{k.replace('_', '-')}\xa0{v}" for k, v in defaults.items())
        line = f"  {kind + ' envs' if kind == 'tabular' else kind}: {flags}"
        wrapped = textwrap.fill(line, 79, subsequent_indent="      ", break_on_hyphens=False)
        lines.append(wrapped.replace("\xa0", " "))
    return "\n".join(lines)


def _reject(args, flags: tuple[str, ...], why: str) -> None:
    given = [f"--{f.replace('_', '-')}" for f in flags if getattr(args, f) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} {why}")


def _continuous_header(command: str, mdp: ContinuousMDP, alpha: float, what: str) -> str:
    return (
        f"pgm-control {command}: {mdp.name} (state_dim={mdp.state_dim}, "
        f"action_dim={mdp.action_dim}, {what}, alpha={alpha:g})"
    )


def _vector_fmt(x) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in torch.as_tensor(x).reshape(-1)) + "]"


def _action_names(mdp: TabularMDP) -> tuple[str, ...]:
    for prefix, names in _ACTION_NAMES.items():
        if mdp.name.startswith(prefix) and len(names) == mdp.num_actions:
            return names
    return ("",) * mdp.num_actions


@contextlib.contextmanager
def _quiet_degenerate_weights():
    """Hide the IS degeneracy warning: the tables report the ESS themselves."""
    from .importance import WeightDegeneracyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeightDegeneracyWarning)
        yield


def _ess_note(ess: float, num_samples: int) -> str:
    degenerate = ", degenerate: < 1%" if ess < 0.01 * num_samples else ""
    return f"of K={num_samples} ({100 * ess / num_samples:.2g}%{degenerate})"


# ---------------------------------------------------------------- fit
def _fit_names(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(guide names, estimator names) that :func:`~pgm_control.svi.fit` takes for this env."""
    from .continuous_svi import CONTINUOUS_ESTIMATORS
    from .estimators import ESTIMATORS
    from .guides import CONTINUOUS_GUIDES, TABULAR_GUIDES

    if kind == "tabular":
        return tuple(TABULAR_GUIDES), tuple(ESTIMATORS)
    return tuple(CONTINUOUS_GUIDES), tuple(CONTINUOUS_ESTIMATORS)


def _check_fit_names(args, kind: str) -> None:
    what = "tabular" if kind == "tabular" else "continuous"
    for option, name, names, everything in zip(
        ("guide", "estimator"),
        (args.guide, args.estimator),
        _fit_names(kind),
        zip(_fit_names("tabular"), _fit_names("pendulum")),
    ):
        if name is None or name in names:
            continue
        if name in everything[0] + everything[1]:
            other = "continuous" if what == "tabular" else "tabular"
            problem = f"{option} {name!r} is for {other} envs"
        else:
            problem = f"unknown {option} {name!r}"
        raise UsageError(
            f"{problem}; for the {what} env {args.env} choose one of: {', '.join(names)}"
        )


def _continuous_fit_defaults() -> dict:
    # fit() forwards its own None defaults to fit_continuous, which rejects them: use the
    # latter's defaults for whatever the command line leaves unset
    from .continuous_svi import fit_continuous

    params = inspect.signature(fit_continuous).parameters
    return {name: params[name].default for name in ("steps", "num_particles", "optimizer", "lr")}


def _run_fit(args) -> int:
    from .svi import fit

    kind = _fill_defaults(args, _FIT_DEFAULTS)
    _check_fit_names(args, kind)
    problem = build_problem(args.env, horizon=args.horizon, seed=args.seed)
    options = {
        "steps": args.steps, "num_particles": args.num_particles,
        "optimizer": args.optimizer, "lr": args.lr,
    }  # fmt: skip
    if kind != "tabular":
        options = {k: v for k, v in options.items() if v is not None}
        options = {**_continuous_fit_defaults(), **options}
    try:
        res = fit(
            problem, args.guide, estimator=args.estimator, temperature=args.temperature,
            seed=args.seed, progress=not args.no_progress, **options,
        )  # fmt: skip
    except ValueError as exc:  # fit's checks of the options (optimizer/estimator mismatch, ...)
        raise UsageError(str(exc)) from None
    if kind == "tabular":
        _print_tabular_fit(res, problem, args.temperature)
    else:
        _print_continuous_fit(res, problem, args, kind)
    if args.plot and not args.no_plot and len(res.elbo):
        print(f"wrote {_write_fit_plot(args.plot, res, problem, args.temperature)}")
    if res.extra.get("interrupted"):
        print("interrupted: the numbers above are for the guide fitted so far")
        return 130
    return 0


def _fit_settings(res) -> str:
    extra = res.extra
    parts = [f"guide {res.guide_name}", f"estimator {res.estimator}"]
    if extra.get("optimizer"):
        lr = extra.get("lr")
        parts.append(f"optimizer {extra['optimizer']}" + (f" (lr {lr:g})" if lr else ""))
    if extra.get("num_particles"):
        parts.append(f"{extra['num_particles']} particles")
    return ", ".join(parts)


def _print_tabular_fit(res, mdp: TabularMDP, alpha: float) -> None:
    log_z = float(log_evidence(mdp, temperature=alpha))
    exact_estimator = res.estimator in ("exact", "enum")
    goal = goal_states(mdp)
    success = None
    if goal is not None:
        success = float(policy_state_distribution(mdp, res.policy)[-1][goal].sum())
    full = res.guide_name == "full_posterior"
    steps = len(res.elbo)
    converged = " (converged)" if res.extra.get("converged") else ""
    rows = [
        ("quantity", "value", "note"),
        ("final ELBO", _fmt(res.elbo[-1] if steps else None),
         "the estimator's value at the last step" + ("" if exact_estimator else ", noisy")),
        ("exact ELBO of the guide", _fmt(res.exact_elbo), "closed form, after training"),
        ("exact optimum", _fmt(res.optimum),
         "log p(O): the family holds the posterior" if full else "ELBO*, best structured guide"),
        ("gap", _fmt(res.gap), "exact optimum - exact ELBO, nats >= 0"),
        ("log p(O)", _fmt(log_z), "backward messages; log p(O) - ELBO* is the optimism gap"),
        ("P(goal at T)", _fmt(success), "acting with the learned q_t(a|s), true dynamics"),
        ("seconds", f"{res.seconds:.3g}", "optimisation wall-clock"),
        ("steps", str(steps), f"optimiser steps{converged}"),
    ]  # fmt: skip
    print(_header("fit", mdp, alpha))
    print(_fit_settings(res))
    print(_table(rows))


def _print_continuous_fit(res, mdp: ContinuousMDP, args, kind: str) -> None:
    from .envs import evaluate_policy

    steps = len(res.elbo)
    tail = min(10, steps)
    # the real env from the same start as `plan`, deterministic actions, for the trained T steps
    returns = evaluate_policy(
        mdp, lambda state, t: res.guide.act(state, t), episodes=1, seed=args.seed,
        initial_state=_STARTS[kind], steps=mdp.horizon,
    )  # fmt: skip
    rows = [
        ("quantity", "value", "note"),
        ("final ELBO", _fmt(res.elbo[-1] if steps else None), "the last step's estimate, noisy"),
        (f"mean ELBO, last {tail} steps", _fmt(res.elbo[-tail:].mean() if steps else None), ""),
        (f"return in {mdp.gym_id}", _fmt(float(returns[0])),
         f"{mdp.horizon} steps from {_START_NOTES[kind]}, median action"),
        ("seconds", f"{res.seconds:.3g}", "optimisation wall-clock"),
        ("steps", str(steps), "optimiser steps"),
    ]  # fmt: skip
    print(_continuous_header("fit", mdp, args.temperature, f"T={mdp.horizon}"))
    print(_fit_settings(res))
    print(_table(rows))


def _write_fit_plot(path: str, res, problem, alpha: float) -> str:
    from .plotting import plot_elbo, plot_values

    title = f"{res.guide_name} / {res.estimator}"
    if not isinstance(problem, TabularMDP):
        fig, (ax,) = _figure(1)
        plot_elbo(res.elbo, ax=ax, title=title)
        return _save(fig, path)
    full = res.guide_name == "full_posterior"
    # the learned policy beside the one its family is fitting: the exact posterior for the
    # full-posterior guide, the soft-optimal (expected backup) policy for structured guides
    target = soft_value_iteration(
        problem, temperature=alpha, backup="optimistic" if full else "expected"
    )
    # where the target visits: the posterior p(s_t|O), or the true dynamics under its policy
    if full:
        visits = state_marginals(problem, temperature=alpha)
    else:
        visits = policy_state_distribution(problem, target.policy)[:-1]
    fig, (ax_elbo, ax_learned, ax_exact) = _figure(3)
    plot_elbo(res.elbo, res.optimum, ax=ax_elbo, title=title)
    panels = (
        (ax_learned, res.policy, "learned q(a|s), visit-averaged over t"),
        (ax_exact, target.policy, f"exact pi(a|s), {target.backup} backup, same averaging"),
    )
    for ax, policy, caption in panels:
        # the heatmap is the exact soft V0 of the target in both panels
        averaged = _visit_averaged(policy, visits)
        plot_values(problem, target.v[0], policy=averaged, ax=ax, title=caption)
    fig.suptitle(f"{problem.name}, T={problem.horizon}, alpha={alpha:g}")
    return _save(fig, path)


def _visit_averaged(policy: torch.Tensor, visits: torch.Tensor) -> torch.Tensor:
    """q̄(a|s) = Σₜ dₜ(s)·qₜ(a|s) / Σₜ dₜ(s), falling back to q₀ where d is 0 throughout.

    A time-varying policy at (t, s) pairs the MDP never reaches is left at its initial
    values by the fit (the ELBO does not depend on it), so q₀ alone misleads away from s₀.
    """
    total = visits.sum(0)  # (S,)
    averaged = torch.einsum("ts,tsa->sa", visits, policy) / total.clamp_min(1e-300)[:, None]
    return torch.where(total[:, None] > 0, averaged, policy[0])


def _register_fit(subparsers) -> argparse.ArgumentParser:
    from .continuous_svi import CONTINUOUS_ESTIMATORS
    from .estimators import ESTIMATORS
    from .guides import CONTINUOUS_GUIDES, TABULAR_GUIDES

    parser = subparsers.add_parser(
        "fit",
        help="fit a variational guide by SVI (guide and estimator by name); ELBO and gap",
        description=textwrap.fill(
            "Maximise the ELBO of a guide family on the optimality model with pgm_control.fit "
            "and print the final ELBO, the exact optimum of the family and the gap to it "
            "(tabular envs), the seconds and steps taken. On pendulum/mountain_car, the "
            "return of the learned policy in the real gymnasium env.",
            width=79,
        ),
        epilog=_defaults_epilog(_FIT_DEFAULTS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_problem_arguments(
        parser, plot_default=None, continuous=True,
        plot_help="write a PNG of the ELBO curve with the exact optimum and, for tabular "
        "guides, the learned policy beside the exact one",
    )  # fmt: skip
    parser.add_argument(
        "--guide", metavar="NAME", default=None,
        help=f"guide family: {', '.join(TABULAR_GUIDES)} (tabular envs); "
        f"{', '.join(CONTINUOUS_GUIDES)} (continuous envs)",
    )  # fmt: skip
    parser.add_argument(
        "--estimator", metavar="NAME", default=None,
        help=f"ELBO estimator: {', '.join(ESTIMATORS)} (tabular, default exact); "
        f"{', '.join(CONTINUOUS_ESTIMATORS)} (continuous, default reparam)",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=_positive_int, default=None,
        help="optimiser steps (default: pgm_control.fit's, 100 for LBFGS, 1000 otherwise)",
    )  # fmt: skip
    parser.add_argument(
        "--num-particles", type=_positive_int, default=None, metavar="K",
        help="trajectories per ELBO estimate for the Monte-Carlo estimators "
        "(default: 1000 tabular, 64 continuous)",
    )  # fmt: skip
    parser.add_argument(
        "--optimizer", choices=("lbfgs", "adam", "clipped_adam", "sgd"), default=None,
        help="lbfgs (default for exact/enum), adam (default otherwise), sgd; clipped_adam "
        "for continuous envs",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=_positive_float, default=None,
        help="learning rate (default: 1 for LBFGS, 0.05 for Adam on tabular envs, 1e-3 on "
        "continuous ones)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_fit)
    return parser


# ---------------------------------------------------------------- plan
def _run_plan(args) -> int:
    kind = _env_kind(args.env)
    method = args.method or _PLAN_DEFAULTS[kind]["method"]
    if kind == "tabular":
        if method == "mppi":
            raise UsageError("MPPI plans continuous actions: use --env pendulum or mountain_car")
        _reject(args, _CONTINUOUS_FLAGS, "to continuous envs (pendulum, mountain_car) only")
    elif method == "is":
        _reject(args, _MPPI_FLAGS, "to --method mppi only")
    _fill_defaults(args, _PLAN_DEFAULTS)
    problem = build_problem(args.env, horizon=args.horizon, seed=args.seed)
    if kind == "tabular":
        return _plan_tabular(args, problem)
    if method == "is":
        return _plan_continuous_is(args, problem, kind)
    return _plan_mppi(args, problem, kind)


def _plan_tabular(args, mdp: TabularMDP) -> int:
    from .importance import importance_posterior

    alpha, K = args.temperature, args.num_samples
    s_0 = int(torch.argmax(mdp.initial))
    with _quiet_degenerate_weights():
        res = importance_posterior(
            mdp, s_0, horizon=mdp.horizon, num_samples=K, temperature=alpha, seed=args.seed
        )
    exact = soft_value_iteration(mdp, temperature=alpha, backup="optimistic")
    p_is, p_exact = res.first_action, exact.policy[0, s_0]
    names = _action_names(mdp)
    rows = [("a0", "IS p^(a0|s0,O)", "exact p(a0|s0,O)", "IS - exact", "action")]
    for a, name in enumerate(names):
        diff = float(p_is[a] - p_exact[a])
        rows.append(
            (f"a0={a}", _fmt(float(p_is[a])), _fmt(float(p_exact[a])), f"{diff:+.3g}", name)
        )
    if not any(names):
        rows = [row[:-1] for row in rows]
    summary = [
        ("quantity", "value", "note"),
        ("ESS", f"{res.ess:.1f}", _ess_note(res.ess, K)),
        ("log p^(O|s0)", _fmt(res.log_evidence), "IS: logsumexp(log w) - log K"),
        ("log p(O|s0)", _fmt(float(exact.v[0, s_0]) / alpha), "exact: V0(s0)/alpha"),
        ("total variation", _fmt(0.5 * float((p_is - p_exact).abs().sum())),
         "between the IS and the exact p(a0|s0,O)"),
    ]  # fmt: skip
    start = "s0" if bool(mdp.initial[s_0] == 1) else "the most likely s0"
    print(_header("plan", mdp, alpha))
    print(
        f"importance sampling of p(a0:T-1 | {start}={s_0}, O) with K={K} draws of the prior,\n"
        "w = exp(sum r/alpha); exact: the optimistic backward messages"
    )
    print(_table(rows))
    print()
    print(_table(summary))
    if args.plot and not args.no_plot:
        print(f"wrote {_write_is_plot(args.plot, res, mdp, p_exact)}")
    return 0


def _write_is_plot(path: str, res, mdp, p_exact=None) -> str:
    from .plotting import plot_weights

    fig, axes = _figure(1 if p_exact is None else 2)
    plot_weights(res.log_weights, ax=axes[0], title="IS")
    if p_exact is not None:
        actions = np.arange(mdp.num_actions)
        names = [f"{a}\n{n}" for a, n in zip(actions, _action_names(mdp))]
        axes[1].bar(actions - 0.2, res.first_action.numpy(), width=0.4, label="IS estimate")
        axes[1].bar(actions + 0.2, p_exact.numpy(), width=0.4, label="exact (backward messages)")
        axes[1].set_xticks(actions, names)
        axes[1].set_ylabel("p(a0 | s0, O)")
        axes[1].set_title(f"first-action posterior, K={res.num_samples}")
        top = max(float(res.first_action.max()), float(p_exact.max()))
        axes[1].set_ylim(0, 1.3 * top)  # room for the legend above the bars
        axes[1].legend(loc="upper center", ncol=2)
    fig.suptitle(f"{mdp.name}, H={res.plan.shape[0]}, alpha={res.temperature:g}")
    return _save(fig, path)


def _plan_continuous_is(args, mdp: ContinuousMDP, kind: str) -> int:
    import pyro.distributions as dist

    from .importance import importance_posterior

    alpha, K = args.temperature, args.num_samples
    s_0 = torch.tensor(_STARTS[kind], dtype=torch.float64)
    # MPPI's action prior N(0, σ²): this plan is MPPI's first step without a warm start
    sigma = torch.full((mdp.action_dim,), args.noise_scale, dtype=torch.float64)
    prior = dist.Normal(torch.zeros_like(sigma), sigma).to_event(1)
    with _quiet_degenerate_weights():
        res = importance_posterior(
            mdp, s_0, horizon=mdp.horizon, num_samples=K, temperature=alpha, seed=args.seed,
            action_prior=prior,
        )  # fmt: skip
    rows = [
        ("quantity", "value", "note"),
        ("ESS", f"{res.ess:.1f}", _ess_note(res.ess, K)),
        ("log p^(O|s0)", _fmt(res.log_evidence), "IS: logsumexp(log w) - log K"),
        ("E[a0|s0,O]", _vector_fmt(res.first_action), "posterior-mean first action"),
        ("weighted return", _fmt(float(res.weights @ res.returns)), "sum_k w_k R_k, model"),
        ("best return", _fmt(float(res.returns.max())), "best of the K sampled plans, model"),
    ]
    print(_continuous_header("plan", mdp, alpha, f"H={mdp.horizon}"))
    print(
        f"importance sampling of p(a0:H-1 | s0, O) from {_START_NOTES[kind]},\n"
        f"K={K} draws of the prior N(0, {args.noise_scale:g}^2), w = exp(sum r/alpha)"
    )
    print(_table(rows))
    if args.plot and not args.no_plot:
        print(f"wrote {_write_is_plot(args.plot, res, mdp)}")
    return 0


def _plan_mppi(args, mdp: ContinuousMDP, kind: str) -> int:
    import gymnasium as gym
    from tqdm.auto import tqdm

    from .mppi import MPPI, run_episode

    alpha, K = args.temperature, args.num_samples
    controller = MPPI(
        mdp, horizon=mdp.horizon, num_samples=K, temperature=alpha,
        noise_scale=args.noise_scale, iterations=args.iterations, seed=args.seed,
        noise_correlation=args.noise_correlation,
    )  # fmt: skip
    env = gym.make(mdp.gym_id, max_episode_steps=args.steps)
    bar = tqdm(total=args.steps, desc=f"MPPI {mdp.gym_id}", unit="step", leave=False,
               disable=args.no_progress)  # fmt: skip

    def act(state):
        action = controller.act(state)
        bar.update(1)
        return action

    try:
        with _quiet_degenerate_weights():
            episode = run_episode(
                env, act, steps=args.steps, seed=args.seed, mdp=mdp, initial_state=_STARTS[kind]
            )
    finally:
        bar.close()
        env.close()
    ess = np.asarray(controller.ess_history)
    taken = len(episode.rewards)
    rows = [
        ("quantity", "value", "note"),
        ("return", _fmt(episode.total_return), f"sum of {mdp.gym_id}'s rewards"),
        ("steps", str(taken), "the env terminated (goal)" if episode.terminated else ""),
        ("ms per step", f"{episode.ms_per_step:.3g}", "mean wall-clock of one MPPI plan"),
        ("median ESS", f"{np.median(ess):.1f}", _ess_note(float(np.median(ess)), K)),
        ("steps with ESS < 1% of K", f"{100 * np.mean(ess < 0.01 * K):.0f}%",
         "near-greedy plans (low temperature)"),
    ]  # fmt: skip
    if kind == "pendulum":
        theta = float(np.abs(np.mod(episode.states[-1, 0] + math.pi, 2 * math.pi) - math.pi))
        rows.append(("final |theta|", f"{theta:.3g}", "rad, 0 = upright"))
    print(_continuous_header("plan", mdp, alpha, f"H={mdp.horizon}"))
    print(
        f"MPPI in gymnasium's {mdp.gym_id} for up to {args.steps} steps from "
        f"{_START_NOTES[kind]};\nK={K}, sigma={args.noise_scale:g}, "
        f"rho={args.noise_correlation:g}, iterations={args.iterations}"
    )
    print(_table(rows))
    if args.plot and not args.no_plot:
        print(f"wrote {_write_mppi_plot(args.plot, episode, controller, mdp, kind)}")
    return 0


def _write_mppi_plot(path: str, episode, controller, mdp, kind: str) -> str:
    from .plotting import plot_pendulum, plot_weights

    fig, (ax_path, ax_weights) = _figure(2)
    title = f"MPPI, return {episode.total_return:.1f}"
    if kind == "pendulum":
        plot_pendulum(episode.states, ax=ax_path, title=title)
    else:
        ax_path.plot(np.arange(len(episode.states)), episode.states[:, 0], lw=1.2, label="x")
        ax_path.axhline(0.45, color="k", ls="--", lw=0.8, label="goal x = 0.45")
        ax_path.set_xlabel("step")
        ax_path.set_ylabel("position x")
        ax_path.set_title(title)
        ax_path.legend(loc="lower right")
    plot_weights(controller.result.log_weights, ax=ax_weights, title="last plan")
    fig.suptitle(f"{mdp.gym_id}, K={controller.num_samples}, H={controller.horizon}")
    return _save(fig, path)


def _register_plan(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plan",
        help="planning as inference: importance sampling vs the exact posterior, or MPPI",
        description=textwrap.fill(
            "Planning as inference by sampling. Tabular envs: importance sampling of the "
            "posterior over action sequences from the start state, its first-action "
            "posterior beside the exact one from the backward messages, and the effective "
            "sample size. pendulum / mountain_car: MPPI (receding-horizon importance "
            "sampling) run in the real gymnasium env, with its return and ms per step; "
            "--method is makes one importance-sampling plan from the start state instead.",
            width=79,
        ),
        epilog=_defaults_epilog(_PLAN_DEFAULTS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_problem_arguments(
        parser, plot_default=None, continuous=True,
        plot_help="write a PNG of the importance weights (and the first-action posteriors), "
        "or for MPPI the trajectory (pendulum angle, car position) and the last weights",
    )  # fmt: skip
    parser.add_argument(
        "--method", choices=("is", "mppi"), default=None,
        help="is: importance sampling from the start state; mppi: control in gymnasium "
        "(continuous envs). Default: is for tabular envs, mppi for continuous ones",
    )  # fmt: skip
    parser.add_argument(
        "--num-samples", "-K", type=_positive_int, default=None, metavar="K",
        help="sampled action sequences per plan (default: per env)",
    )  # fmt: skip
    parser.add_argument(
        "--noise-scale", "--sigma", type=_positive_float, default=None, metavar="SIGMA",
        help="continuous: σ of the action prior N(0, σ²) and of MPPI's proposal noise",
    )  # fmt: skip
    parser.add_argument(
        "--noise-correlation", "--rho", type=_unit_interval, default=None, metavar="RHO",
        help="MPPI: AR(1) correlation in time of the proposal noise, in [0, 1)",
    )  # fmt: skip
    parser.add_argument(
        "--iterations", type=_positive_int, default=None,
        help="MPPI: importance-sampling rounds per control step",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=_positive_int, default=None, help="MPPI: control steps in the env"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_plan)
    return parser


# name -> function(subparsers) that adds the sub-parser and sets `func`
SUBCOMMANDS: dict[str, Callable[[typing.Any], argparse.ArgumentParser]] = {
    "demo": _register_demo,
    "exact": _register_exact,
    "fit": _register_fit,
    "plan": _register_plan,
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="pgm-control",
        description=textwrap.fill(
            "Reinforcement learning and control as probabilistic inference: an MDP with "
            "optimality variables O, p(O=1|s,a) = exp(r/alpha), solved exactly by message "
            "passing, approximately by variational inference (SVI), or by sampling "
            "(importance sampling, MPPI). Tabular envs: gymnasium's FrozenLake, "
            "CliffWalking, Taxi and built-in lottery/chain/random MDPs; continuous: "
            "pendulum, mountain_car.",
            width=79,
        ),
        epilog=(
            "examples:\n"
            "  pgm-control demo\n"
            "  pgm-control exact --env lottery --horizon 1 --temperature 1\n"
            "  pgm-control fit --guide neural --estimator score --num-particles 500\n"
            "  pgm-control plan --env pendulum --plot swing_up.png\n\n"
            "Run 'pgm-control COMMAND --help' for the options of a command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for register in SUBCOMMANDS.values():
        sub = register(subparsers)
        sub.set_defaults(_parser=sub)  # lets main() report late usage errors on the right usage
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``pgm-control``; returns the exit status (usage errors exit with 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        args._parser.error(str(exc))  # prints usage and the message to stderr, exits 2
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
