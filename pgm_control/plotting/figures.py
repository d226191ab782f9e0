"""Multi-panel figures built from the single panels (the ``pgm-control`` command's PNGs).

They draw on a bare :class:`matplotlib.figure.Figure`, without pyplot, so they are safe
headless and never open a window; save them with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..backward import SoftValues
from ..mdp import TabularMDP, _check_mdp
from ..validation import check_callable
from ._inputs import _to_numpy
from .maps import plot_values
from .traces import plot_elbo, plot_pendulum, plot_weights

__all__ = ["plot_backups", "plot_importance_sampling", "plot_fit", "plot_control_episode"]


def _panels(num_panels: int, height: float = 4.6) -> tuple[Figure, list[Axes]]:
    """A bare Figure (no pyplot: safe headless and in notebooks) with panels in one row."""
    fig = Figure(figsize=(5.5 * num_panels, height), layout="constrained")
    return fig, list(fig.subplots(1, num_panels, squeeze=False)[0])


def plot_backups(
    mdp: TabularMDP, soft_values: Mapping[str, SoftValues], *, temperature: float
) -> Figure:
    """V₀ and π₀ of each backup side by side, e.g. the exact posterior beside the max-ent policy.

    The optimistic backup Vₜ(s) = α·log Σₐ p(a|s)·E[exp(r/α + Vₜ₊₁(s')/α)] gives the posterior
    p(a|s,O); the expected one, with E inside the exponent, the optimal structured guide
    (Levine 2018, eqs. 9 and 21).

    Args:
        mdp: the :class:`~pgm_control.TabularMDP`.
        soft_values: backup name → :class:`~pgm_control.SoftValues`, e.g.
            ``{b: soft_value_iteration(mdp, temperature=α, backup=b) for b in ("optimistic",
            "expected")}``; one panel each.
        temperature: α, for the title.

    Returns:
        The Figure.
    """
    if not soft_values:
        raise ValueError("`soft_values` is empty: pass at least one backup's SoftValues")
    fig, axes = _panels(len(soft_values))
    for ax, (backup, values) in zip(axes, soft_values.items()):
        what = "posterior p(a|s,O)" if backup == "optimistic" else "max-ent policy"
        plot_values(mdp, values, ax=ax, title=f"{backup} backup: V0 and {what} at t=0")
    fig.suptitle(f"{mdp.name}, T={mdp.horizon}, alpha={temperature:g}")
    return fig


def plot_importance_sampling(result, mdp, exact_first_action=None) -> Figure:
    """The importance weights of a plan and, given the exact posterior, p(a₀|s₀,O) both ways.

    Args:
        result: an :class:`~pgm_control.importance.ImportanceResult` (its ``log_weights``,
            ``first_action``, ``plan``, ``num_samples``, ``temperature``).
        mdp: the MDP it planned in (a TabularMDP or ContinuousMDP), for the title and, tabular,
            the action names on the bars.
        exact_first_action: the exact p(a₀|s₀,O), shape (A,) (e.g. ``soft_value_iteration(
            mdp, backup="optimistic").policy[0, s0]``); None draws the weights only.

    Returns:
        The Figure.
    """
    fig, axes = _panels(1 if exact_first_action is None else 2)
    plot_weights(result.log_weights, ax=axes[0], title="IS")
    if exact_first_action is not None:
        p_is = _to_numpy("result.first_action", result.first_action, ndim=1)
        p_exact = _to_numpy("exact_first_action", exact_first_action, ndim=1)
        if p_exact.shape != p_is.shape:
            raise ValueError(
                f"`exact_first_action` must have shape (A,) = {p_is.shape}, got {p_exact.shape}"
            )
        actions = np.arange(p_is.size)
        names = _check_mdp(mdp).action_names
        ticks = [f"{a}\n{names[a]}" if names else str(a) for a in actions]
        axes[1].bar(actions - 0.2, p_is, width=0.4, label="IS estimate")
        axes[1].bar(actions + 0.2, p_exact, width=0.4, label="exact (backward messages)")
        axes[1].set_xticks(actions, ticks)
        axes[1].set_ylabel("p(a0 | s0, O)")
        axes[1].set_title(f"first-action posterior, K={result.num_samples}")
        axes[1].set_ylim(0, 1.3 * max(p_is.max(), p_exact.max()))  # room for the legend
        axes[1].legend(loc="upper center", ncol=2)
    fig.suptitle(f"{mdp.name}, H={result.plan.shape[0]}, alpha={result.temperature:g}")
    return fig


def plot_fit(
    elbo,
    optimum=None,
    *,
    mdp: TabularMDP | None = None,
    values=None,
    policies: Mapping[str, object] | None = None,
    title: str | None = None,
    suptitle: str | None = None,
) -> Figure:
    """An SVI run: its ELBO trace beside one value map per policy (learned and exact, say).

    Args:
        elbo: the ELBO per optimiser step (N,), e.g. ``FitResult.elbo``.
        optimum: the exact optimum of the guide family, drawn dashed (see :func:`plot_elbo`).
        mdp: the :class:`~pgm_control.TabularMDP`, needed with ``policies``.
        values: V(s) (S,), the heatmap of every policy panel.
        policies: caption → π(a|s) (S, A); one :func:`plot_values` panel each.
        title: title of the ELBO panel.
        suptitle: figure title.

    Returns:
        The Figure.
    """
    policies = dict(policies or {})
    if policies and (mdp is None or values is None):
        raise ValueError("`policies` need the `mdp` and the `values` to draw them on")
    fig, (ax_elbo, *axes) = _panels(1 + len(policies))
    plot_elbo(elbo, optimum, ax=ax_elbo, title=title)
    for ax, (caption, policy) in zip(axes, policies.items()):
        plot_values(mdp, values, policy=policy, ax=ax, title=caption)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


def plot_control_episode(
    states,
    log_weights,
    *,
    plot_states: Callable[..., Axes] = plot_pendulum,
    title: str | None = None,
    suptitle: str | None = None,
) -> Figure:
    """A control episode (e.g. MPPI in gymnasium): its trajectory beside the last weights.

    Args:
        states: the visited states, as ``plot_states`` takes them.
        log_weights: the importance log-weights of the last plan (N,).
        plot_states: draws the trajectory on an ``ax``: :func:`plot_pendulum` (default) or
            :func:`plot_mountain_car`.
        title: title of the trajectory panel.
        suptitle: figure title.

    Returns:
        The Figure.
    """
    check_callable("plot_states", plot_states, "plot_states(states, ax=, title=)", optional=False)
    fig, (ax_path, ax_weights) = _panels(2)
    plot_states(states, ax=ax_path, title=title)
    plot_weights(log_weights, ax=ax_weights, title="last plan")
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig
