"""The ``pgm-control`` command: control as inference on small MDPs, from the shell.

::

    pgm-control demo --temperature 0.1                # FrozenLake 4x4 slippery, T=15, α=0.1
    pgm-control demo --env CliffWalking-v1:slippery --temperature 1 --plot cliff.png
    pgm-control exact --env lottery --horizon 1 --temperature 1
    pgm-control exact --env FrozenLake-v1:8x8,nonslippery --horizon 30
    pgm-control fit --guide neural --estimator rao_blackwell --num-particles 500 --plot fit.png
    pgm-control fit --env pendulum --guide gaussian_mlp --steps 300 --lr 0.01
    pgm-control plan --num-samples 20000 --plot weights.png        # IS vs the exact posterior
    pgm-control plan --env pendulum --plot swing_up.png             # MPPI in gymnasium
    pgm-control irl --method gcl --env FrozenLake-v1 --horizon 20 --temperature 0.05

``--env`` takes a gymnasium toy-text id with options after a colon (``4x4``/``8x8`` → map_name,
``slippery``/``nonslippery`` → is_slippery, ``key=value`` → any other ``gymnasium.make``
keyword), or one of the built-in MDPs ``lottery``, ``chain`` and ``random`` (``key=value``
options go to :func:`~pgm_control.lottery_mdp`, :func:`~pgm_control.chain_mdp`,
:func:`~pgm_control.random_mdp`). ``fit`` and ``plan`` also take the continuous-control twins
``pendulum`` and ``mountain_car`` (:mod:`pgm_control.envs`; ``Pendulum-v1`` and
``MountainCarContinuous-v0`` name the same).

Modules: ``problems`` (the env list, ``--env`` parsing, the shared flags), ``common``
(argparse number types, tables, saving PNGs), and one module per subcommand (``demo``,
``exact``, ``fit``, ``plan``) with its printing; the figures come from
:mod:`pgm_control.plotting`. Subcommands live in :data:`SUBCOMMANDS`, a dict from name to a
registration function that adds its sub-parser (use :func:`add_problem_arguments` for the
shared flags) and sets ``func`` to a handler ``func(args) -> int``. A new command is one
function and one entry.
"""

from __future__ import annotations

import argparse
import textwrap
import typing
from collections.abc import Callable

from .. import __version__
from . import demo, exact, fit, irl, learn, plan, sac
from .common import UsageError, unrecognized_arguments
from .problems import EnvSpec, add_problem_arguments, build_mdp, build_problem, parse_env

__all__ = [
    "main",
    "build_parser",
    "SUBCOMMANDS",
    "add_problem_arguments",
    "EnvSpec",
    "parse_env",
    "build_mdp",
    "build_problem",
    "UsageError",
]

# name -> function(subparsers) that adds the sub-parser and sets `func`
SUBCOMMANDS: dict[str, Callable[[typing.Any], argparse.ArgumentParser]] = {
    "demo": demo.register,
    "exact": exact.register,
    "fit": fit.register,
    "plan": plan.register,
    "irl": irl.register,
    "learn": learn.register,
    "sac": sac.register,
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with one sub-parser per entry of :data:`SUBCOMMANDS`."""
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
            "  pgm-control demo --temperature 0.1    (the default temperature is 1)\n"
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
    args, extras = parser.parse_known_args(argv)
    if extras:  # a misspelt option: the subcommand's usage and the closest option it has
        args._parser.error(unrecognized_arguments(args._parser, extras))
    try:
        return int(args.func(args))
    except UsageError as exc:
        args._parser.error(str(exc))  # prints usage and the message to stderr, exits 2
    return 2  # pragma: no cover
