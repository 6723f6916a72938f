"""Named PPO settings, shot noise and budget honesty in `chiraljax optimize` and its library.

The PPO runs share one toy problem (three parameters, a smooth peak of height 1) and one
config shape (`PPOConfig.hardware(batch_size=5)`: linear actor and critic), so the policy
update compiles once per shot setting. The command-line runs use the `ideal` problem with a
budget of one short epoch.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_cli

import chiraljax  # noqa: F401  (float64)
from chiraljax import ValidationError
from chiraljax.optimize import PPO_SETTINGS, PPOConfig, compare, ppo_optimize

X0 = np.array([0.2, -0.1, 0.5])
SCALE = np.array([0.5, 0.2, 1.0])
TARGET = X0 + SCALE * np.array([1.5, -1.0, 2.0])
BASE = PPOConfig.hardware(batch_size=5)  # 6 evaluations an epoch: 5 candidates and the policy mean


@jax.jit
def reward(x):
    """exp(-|(x - x*) / scale|^2 / 2), in (0, 1]: usable as a probability."""
    return jnp.exp(-0.5 * jnp.sum(((x - TARGET) / SCALE) ** 2, axis=-1))


# ---- named settings ------------------------------------------------------------------------


def test_the_named_settings_have_their_values():
    tutorial, hardware = PPOConfig.tutorial(), PPOConfig.hardware()
    assert (tutorial.epochs, tutorial.batch_size, tutorial.learning_rate) == (100, 50, 2.5e-3)
    assert (tutorial.updates_per_epoch, tutorial.clip, tutorial.init_std) == (20, 0.1, 0.08)
    assert tutorial.actor_layers == tutorial.critic_layers == (50, 20)
    assert (hardware.batch_size, hardware.learning_rate, hardware.updates_per_epoch, hardware.clip) == (
        10,
        1e-3,
        20,
        0.1,
    )
    assert hardware.actor_layers == hardware.critic_layers == ()
    assert hardware.init_std == 0.08 and tutorial.n_shots is None and hardware.n_shots is None
    # The defaults are the tutorial's, so earlier results stay reproducible.
    assert PPOConfig() == tutorial
    assert set(PPO_SETTINGS) == {"tutorial", "hardware"}
    assert PPOConfig.named("hardware", n_shots=40) == PPOConfig.hardware(n_shots=40)


def test_settings_are_recognised_whatever_the_run_sets_itself():
    assert PPOConfig.tutorial(epochs=3, n_shots=100).settings_name() == "tutorial"
    assert PPOConfig.hardware().with_budget(1020).settings_name() == "hardware"
    assert PPOConfig.tutorial(learning_rate=1e-3).settings_name() == "custom"
    with pytest.raises(ValidationError, match="PPO settings 'published': choose one of tutorial, hardware"):
        PPOConfig.named("published")


# ---- budget -------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [3, 21, 63])
def test_with_budget_spends_the_whole_budget(budget):
    config = BASE.with_budget(budget)
    assert config.epochs == math.ceil(budget / 6) and config.max_evaluations >= budget
    assert config.evaluations_within(budget) == budget
    result = ppo_optimize(reward, X0, SCALE, config, jax.random.key(0), budget=budget)
    assert result.evaluations == budget


@pytest.mark.parametrize("budget, message", [(19, "so 1 would stay unused; use 18 or 21"), (2, "use 3")])
def test_a_budget_that_cannot_be_spent_is_refused(budget, message):
    with pytest.raises(ValidationError, match=message):
        BASE.with_budget(budget)


@pytest.mark.parametrize("budget, spent, stop", [(40, 18, "epochs"), (17, 17, "epochs"), (14, 12, "budget")])
def test_evaluations_within_says_what_a_run_spends(budget, spent, stop):
    config = PPOConfig.hardware(batch_size=5, epochs=3)  # at most 18 evaluations
    assert config.evaluations_within(budget) == spent
    result = ppo_optimize(reward, X0, SCALE, config, jax.random.key(1), budget=budget)
    assert result.evaluations == spent
    assert result.stop_reason == stop  # a budget larger than the epochs allow is reported, not spent


def test_compare_refuses_a_budget_its_ppo_config_cannot_spend():
    problem = SimpleNamespace(name="toy")  # refused before the problem is used
    with pytest.raises(ValidationError, match=r"budget=100: PPO with epochs=3 .* at most 18 .* epochs=17"):
        compare(problem, budget=100, ppo_config=PPOConfig.hardware(batch_size=5, epochs=3), methods=("rl",))


# ---- shot noise ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_shots", [7, 100])
def test_shots_make_the_rewards_multiples_of_one_over_the_shots(n_shots):
    config = PPOConfig.hardware(batch_size=5, epochs=4, n_shots=n_shots)
    result = ppo_optimize(reward, X0, SCALE, config, jax.random.key(2))
    measured = result.history.measured_reward * 5 * n_shots  # mean over 5 candidates of k / N
    np.testing.assert_allclose(measured, np.round(measured), atol=1e-9)
    assert not np.allclose(result.history.measured_reward, result.history.batch_reward)
    exact = ppo_optimize(reward, X0, SCALE, BASE.with_budget(24), jax.random.key(2))
    np.testing.assert_array_equal(exact.history.measured_reward, exact.history.batch_reward)


# ---- command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shots", "0"], "--shots 0: must be a positive number of shots per candidate"),
        (["--shots", "-5"], "--shots -5: must be a positive number"),
        (["--ppo-settings", "published"], "--ppo-settings 'published': choose one of tutorial, hardware"),
        (["--budget", "5101"], "--budget 5101: PPO with batch_size=50 spends 51 evaluations an epoch"),
        (["--method", "rl", "--budget", "2"], "--budget 2: .* use 3"),
        (["--method", "grad", "--shots", "100"], "--shots applies to PPO"),
        (["--method", "grad", "--ppo-settings", "hardware"], "--ppo-settings applies to PPO"),
        (["--method", "rl", "--gradient-budget", "100"], "--gradient-budget applies to --method compare only"),
        (["--gradient-budget", "5"], "--gradient-budget 5: one L-BFGS step may cost up to 13"),
        (["--method", "device-study", "--budget", "100000"], "--preset 'ideal': the device study runs on the paper"),
    ],
)
def test_bad_options_exit_2_with_one_line(monkeypatch, capsys, tmp_path, args, message):
    out = tmp_path / "out"
    options = {"--method": "compare", "--budget": "1020", **dict(zip(args[::2], args[1::2]))}
    argv = ["optimize", "--preset", "ideal", "--out", out, "--no-progress"]
    for name, value in options.items():
        argv += [name, value]
    code, _, stderr = run_cli(monkeypatch, capsys, *argv)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chiraljax: error: "), stderr
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()  # refused before anything is written


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "7499"], "--budget 7499: the device study needs at least 7500 device shots per run"),
        (["--shots", "0"], "--shots 0: must be a positive number of shots per candidate"),
        (["--ppo-settings", "fast"], "--ppo-settings 'fast': choose one of tutorial, hardware"),
        (["--gradient-budget", "10"], "--gradient-budget applies to --method compare only"),
    ],
)
def test_device_study_bad_options_exit_2_with_one_line(monkeypatch, capsys, tmp_path, args, message):
    out = tmp_path / "out"
    options = {"--budget": "600000", **dict(zip(args[::2], args[1::2]))}
    argv = ["optimize", "--preset", "paper", "--method", "device-study", "--out", out, "--no-progress"]
    for name, value in options.items():
        argv += [name, value]
    code, _, stderr = run_cli(monkeypatch, capsys, *argv)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), stderr
    assert not out.exists()


def test_shots_and_settings_reach_ppo_and_the_report(monkeypatch, capsys, tmp_path):
    out = tmp_path / "rl"
    argv = ["optimize", "--preset", "ideal", "--method", "rl", "--budget", "14", "--seeds", "1"]
    code, _, stderr = run_cli(monkeypatch, capsys, *argv, "--shots", "10", "--ppo-settings", "hardware", "-o", out)
    assert code == 0, stderr
    assert "policy mean" in stderr
    report = json.loads((out / "rl.json").read_text())
    assert report["shots"] == report["ppo_config"]["n_shots"] == 10
    assert report["ppo_settings"] == "hardware" and report["ppo_config"]["batch_size"] == 10
    assert report["ppo_config"]["epochs"] == 2  # 11 + 3: the budget of 14 in full
    assert "--shots 10 --ppo-settings hardware" in report["command"]
    (run,) = report["runs"]
    assert run["total_evaluations"] == 14 and run["evaluations"] == [11, 14]
    # The agent saw means of k / 10 over 10 candidates, then over 2 (besides the policy mean).
    counts = np.asarray(run["measured_reward"]) * np.array([10 * 10, 2 * 10])
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert 0 < run["final_mean"] < 1 and 0 < run["final_best"] < 1
    assert len(run["mean_x"]) == len(run["best_x"]) == 12
    assert report["final_mean_mean"] == run["final_mean"]


def test_sim_to_real_honours_seeds_shots_and_settings(monkeypatch, capsys, tmp_path):
    import chiraljax.optimize._run as run_module

    seen = {}

    def fake_sim_to_real(problem, **kwargs):
        seen.update(kwargs, problem=problem.name)
        return {"problem": problem.name}

    monkeypatch.setattr(run_module, "sim_to_real", fake_sim_to_real)
    argv = ["optimize", "--preset", "ideal", "--method", "sim-to-real", "--budget", "1020", "--seeds", "3"]
    code, _, stderr = run_cli(monkeypatch, capsys, *argv, "--shots", "1000", "-o", tmp_path / "s")
    assert code == 0, stderr
    assert seen["rl_seeds"] == (0, 1, 2) and seen["rl_budget"] == 1020
    assert seen["ppo_config"] == PPOConfig.tutorial(epochs=20, n_shots=1000)
    report = json.loads((tmp_path / "s" / "sim_to_real.json").read_text())
    assert report["command"].endswith("--seeds 3 --shots 1000 --out " + str(tmp_path / "s"))


@pytest.mark.slow  # compiles the whole sim-to-real pipeline (about 50 s on 2 cores)
def test_sim_to_real_runs_ppo_once_per_seed(monkeypatch):
    from chiraljax.optimize import GradientConfig, get_problem, sim_to_real

    problem = get_problem("ideal", parameterization="sech", rtol=1e-6)
    calls = []
    import chiraljax.optimize._compare as compare_module

    real_ppo = compare_module.ppo_optimize

    def counting_ppo(*args, **kwargs):
        result = real_ppo(*args, **kwargs)
        calls.append((int(jax.random.key_data(args[4])[-1]), kwargs["budget"], result.evaluations))
        return result

    monkeypatch.setattr(compare_module, "ppo_optimize", counting_ppo)
    report = sim_to_real(
        problem,
        ensemble_size=2,
        gradient_config=GradientConfig(method="adam", learning_rate=0.1, max_steps=2, patience=None),
        ppo_config=BASE.with_budget(9),
        rl_budget=9,
        rl_seeds=(0, 1),
        scale=0.3,
    )
    assert calls == [(0, 9, 9), (1, 9, 9)]
    rl = report["rl_finetune_on_true"]
    assert [r["seed"] for r in rl["runs"]] == [0, 1] and rl["evaluations"] == 9
    assert rl["true"] == pytest.approx(np.mean([r["best"]["true"] for r in rl["runs"]]))
    assert set(rl["policy_mean"]) == {
        "nominal",
        "true",
        "train_ensemble_mean",
        "train_ensemble_worst",
        "test_ensemble_mean",
        "test_ensemble_worst",
    }
    assert report["ppo_settings"] == "custom" and report["rl_seeds"] == [0, 1] and report["shots"] is None
    with pytest.raises(ValidationError, match="rl_budget=20: PPO with epochs=2"):
        sim_to_real(problem, ppo_config=BASE.with_budget(9), rl_budget=20)


def test_the_published_shot_noise_comparison_records_the_policy_mean():
    results = Path(__file__).resolve().parents[2] / "optimize" / "results"
    for folder, settings in (("paper_shots", "tutorial"), ("paper_shots_hardware", "hardware")):
        report = json.loads((results / folder / "compare.json").read_text())
        assert report["shots"] == report["ppo_config"]["n_shots"] == 1000
        assert report["ppo_settings"] == settings and report["budget"] == 1020
        assert "--shots 1000" in report["command"] and "no measurement" in report["shots_note"]
        for run in report["runs"]["rl"]:
            assert run["total_evaluations"] == 1020 and 0.5 < run["final_mean"] <= run["final_best"] + 1e-3
        summary = report["summary"]
        assert summary["rl"]["final_mean_mean"] < summary["grad"]["final_best_mean"]
        assert all(r["grad_evaluations_to_reach_rl_mean"] is not None for r in summary["grad_vs_rl"])
