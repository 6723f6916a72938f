"""Tests of the PPO reinforcement-learning baseline (chiraljax.optimize.ppo_optimize).

All runs share one problem size and batch size, so the policy update is compiled once for
the plain configuration and once for the shot-noise configuration.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax  # noqa: F401  (float64)
from chiraljax import ValidationError
from chiraljax.optimize import PPOConfig, RewardError, ppo_optimize

X0 = np.array([0.2, -0.1, 0.5])
SCALE = np.array([0.5, 0.2, 1.0])
# The optimum sits 1 to 2 action units (scales) away from the baseline pulse in every direction.
OFFSET = np.array([1.5, -1.0, 2.0])
TARGET = X0 + SCALE * OFFSET
CONFIG = PPOConfig(epochs=30, batch_size=10)
EPOCH_COST = CONFIG.batch_size + 1  # candidates plus the policy mean


@jax.jit
def reward(x):
    """exp(-|(x - x*) / scale|^2 / 2): a smooth peak of height 1 at x*."""
    return jnp.exp(-0.5 * jnp.sum(((x - TARGET) / SCALE) ** 2, axis=-1))


class CountingReward:
    """The reward above, counting evaluated rows and optionally failing on one call."""

    def __init__(self, fail_on_call=None, failure=None):
        self.rows = 0
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.failure = failure

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.fail_on_call:
            if isinstance(self.failure, BaseException):
                raise self.failure
            return self.failure(reward(x))
        self.rows += x.shape[0]
        return reward(x)


def assert_same_run(a, b):
    np.testing.assert_array_equal(np.asarray(a.best_x), np.asarray(b.best_x))
    assert a.best_reward == b.best_reward
    assert a.evaluations == b.evaluations and a.epochs == b.epochs
    for name in ("evaluations", "best_reward", "batch_reward", "measured_reward", "std"):
        np.testing.assert_array_equal(getattr(a.history, name), getattr(b.history, name))
    np.testing.assert_array_equal(a.history.mean_reward, b.history.mean_reward)
    for la, lb in zip(jax.tree.leaves(a.policy), jax.tree.leaves(b.policy)):
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))


@pytest.fixture(scope="module")
def baseline():
    return ppo_optimize(reward, X0, SCALE, CONFIG, jax.random.key(0))


def test_improves_black_box_reward(baseline):
    start = float(reward(jnp.asarray(X0)[None])[0])
    assert start < 0.03
    assert baseline.history.mean_reward[0] == pytest.approx(start)
    assert baseline.evaluations == CONFIG.epochs * EPOCH_COST == 330
    assert baseline.stop_reason == "epochs"
    assert baseline.best_reward > 0.5
    assert baseline.best_reward == pytest.approx(float(reward(baseline.best_x[None])[0]))
    assert baseline.history.mean_reward[-1] > 0.4
    assert baseline.history.batch_reward[-1] > 10 * baseline.history.batch_reward[0]
    # The mean moved from the baseline pulse towards the optimum in every parameter.
    moved = (np.asarray(baseline.mean_x) - X0) / SCALE
    assert np.all(np.sign(moved) == np.sign(OFFSET))
    assert np.all(np.diff(baseline.history.best_reward) >= 0)
    assert baseline.history.std.shape == (CONFIG.epochs, 3)
    np.testing.assert_allclose(baseline.history.std[0], CONFIG.init_std)


def test_same_key_same_run(baseline):
    assert_same_run(baseline, ppo_optimize(reward, X0, SCALE, CONFIG, jax.random.key(0)))
    other = ppo_optimize(reward, X0, SCALE, CONFIG, jax.random.key(1))
    assert not np.array_equal(other.history.batch_reward, baseline.history.batch_reward)


def test_legacy_key_equals_typed_key():
    short = PPOConfig(epochs=3, batch_size=10)
    a = ppo_optimize(reward, X0, SCALE, short, jax.random.key(3))
    b = ppo_optimize(reward, X0, SCALE, short, jax.random.PRNGKey(3))
    assert_same_run(a, b)


@pytest.mark.parametrize("budget, spent", [(47, 47), (46, 44), (3, 3), (1000, 330)])
def test_budget_respected(budget, spent):
    counter = CountingReward()
    result = ppo_optimize(counter, X0, SCALE, CONFIG, jax.random.key(0), budget=budget)
    assert counter.rows == result.evaluations == spent <= budget
    assert result.history.evaluations[-1] == spent
    assert result.stop_reason == ("epochs" if budget == 1000 else "budget")


@pytest.mark.parametrize("budget", [0, -5, 2])
def test_budget_too_small_refused(budget):
    with pytest.raises(ValidationError, match="budget"):
        ppo_optimize(reward, X0, SCALE, CONFIG, jax.random.key(0), budget=budget)


def test_nan_reward_names_the_epoch():
    counter = CountingReward(fail_on_call=3, failure=lambda r: r.at[4].set(jnp.nan))
    with pytest.raises(RewardError, match="epoch 2.*row 4"):
        ppo_optimize(counter, X0, SCALE, CONFIG, jax.random.key(0))


def test_misshaped_reward_refused():
    with pytest.raises(RewardError, match="reward_fn.*shape"):
        ppo_optimize(lambda x: jnp.sum(reward(x)), X0, SCALE, CONFIG, jax.random.key(0))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(x0=np.zeros((2, 3))), "x0"),
        (dict(x0=np.array([0.0, np.nan, 1.0])), "x0"),
        (dict(scale=np.ones(4)), "scale"),
        (dict(scale=np.array([1.0, 0.0, 1.0])), "scale"),
        (dict(scale=np.array([1.0, np.inf, 1.0])), "scale"),
        (dict(key=None), "key"),
        (dict(key=3), "key"),
        (dict(config="fast"), "config"),
    ],
)
def test_bad_arguments_refused(kwargs, field):
    args = dict(reward_fn=reward, x0=X0, scale=SCALE, config=CONFIG, key=jax.random.key(0))
    args.update(kwargs)
    with pytest.raises(ValidationError, match=field):
        ppo_optimize(**args)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(batch_size=1), "batch_size"),
        (dict(epochs=0), "epochs"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(clip=float("nan")), "clip"),
        (dict(init_std=0.0), "init_std"),
        (dict(batch_size=10, minibatch_size=20), "minibatch_size"),
        (dict(n_shots=0), "n_shots"),
        (dict(actor_layers=(50, 0)), "actor_layers"),
    ],
)
def test_bad_config_refused(kwargs, field):
    with pytest.raises(ValidationError, match=f"PPOConfig.{field}"):
        PPOConfig(**kwargs)


def test_resume_after_stop_matches_uninterrupted_run(baseline, tmp_path):
    path = tmp_path / "ppo.ckpt"
    first = ppo_optimize(reward, X0, SCALE, PPOConfig(epochs=12, batch_size=10), jax.random.key(0), checkpoint=path)
    assert first.epochs == 12
    resumed = ppo_optimize(reward, X0, SCALE, CONFIG, jax.random.key(0), checkpoint=path)
    assert_same_run(resumed, baseline)
    assert os.listdir(tmp_path) == ["ppo.ckpt"]  # no temporary files left behind


def test_interrupt_saves_checkpoint_and_resumes(baseline, tmp_path):
    path = tmp_path / "ppo.ckpt"
    counter = CountingReward(fail_on_call=8, failure=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        ppo_optimize(counter, X0, SCALE, CONFIG, jax.random.key(0), checkpoint=path)
    with open(path, "rb") as f:
        header = json.loads(f.readline())
    assert header["epoch"] == 7 and header["evaluations"] == 7 * EPOCH_COST
    calls = CountingReward()
    resumed = ppo_optimize(calls, X0, SCALE, CONFIG, jax.random.key(0), checkpoint=path)
    assert calls.rows == (CONFIG.epochs - 7) * EPOCH_COST
    assert_same_run(resumed, baseline)


def test_checkpoint_of_another_run_refused(tmp_path):
    path = tmp_path / "ppo.ckpt"
    short = PPOConfig(epochs=2, batch_size=10)
    ppo_optimize(reward, X0, SCALE, short, jax.random.key(0), checkpoint=path)
    with pytest.raises(ValidationError, match="checkpoint.*key"):
        ppo_optimize(reward, X0, SCALE, short, jax.random.key(1), checkpoint=path)
    with pytest.raises(ValidationError, match="checkpoint.*config.clip"):
        ppo_optimize(
            reward, X0, SCALE, PPOConfig(epochs=2, batch_size=10, clip=0.2), jax.random.key(0), checkpoint=path
        )
    path.write_bytes(b"not a checkpoint\n")
    with pytest.raises(ValidationError, match="not a chiraljax PPO checkpoint"):
        ppo_optimize(reward, X0, SCALE, short, jax.random.key(0), checkpoint=path)


def test_callback_sees_each_epoch_and_can_stop():
    seen = []

    def callback(step):
        seen.append(step)
        return step.epoch == 3

    result = ppo_optimize(reward, X0, SCALE, CONFIG, jax.random.key(0), callback=callback)
    assert result.stop_reason == "callback" and result.epochs == 4
    assert [s.epoch for s in seen] == [0, 1, 2, 3]
    assert [s.evaluations for s in seen] == [EPOCH_COST * (i + 1) for i in range(4)]


def test_shot_noise_measures_multiples_of_one_over_n_shots():
    n_shots = 200
    config = PPOConfig(epochs=8, batch_size=10, n_shots=n_shots)
    result = ppo_optimize(reward, X0, SCALE, config, jax.random.key(0))
    # measured_reward is the batch mean of hits / n_shots: an integer over n_shots * batch.
    counts = result.history.measured_reward * n_shots * config.batch_size
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert not np.array_equal(result.history.measured_reward, result.history.batch_reward)
    np.testing.assert_allclose(result.history.measured_reward, result.history.batch_reward, atol=0.1)
    assert result.best_reward > 1.5 * result.history.mean_reward[0]
    assert_same_run(result, ppo_optimize(reward, X0, SCALE, config, jax.random.key(0)))
    with pytest.raises(RewardError, match=r"\[0, 1\]"):
        ppo_optimize(lambda x: 2 * reward(x) + 1, X0, SCALE, config, jax.random.key(0))


def test_minibatches_and_kl_stop(baseline):
    # A tiny target KL allows one Adam step per epoch instead of 20: the policy mean moves less.
    config = PPOConfig(epochs=5, batch_size=10, minibatch_size=5, target_kl=1e-4)
    result = ppo_optimize(reward, X0, SCALE, config, jax.random.key(0))
    assert result.evaluations == 5 * EPOCH_COST
    assert np.all(np.isfinite(result.history.mean_reward))
    start = baseline.history.mean_reward[0]
    assert abs(result.history.mean_reward[4] - start) < abs(baseline.history.mean_reward[4] - start)
    assert_same_run(result, ppo_optimize(reward, X0, SCALE, config, jax.random.key(0)))


def test_truncated_checkpoint_refused(tmp_path):
    path = tmp_path / "ppo.ckpt"
    short = PPOConfig(epochs=2, batch_size=10)
    ppo_optimize(reward, X0, SCALE, short, jax.random.key(0), checkpoint=path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValidationError, match="checkpoint.*cannot be read"):
        ppo_optimize(reward, X0, SCALE, short, jax.random.key(0), checkpoint=path)
    with pytest.raises(ValidationError, match="checkpoint.*folder"):
        ppo_optimize(reward, X0, SCALE, short, jax.random.key(0), checkpoint=tmp_path / "no" / "x.ckpt")
