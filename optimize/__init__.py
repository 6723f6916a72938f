"""Pulse shaping: gradient optimisers, the reinforcement-learning baseline, comparisons."""

from ._ppo import (
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
