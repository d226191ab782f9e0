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
from .continuous import ContinuousMDP
from .elbo import ElboTerms, elbo_terms, policy_elbo, posterior_kl, trajectory_elbo
from .fit_result import FitResult
from .forward import (
    log_forward_messages,
    policy_state_distribution,
    posterior_dynamics,
    state_action_marginals,
    state_marginals,
)
from .importance import ImportanceResult, WeightDegeneracyWarning, importance_posterior
from .learning import (
    GaussianDynamics,
    GaussianDynamicsFit,
    Transitions,
    collect_transitions,
    evaluate_tabular_policy,
    fit_gaussian_dynamics,
    fit_tabular_model,
    tabular_dynamics_model,
)
from .mdp import TabularMDP, chain_mdp, lottery_mdp, random_mdp
from .mppi import MPPI, Episode, run_episode
from .sampling import Trajectories, sample_posterior_trajectories, sample_trajectories

from . import envs, plotting  # noqa: E402  isort: skip

# models and guides import the core above; import them last so the package is initialised first
from .models import continuous_control_model, control_model, enumerated_log_evidence  # noqa: E402  isort: skip
from .estimators import ESTIMATORS, make_estimator  # noqa: E402  isort: skip
from .svi import fit, gradient_variance, GradientStats  # noqa: E402  isort: skip
from .continuous_svi import CONTINUOUS_ESTIMATORS, fit_continuous  # noqa: E402  isort: skip
from .envs import evaluate_policy  # noqa: E402  isort: skip
from .rollout import RolloutResult, rollout  # noqa: E402  isort: skip
from .guides import GUIDES  # noqa: E402  isort: skip

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
    "trajectory_elbo",
    "Trajectories",
    "sample_posterior_trajectories",
    "sample_trajectories",
    "control_model",
    "enumerated_log_evidence",
    "continuous_control_model",
    "ContinuousMDP",
    "envs",
    "plotting",
    # variational inference (guides, estimators, the SVI driver)
    "GUIDES",
    "ESTIMATORS",
    "make_estimator",
    "fit",
    "fit_continuous",
    "CONTINUOUS_ESTIMATORS",
    "evaluate_policy",
    "FitResult",
    "gradient_variance",
    "GradientStats",
    "rollout",
    "RolloutResult",
    # planning as inference
    "importance_posterior",
    "ImportanceResult",
    "WeightDegeneracyWarning",
    "MPPI",
    "Episode",
    "run_episode",
    # model-based: learn the model, then plan in it
    "Transitions",
    "collect_transitions",
    "tabular_dynamics_model",
    "fit_tabular_model",
    "evaluate_tabular_policy",
    "GaussianDynamics",
    "GaussianDynamicsFit",
    "fit_gaussian_dynamics",
]
