"""pgm_control: reinforcement learning and control as probabilistic inference, in Pyro.

The public names below follow the lecture's path (Levine 2018):

1. the MDP and its optimality PGM as a Pyro program (``mdp``, ``continuous``, ``envs``,
   :mod:`pgm_control.models`);
2. exact inference on tabular MDPs: backward messages = soft Q/V and log p(O) (``backward``),
   forward messages and posterior marginals (``forward``), exact posterior samples
   (``sampling``);
3. the fix for optimism: the ELBO of a guide that shares the true dynamics (``elbo``), guides
   (:mod:`pgm_control.guides`, contract in :mod:`pgm_control.guides.contract`), estimators and
   the one SVI loop (``estimators``, ``svi``);
4. acting in the real env (``rollout``), planning as importance sampling (``importance``,
   ``mppi``) and model-based learning (``learning``).

Everything else (private helpers, optimiser classes, thin compatibility wrappers) stays in its
module. Every module imports its siblings by submodule, so the order below is free.
"""

from . import envs, plotting
from .backward import (
    DiscountedSoftValues,
    SoftValues,
    discounted_soft_value_iteration,
    log_evidence,
    optimal_elbo,
    soft_policy_evaluation,
    soft_value_iteration,
)
from .continuous import ContinuousMDP
from .elbo import ElboTerms, elbo_terms, policy_elbo, posterior_kl, trajectory_elbo
from .estimators import ESTIMATORS, exact_elbo
from .fit_result import FitResult
from .forward import (
    log_forward_messages,
    policy_state_distribution,
    posterior_dynamics,
    state_action_marginals,
    state_marginals,
)
from .guides import GUIDES
from .importance import ImportanceResult, WeightDegeneracyWarning, importance_posterior
from .learning import Transitions, collect_transitions, fit_gaussian_dynamics, fit_tabular_model
from .mdp import TabularMDP, chain_mdp, lottery_mdp, random_mdp
from .models import continuous_control_model, control_model, enumerated_log_evidence
from .mppi import MPPI
from .rollout import RolloutResult, rollout
from .sampling import Trajectories, sample_posterior_trajectories, sample_trajectories
from .svi import fit, gradient_variance

# isort: split
# soft actor-critic with a guide as actor, and the entropy-regularised LQR (issue 11)
from .sac import SAC, TwinQ, observation_mdp
from .soft_lqr import LinearQuadraticEnv, SoftLQRSolution, soft_lqr

__version__ = "0.1.0"

__all__ = [
    # 1. the MDP and the optimality PGM
    "TabularMDP",
    "random_mdp",
    "lottery_mdp",
    "chain_mdp",
    "ContinuousMDP",
    "envs",
    "control_model",
    "continuous_control_model",
    # 2. exact inference: backward messages, forward messages, marginals, samples
    "soft_value_iteration",
    "SoftValues",
    "log_evidence",
    "enumerated_log_evidence",
    "soft_policy_evaluation",
    "discounted_soft_value_iteration",
    "DiscountedSoftValues",
    "log_forward_messages",
    "state_marginals",
    "state_action_marginals",
    "posterior_dynamics",
    "sample_posterior_trajectories",
    "sample_trajectories",
    "Trajectories",
    # 3. variational inference: the ELBO, guides, estimators, the SVI loop
    "policy_state_distribution",
    "policy_elbo",
    "elbo_terms",
    "ElboTerms",
    "trajectory_elbo",
    "posterior_kl",
    "optimal_elbo",
    "GUIDES",
    "ESTIMATORS",
    "exact_elbo",
    "fit",
    "FitResult",
    "gradient_variance",
    # 4. acting, planning as inference, model-based learning
    "rollout",
    "RolloutResult",
    "importance_posterior",
    "ImportanceResult",
    "WeightDegeneracyWarning",
    "MPPI",
    "Transitions",
    "collect_transitions",
    "fit_tabular_model",
    "fit_gaussian_dynamics",
    # pictures
    "plotting",
    # soft actor-critic with a guide as actor, and the entropy-regularised LQR (issue 11)
    "SAC",
    "TwinQ",
    "observation_mdp",
    "soft_lqr",
    "SoftLQRSolution",
    "LinearQuadraticEnv",
]
