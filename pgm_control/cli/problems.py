"""The environments ``--env`` names, how they are parsed and built, and the shared flags.

``--env`` takes a gymnasium toy-text id with options after a colon (``4x4``/``8x8`` →
map_name, ``slippery``/``nonslippery`` → is_slippery, ``key=value`` → any other
``gymnasium.make`` keyword), one of the built-in MDPs of :data:`BUILTIN_ENVS` or, for ``fit``
and ``plan``, a continuous-control twin of :data:`CONTINUOUS_ENVS`. Everything a command
shows about an env (goal states, action names, grid) is the MDP's own metadata.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import math
import re
import textwrap
import typing
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from ..continuous import ContinuousMDP
from ..envs import mountain_car_continuous, pendulum
from ..gym_options import check_make_kwargs
from ..mdp import TabularMDP, chain_mdp, lottery_mdp, random_mdp
from ..plotting import plot_mountain_car, plot_pendulum
from .common import UsageError, positive_float, positive_int

__all__ = [
    "DEFAULT_ENV",
    "DEFAULT_HORIZON",
    "DEFAULT_TEMPERATURE",
    "EnvSpec",
    "ContinuousEnv",
    "BUILTIN_ENVS",
    "CONTINUOUS_ENVS",
    "parse_env",
    "build_mdp",
    "build_problem",
    "add_problem_arguments",
    "env_kind",
    "fill_defaults",
    "defaults_epilog",
    "reject",
]

DEFAULT_ENV = "FrozenLake-v1"
DEFAULT_HORIZON = 15
# α = 1 is the library's default everywhere (API and CLI, the lecture's convention); examples
# that need another α, e.g. slippery FrozenLake at 0.1, pass --temperature explicitly.
DEFAULT_TEMPERATURE = 1.0


class EnvSpec(typing.NamedTuple):
    """A parsed ``--env`` value: a gymnasium id or built-in name, and its keyword options."""

    name: str
    options: dict

    def __str__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}:{opts}" if opts else self.name


class ContinuousEnv(typing.NamedTuple):
    """A continuous-control twin of a gymnasium env, as ``fit`` and ``plan`` use it."""

    build: Callable[..., ContinuousMDP]  # build(horizon, **options)
    start: tuple[float, ...]  # the state episodes and importance-sampling plans start from
    start_note: str  # that state in words, for the tables
    plot_states: Callable  # draws a trajectory: a pgm_control.plotting function
    summary: Callable[[np.ndarray], list[tuple[str, str, str]]] | None = None  # final rows


def _pendulum_summary(states: np.ndarray) -> list[tuple[str, str, str]]:
    theta = float(np.abs(np.mod(states[-1, 0] + math.pi, 2 * math.pi) - math.pi))
    return [("final |theta|", f"{theta:.3g}", "rad, 0 = upright")]


# key=value options go to the constructor; the seed only to the random MDP
BUILTIN_ENVS: dict[str, Callable[..., TabularMDP]] = {
    "lottery": lambda horizon, seed, **kw: lottery_mdp(horizon=horizon, **kw),
    "chain": lambda horizon, seed, **kw: chain_mdp(horizon=horizon, **kw),
    "random": lambda horizon, seed, **kw: random_mdp(horizon=horizon, seed=seed, **kw),
}

# the functions behind BUILTIN_ENVS, whose keywords are the valid key=value options
_BUILTIN_CONSTRUCTORS: dict[str, Callable[..., TabularMDP]] = {
    "lottery": lottery_mdp,
    "chain": chain_mdp,
    "random": random_mdp,
}

# Continuous episodes and plans start from the pendulum hanging at rest (the swing-up) and
# from the car at rest in the middle of gymnasium's reset range, x ~ U(-0.6, -0.4).
CONTINUOUS_ENVS: dict[str, ContinuousEnv] = {
    "pendulum": ContinuousEnv(
        pendulum,
        (math.pi, 0.0),
        "theta=pi, thetadot=0 (hanging at rest)",
        plot_pendulum,
        _pendulum_summary,
    ),  # fmt: skip
    "mountain_car": ContinuousEnv(
        mountain_car_continuous, (-0.5, 0.0), "x=-0.5, v=0", plot_mountain_car
    ),
}
_CONTINUOUS_ALIASES = {"Pendulum-v1": "pendulum", "MountainCarContinuous-v0": "mountain_car"}

_GYM_FLAGS = {
    "slippery": ("is_slippery", True),
    "nonslippery": ("is_slippery", False),
    "non-slippery": ("is_slippery", False),
}


# --------------------------------------------------------------------------- parsing
def _literal(text: str):
    """An option's value: a Python literal, a number (``nan``, ``inf`` included), ``true`` /
    ``false`` in any case, else the bare word (``map_name=8x8``)."""
    if text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return float(text)
    except ValueError:
        return text


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
    if builtin:
        _check_builtin_options(name, options)
    else:
        try:
            check_make_kwargs(name, options)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return EnvSpec(name, options)


def _check_builtin_options(name: str, options: dict) -> None:
    """Refuse a ``key=value`` the built-in's constructor does not take, listing those it does."""
    function = _BUILTIN_CONSTRUCTORS.get(name) or CONTINUOUS_ENVS[name].build
    params = inspect.signature(function).parameters
    valid = [k for k, p in params.items() if k not in ("horizon", "seed", "dtype")
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]  # fmt: skip
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{name!r} has no option {unknown[0]!r}; its options are: {', '.join(valid)}"
        )


def _as_spec(spec: EnvSpec | str) -> EnvSpec:
    if isinstance(spec, EnvSpec):
        return spec
    try:
        return parse_env(spec)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None


# --------------------------------------------------------------------------- building
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
        return CONTINUOUS_ENVS[spec.name].build(horizon, **spec.options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot build environment {spec}: {exc}") from None


# --------------------------------------------------------------------------- shared flags
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
            epilog should list the defaults, see :func:`defaults_epilog`).
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
        "--horizon", "-T", type=positive_int,
        default=None if continuous else DEFAULT_HORIZON,
        help=f"number of decisions T (default: {per_env})",
    )  # fmt: skip
    parser.add_argument(
        "--temperature", "--alpha", type=positive_float,
        default=None if continuous else DEFAULT_TEMPERATURE,
        help=f"temperature α > 0, p(O=1|s,a,s') = exp(r/α) (default: {per_env}; the "
        "library's default is 1 everywhere: pass 0.1 for the FrozenLake examples)",
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


# --------------------------------------------------------------------------- per-env defaults
# fit and plan leave --horizon, --temperature, ... at None and fill them per env from a table
# {kind: {option: default}} with kind "tabular" or a key of CONTINUOUS_ENVS.
def env_kind(spec: EnvSpec) -> str:
    """ "tabular", or the key of ``spec`` in :data:`CONTINUOUS_ENVS`."""
    return spec.name if spec.name in CONTINUOUS_ENVS else "tabular"


def fill_defaults(args, defaults: dict[str, dict]) -> str:
    """Set every option still None to its default for ``args.env``; returns the env's kind."""
    kind = env_kind(args.env)
    for name, value in defaults[kind].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return kind


def defaults_epilog(defaults: dict[str, dict]) -> str:
    """The ``--help`` epilog that lists a defaults table, one line per kind of env."""
    lines = ["defaults per env (override with the flags):"]
    for kind, table in defaults.items():
        # a no-break space keeps each flag with its value when the line wraps
        flags = " ".join(f"--{k.replace('_', '-')}\xa0{v}" for k, v in table.items())
        line = f"  {kind + ' envs' if kind == 'tabular' else kind}: {flags}"
        wrapped = textwrap.fill(line, 79, subsequent_indent="      ", break_on_hyphens=False)
        lines.append(wrapped.replace("\xa0", " "))
    return "\n".join(lines)


def reject(args, flags: tuple[str, ...], why: str) -> None:
    """A usage error if any of ``flags`` was given (e.g. MPPI options on a tabular env)."""
    given = [f"--{f.replace('_', '-')}" for f in flags if getattr(args, f) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} {why}")
