"""Pulse shaping: gradient optimisers, the reinforcement-learning baseline, comparisons."""

from chiraljax.network._pulses import (  # the pulses of shaped drives live with the other pulses
    Chebyshev,
    CubicSpline,
    Fourier,
    GaussianAbsorption,
    GaussianEmission,
    PiecewiseConstant,
    Shaped,
    TimeReversed,
)

from ._awg import AWG, DriveLine, Waveform, load_waveform, save_waveform
from ._calibrate import CalibrationData, FitResult, fit_device, probe_experiments
from ._compare import batch_reward, compare, plot_comparison, sim_to_real, write_json
from ._device import (
    PRIOR,
    AbstractDevice,
    CallbackDevice,
    DeviceError,
    DeviceModel,
    DeviceParameters,
    SimulatedDevice,
    draw_device,
)
from ._device_methods import (
    DeviceRun,
    ModelBasedSettings,
    cmaes_on_device,
    model_based_on_device,
    nelder_mead_on_device,
    ppo_on_device,
)
from ._device_study import STUDY_METHODS, device_study
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
from ._results import OptimizeResult
from ._run import METHODS, run_optimize
