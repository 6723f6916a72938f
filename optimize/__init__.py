"""Pulse shaping: gradient optimisers, the reinforcement-learning baseline, comparisons."""

from chiraljax._pulses import (  # the pulses of shaped drives live with the other pulses
    Chebyshev,
    CubicSpline,
    Fourier,
    GaussianAbsorption,
    GaussianEmission,
    PiecewiseConstant,
    Shaped,
    TimeReversed,
)

from ._compare import batch_reward, compare, plot_comparison, sim_to_real, write_json
from ._gradient import (
    GradientConfig,
    GradientHistory,
    GradientResult,
    GradientStep,
    ObjectiveError,
    gradient_optimize,
    measure_cost_ratio,
    value_and_grad,
)
from ._objectives import (
    AbsorptionEfficiency,
    AbstractMetric,
    AbstractObjective,
    AbstractPenalty,
    AmplitudeLimit,
    Directionality,
    Objective,
    ParameterNorm,
    Population,
    Smoothness,
    TransferEfficiency,
    WFidelity,
    sample_ensemble,
)
from ._parameterize import AbstractParameterization, AnalyticParameterization, BasisParameterization, Controls
from ._ppo import (
    PPO_SETTINGS,
    PPOConfig,
    PPOEpoch,
    PPOHistory,
    PPOPolicy,
    PPOResult,
    PPOState,
    RewardError,
    load_ppo_state,
    ppo_init,
    ppo_optimize,
    save_ppo_state,
)
from ._problems import PROBLEMS, Problem, get_problem, transfer_network
from ._receiver import FrequencyCorrected, ReceiverObjective, receiver_controls
from ._run import METHODS, run_optimize
