"""The ``pgm-control`` command: exact control-as-inference on small MDPs, from the shell.

::

    pgm-control demo                                  # FrozenLake 4x4 slippery, T=15, α=0.1
    pgm-control demo --env CliffWalking-v1:slippery --temperature 1 --plot cliff.png
    pgm-control exact --env lottery --horizon 1 --temperature 1
    pgm-control exact --env FrozenLake-v1:8x8,nonslippery --horizon 30

``--env`` takes a gymnasium toy-text id with options after a colon (``4x4``/``8x8`` → map_name,
``slippery``/``nonslippery`` → is_slippery, ``key=value`` → any other ``gymnasium.make``
keyword), or one of the built-in MDPs ``lottery``, ``chain`` and ``random`` (``key=value``
options go to :func:`~pgm_control.lottery_mdp`, :func:`~pgm_control.chain_mdp`,
:func:`~pgm_control.random_mdp`).

Subcommands live in :data:`SUBCOMMANDS`, a dict from name to a registration function that adds
its sub-parser (use :func:`add_problem_arguments` for the shared flags) and sets ``func`` to a
handler ``func(args) -> int``. A new command (``fit``, ``plan``) is one function and one entry.
"""

from __future__ import annotations

import argparse
import ast
import math
import re
import sys
import typing
from collections.abc import Callable

import torch

from .backward import SoftValues, log_evidence, optimal_elbo, soft_value_iteration
from .elbo import elbo_terms
from .forward import policy_state_distribution
from .mdp import TabularMDP, chain_mdp, lottery_mdp, random_mdp

__all__ = [
    "main",
    "build_parser",
    "SUBCOMMANDS",
    "add_problem_arguments",
    "EnvSpec",
    "parse_env",
    "build_mdp",
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

    NAME is a built-in (``lottery``, ``chain``, ``random``) or a registered gymnasium id.
    Gymnasium options: ``4x4``/``8x8`` (map_name), ``slippery``/``nonslippery``
    (is_slippery), ``key=value``. Built-ins take ``key=value`` only.

    Raises:
        argparse.ArgumentTypeError: unknown name or malformed option.
    """
    name, _, rest = text.strip().partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"empty environment name in {text!r}")
    builtin = name in BUILTIN_ENVS
    if not builtin:
        import gymnasium as gym

        try:
            gym.spec(name)
        except gym.error.Error as exc:
            known = ", ".join(sorted(BUILTIN_ENVS))
            reason = str(exc).rstrip(".")
            raise argparse.ArgumentTypeError(
                f"unknown environment {name!r} ({reason}). Use a gymnasium toy-text id such as "
                f"FrozenLake-v1, CliffWalking-v1 or Taxi-v4, or one of: {known}"
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
    if isinstance(spec, str):
        try:
            spec = parse_env(spec)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(str(exc)) from None
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
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def add_problem_arguments(parser: argparse.ArgumentParser, *, plot_default: str | None) -> None:
    """Add the flags every subcommand shares: --env, --horizon, --temperature, --seed, --plot."""
    parser.add_argument(
        "--env", type=parse_env, default=DEFAULT_ENV, metavar="NAME[:OPTS]",
        help="gymnasium toy-text id with options, e.g. FrozenLake-v1, FrozenLake-v1:8x8, "
        "FrozenLake-v1:nonslippery, CliffWalking-v1:slippery, Taxi-v4; or a built-in: "
        "lottery, chain, random (options key=value). Default: %(default)s (4x4, slippery)",
    )  # fmt: skip
    parser.add_argument(
        "--horizon", "-T", type=_positive_int, default=DEFAULT_HORIZON,
        help="number of decisions T (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--temperature", "--alpha", type=_positive_float, default=DEFAULT_TEMPERATURE,
        help="temperature α > 0, p(O=1|s,a,s') = exp(r/α) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the random MDP (default: %(default)s)"
    )
    parser.add_argument(
        "--plot", metavar="PATH", default=plot_default,
        help="write a PNG of V0 with policy arrows for both backups"
        + (" (default: %(default)s)" if plot_default else " (default: no plot)"),
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
    # a bare Figure needs no pyplot backend: safe headless and when main() runs in a notebook
    from matplotlib.figure import Figure

    from .plotting import plot_values

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    for ax, (backup, res) in zip(fig.subplots(1, 2), results.items()):
        what = "posterior p(a|s,O)" if backup == "optimistic" else "max-ent policy"
        plot_values(mdp, res.values, ax=ax, title=f"{backup} backup: V0 and {what} at t=0")
    fig.suptitle(f"{mdp.name}, T={mdp.horizon}, alpha={alpha:g}")
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


# name -> function(subparsers) that adds the sub-parser and sets `func`; add `fit`/`plan` here
SUBCOMMANDS: dict[str, Callable[[typing.Any], argparse.ArgumentParser]] = {
    "demo": _register_demo,
    "exact": _register_exact,
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="pgm-control",
        description=(
            "Reinforcement learning and control as probabilistic inference: exact message "
            "passing on small tabular MDPs (FrozenLake, CliffWalking, Taxi, a lottery, ...)."
        ),
        epilog="Run 'pgm-control COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
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
