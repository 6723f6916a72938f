"""The gradient and PPO drivers return one result vocabulary (`OptimizeResult`); the names each
result had before read the same values.

Both runs are tiny (3 parameters; PPO with the batch size of test_ppo.py, so its policy update
is compiled once for both files).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax  # noqa: F401  (float64)
from chiraljax.optimize import (
    GradientConfig,
    GradientResult,
    OptimizeResult,
    PPOConfig,
    PPOResult,
    gradient_optimize,
    ppo_optimize,
)
from chiraljax.optimize._compare import result_record

X0 = np.array([0.2, -0.1, 0.5])
COMMON = ("best_x", "best_value", "final_x", "history", "evaluations", "iterations", "stop_reason")
OLDER = {
    GradientResult: {"best_score": "best_value", "x": "final_x", "steps": "iterations"},
    PPOResult: {"best_reward": "best_value", "mean_x": "final_x", "epochs": "iterations"},
}


def peak(x):
    """exp(-|x|^2 / 2) of one point (P,) or a batch (B, P)."""
    return jnp.exp(-0.5 * jnp.sum(x**2, axis=-1))


@pytest.fixture(scope="module")
def results() -> tuple[GradientResult, PPOResult]:
    grad = gradient_optimize(peak, X0, GradientConfig(method="adam", max_steps=3, patience=None))
    ppo = ppo_optimize(peak, X0, 0.5, PPOConfig(epochs=2, batch_size=10), jax.random.key(0))
    return grad, ppo


def test_both_results_answer_the_common_names_and_the_older_ones(results):
    grad, ppo = results
    for result in (grad, ppo):
        assert isinstance(result, OptimizeResult)
        assert tuple(f.name for f in dataclasses.fields(result))[: len(COMMON)] == COMMON
        assert np.shape(result.best_x) == np.shape(result.final_x) == X0.shape
        for older, name in OLDER[type(result)].items():
            assert getattr(result, older) is getattr(result, name)
            assert getattr(type(result), older).__doc__ == f"The older name of `{name}`."
            with pytest.raises(AttributeError):
                setattr(result, older, None)
        # The reports read the common names.
        record = result_record(result)
        assert record["final_best"] == result.best_value
        assert record["total_evaluations"] == result.evaluations
        assert record["stop_reason"] == result.stop_reason
        np.testing.assert_array_equal(record["best_x"], np.asarray(result.best_x))

    assert (grad.iterations, grad.evaluations, grad.stop_reason) == (3, 3, "max_steps")
    assert grad.best_value == float(np.max(grad.history.score)) == grad.history.best_score[-1]
    assert (ppo.iterations, ppo.evaluations, ppo.stop_reason) == (2, 2 * 11, "epochs")
    assert ppo.best_value == ppo.history.best_reward[-1] >= float(np.nanmax(ppo.history.mean_reward))
