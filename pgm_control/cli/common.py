"""What every ``pgm-control`` command shares: argparse number types, tables, headers, PNGs."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
import textwrap
import warnings
from collections.abc import Callable

import torch
from matplotlib.figure import Figure

from ..continuous import ContinuousMDP
from ..importance import WeightDegeneracyWarning
from ..mdp import TabularMDP

__all__ = [
    "UsageError",
    "number_type",
    "positive_int",
    "positive_float",
    "nonnegative_int",
    "unit_interval",
    "add_command",
    "fmt",
    "table",
    "header",
    "continuous_header",
    "vector_fmt",
    "ess_note",
    "save_figure",
    "quiet_degenerate_weights",
    "unrecognized_arguments",
]


class UsageError(Exception):
    """A problem with the command line that argparse could not see (reported with exit 2)."""


# --------------------------------------------------------------------------- argument types
def number_type(cast: Callable[[str], float], accept: Callable, expected: str) -> Callable:
    """An argparse ``type=``: parse with ``cast``, then require ``accept(value)``.

    Args:
        cast: ``int`` or ``float``.
        accept: ``accept(value) -> bool``, the range check.
        expected: what to ask for in the error, e.g. "a positive integer".

    Returns:
        ``parse(text) -> value``, raising ``argparse.ArgumentTypeError`` (usage, exit 2).
    """

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_int = number_type(int, lambda v: v >= 1, "a positive integer")
positive_float = number_type(float, lambda v: v > 0 and math.isfinite(v), "a finite number > 0")
nonnegative_int = number_type(int, lambda v: v >= 0, "an integer >= 0")
unit_interval = number_type(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def add_command(
    subparsers, name: str, *, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """Add a subcommand's parser.

    Without ``epilog`` argparse reflows ``description`` to the terminal; with one (a table of
    defaults laid out line by line) the description is wrapped at 79 columns and both are
    printed as they are.
    """
    if epilog is None:
        return subparsers.add_parser(name, help=help, description=description)
    return subparsers.add_parser(
        name, help=help, description=textwrap.fill(description, width=79), epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def unrecognized_arguments(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """The error for arguments a subcommand does not know, with the closest option it has.

    ``pgm-control exact --temprature 1`` → "unrecognized arguments: --temprature 1 (did you
    mean --temperature?)", to be reported on the subcommand's own usage (``parser.error``).
    """
    options = [o for action in parser._actions for o in action.option_strings]
    hints = []
    for word in extras:
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=0.6)
            hints += close
    message = f"unrecognized arguments: {' '.join(extras)}"
    if hints:
        message += f" (did you mean {' or '.join(hints)}?)"
    return message + f"; see '{parser.prog} --help'"


# --------------------------------------------------------------------------- output
def fmt(x: float | None) -> str:
    """A number for the tables: 6 significant digits, "n/a" for None."""
    return "n/a" if x is None else f"{x:.6g}"


def table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns; the first row is the header, underlined with dashes."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def header(command: str, mdp: TabularMDP, alpha: float) -> str:
    return (
        f"pgm-control {command}: {mdp.name} (S={mdp.num_states}, A={mdp.num_actions}, "
        f"T={mdp.horizon}, alpha={alpha:g})"
    )


def continuous_header(command: str, mdp: ContinuousMDP, alpha: float, what: str) -> str:
    return (
        f"pgm-control {command}: {mdp.name} (state_dim={mdp.state_dim}, "
        f"action_dim={mdp.action_dim}, {what}, alpha={alpha:g})"
    )


def vector_fmt(x) -> str:
    values = torch.as_tensor(x, dtype=torch.float64).reshape(-1)  # floats: not via float32
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


def ess_note(ess: float, num_samples: int) -> str:
    degenerate = ", degenerate: < 1%" if ess < 0.01 * num_samples else ""
    return f"of K={num_samples} ({100 * ess / num_samples:.2g}%{degenerate})"


def save_figure(fig: Figure, path: str) -> str:
    """Write ``fig`` as a PNG; an unwritable ``--plot`` path is a usage error."""
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise UsageError(f"cannot write --plot {path!r}: {exc}") from None
    return path


@contextlib.contextmanager
def quiet_degenerate_weights():
    """Hide the IS degeneracy warning: the tables report the ESS themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeightDegeneracyWarning)
        yield
