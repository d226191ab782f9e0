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
   ``mppi``) and model-based learning (``learning``);
5. exact inference at scale and of every type: sparse dynamics (``dynamics``), the
   ``gridworld``, the O(S·T + nnz) route (``lean_posterior``) and the five backups compared
   (``inference_types``);
6. algorithms derived from the ELBO that learn from ``env.step`` alone (``algorithm``, the
   shared SB3-style base): soft Q-learning, soft DQN, the soft policy gradient, KL-regularised
   policy iteration and AWR, soft actor-critic (whose actor is a guide) and its exact check
   (``soft_lqr``);
7. inverse RL: MaxEnt IRL by the messages, guided cost learning, adversarial IRL.

Everything else (private helpers, optimiser classes, thin compatibility wrappers) stays in its
module. Every module imports its siblings by submodule, so the order below is free.
"""

from . import envs, plotting
from .adversarial_irl import adversarial_irl
from .awr import AWR
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
from .demonstrations import Demonstrations, sample_demonstrations
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
from .gridworld import gridworld
from .guided_cost_learning import guided_cost_learning, importance_log_partition
from .guides import GUIDES
from .importance import ImportanceResult, WeightDegeneracyWarning, importance_posterior
from .inference_types import INFERENCE_TYPES, inference_type_returns, slippery_cliff_mdp
from .irl_result import IRLResult
from .kl_regularised_policy_iteration import (
    KLPolicyIterationResult,
    kl_regularised_policy_iteration,
)
from .lean_posterior import LeanPosterior, lean_posterior, soft_policy_at
from .learning import Transitions, collect_transitions, fit_gaussian_dynamics, fit_tabular_model
from .maxent_irl import maxent_irl
from .mdp import TabularMDP, chain_mdp, lottery_mdp, random_mdp
from .models import continuous_control_model, control_model, enumerated_log_evidence
from .mppi import MPPI
from .reward_models import LinearReward, RewardWrapper, TabularReward
from .rollout import RolloutResult, rollout
from .sac import SAC, observation_mdp
from .sac_critics import TwinQ, TwinQuadraticQ
from .sampling import Trajectories, sample_posterior_trajectories, sample_trajectories
from .soft_dqn import SoftDQN
from .soft_lqr import (
    LinearQuadraticEnv,
    SoftLQRComparison,
    SoftLQRSolution,
    compare_with_soft_lqr,
    soft_lqr,
)
from .soft_policy_gradient import (
    SoftPolicyGradientResult,
    occupancy_weighted_kl,
    soft_policy_gradient,
)
from .soft_q_learning import SoftQLearning, reachable_states
from .svi import fit, gradient_variance
from .tabular_env import TabularEnv

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
    # exact inference at scale: sparse dynamics, the gridworld, O(S·T + nnz) memory
    "gridworld",
    "lean_posterior",
    "LeanPosterior",
    "soft_policy_at",
    # what type of inference is planning (issue 13)
    "INFERENCE_TYPES",
    "inference_type_returns",
    "slippery_cliff_mdp",
    # inverse RL: demonstrations, MaxEnt IRL, the IRL result
    "maxent_irl",
    "Demonstrations",
    "sample_demonstrations",
    "IRLResult",
    # inverse RL from env.step: guided cost learning, adversarial IRL, learned reward models
    "guided_cost_learning",
    "importance_log_partition",
    "adversarial_irl",
    "TabularReward",
    "LinearReward",
    "RewardWrapper",
    # learning from samples, part 1 (issue 10)
    "SoftQLearning",
    "reachable_states",
    "soft_policy_gradient",
    "SoftPolicyGradientResult",
    "occupancy_weighted_kl",
    "kl_regularised_policy_iteration",
    "KLPolicyIterationResult",
    "TabularEnv",
    # learning from samples, neural (issue 10): soft DQN and AWR
    "SoftDQN",
    "AWR",
    # soft actor-critic with a guide as actor, and the entropy-regularised LQR (issue 11)
    "SAC",
    "TwinQ",
    "observation_mdp",
    "soft_lqr",
    "SoftLQRSolution",
    "LinearQuadraticEnv",
    # SAC against the closed-form soft LQR (issue 11, the exact check)
    "SoftLQRComparison",
    "compare_with_soft_lqr",
    "TwinQuadraticQ",
]
