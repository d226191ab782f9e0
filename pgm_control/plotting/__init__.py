"""Figures for the objects of the lecture: value maps, posterior marginals, ELBO curves.

Single panels, each drawn on the ``ax`` it is given (or on a new figure); they return the Axes:

* :func:`plot_values` — V(s) as a heatmap on the MDP's grid, with the policy drawn as arrows
  whose length is the action's probability.
* :func:`plot_marginals` — p(sₜ | O) as a states × time heatmap.
* :func:`plot_elbo` — an ELBO trace with the exact optimum (and log p(O)) as reference lines.
* :func:`plot_weights` — a histogram of importance weights, with the effective sample size.
* :func:`plot_pendulum` — pendulum angle against time.
* :func:`plot_mountain_car` — the car's position against time, with the goal.
* :func:`learning_curve` — a sample-based learner's curve beside the exact answer.

Multi-panel figures (the ``pgm-control`` command's PNGs); they return the Figure:

* :func:`plot_marginals_on_grid` — state marginals as small multiples on the grid.
* :func:`plot_backups` — V₀ and π₀ of each backup (optimistic = posterior, expected = guide).
* :func:`plot_importance_sampling` — importance weights and the first-action posterior beside
  the exact one.
* :func:`plot_fit` — an SVI run's ELBO trace, and the learned policy beside the exact one.
* :func:`plot_control_episode` — a control episode's trajectory and the last plan's weights.

Nothing here guesses from an MDP's name: goal cells, action names and the action arrows come
from the :class:`~pgm_control.TabularMDP` metadata (``goal_states``, ``action_names``,
``action_moves``), and MDPs without it get generic labels a0..a(A-1) and no arrows. No
function calls ``plt.show`` (the figures of ``figures.py`` do not even touch pyplot), so
everything works under the Agg backend in scripts and tests as well as inline in notebooks.
Inputs may be torch tensors or numpy arrays; a wrong shape raises a ``ValueError`` that names
the argument.

Modules: ``maps`` (drawn on the MDP's state layout), ``traces`` (curves against time or
steps), ``figures`` (multi-panel figures built from those).
"""

from .figures import plot_backups, plot_control_episode, plot_fit, plot_importance_sampling
from .learning import learning_curve  # learning from samples (issue 10)
from .maps import action_labels, plot_marginals, plot_marginals_on_grid, plot_values
from .traces import plot_elbo, plot_mountain_car, plot_pendulum, plot_weights

__all__ = [
    "plot_values",
    "plot_marginals",
    "plot_marginals_on_grid",
    "plot_elbo",
    "plot_weights",
    "plot_pendulum",
    "plot_mountain_car",
    "plot_backups",
    "plot_importance_sampling",
    "plot_fit",
    "plot_control_episode",
    "action_labels",
    # learning from samples (issue 10)
    "learning_curve",
]
