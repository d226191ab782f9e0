"""pgm_control: reinforcement learning and control as probabilistic inference, in Pyro.

The math lives in small files named after the lecture's concepts:
``mdp`` (the tabular MDP), ``backward`` (soft Q/V, log p(O)), ``forward`` (forward messages,
posterior marginals), ``elbo`` (the structured guide's analytic ELBO), ``sampling`` (exact
posterior trajectories). Pyro models live in :mod:`pgm_control.models`, guides in
:mod:`pgm_control.guides`.
"""

from .backward import (
    DiscountedSoftValues,
    SoftValues,
    discounted_soft_value_iteration,
    log_evidence,
    optimal_elbo,
    soft_value_iteration,
)
from .elbo import ElboTerms, elbo_terms, policy_elbo, posterior_kl
from .forward import (
    log_forward_messages,
    policy_state_distribution,
    posterior_dynamics,
    state_action_marginals,
    state_marginals,
)
from .mdp import TabularMDP, chain_mdp, lottery_mdp, random_mdp
from .sampling import Trajectories, sample_posterior_trajectories, sample_trajectories

from . import plotting  # noqa: E402  isort: skip

# models import the core above; import them last so the package is initialised first
from .models import control_model, enumerated_log_evidence  # noqa: E402  isort: skip

__version__ = "0.1.0"

__all__ = [
    "TabularMDP",
    "random_mdp",
    "lottery_mdp",
    "chain_mdp",
    "soft_value_iteration",
    "SoftValues",
    "log_evidence",
    "optimal_elbo",
    "discounted_soft_value_iteration",
    "DiscountedSoftValues",
    "log_forward_messages",
    "state_marginals",
    "state_action_marginals",
    "posterior_dynamics",
    "policy_state_distribution",
    "policy_elbo",
    "elbo_terms",
    "ElboTerms",
    "posterior_kl",
    "Trajectories",
    "sample_posterior_trajectories",
    "sample_trajectories",
    "control_model",
    "enumerated_log_evidence",
    "plotting",
]
