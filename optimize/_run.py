"""`run_optimize`: the work behind `chiraljax optimize` (gradient, RL, comparison, sim-to-real).

Every run writes into one output folder: a JSON report, a PNG plot for comparisons, and
per-run checkpoints under `checkpoints/`. Repeating the same command resumes: finished runs are
read back, an interrupted one continues from its last step or epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from chiraljax._errors import ValidationError, require

from ._compare import (
    batch_reward,
    compare,
    config_fields,
    default_gradient_config,
    plot_comparison,
    ppo_record,
    sim_to_real,
    start_point,
    write_json,
)
from ._device_methods import ModelBasedSettings
from ._device_study import device_study
from ._gradient import gradient_optimize
from ._ppo import PPO_SETTINGS, PPOConfig, ppo_optimize
from ._problems import PROBLEMS, get_problem

__all__ = ["METHODS", "check_arguments", "run_optimize"]

METHODS = ("grad", "rl", "compare", "sim-to-real", "device-study")
_PPO_METHODS = ("rl", "compare", "sim-to-real")


def run_optimize(
    preset: str,
    method: str,
    budget: int,
    seeds: int,
    out: str | os.PathLike,
    *,
    gradient_budget: int | None = None,
    shots: int | None = None,
    ppo_settings: str | None = None,
    progress: Callable[[str, int, Any], None] | None = None,
) -> dict[str, Any]:
    """Optimise the pulses of a problem and write the report into `out`.

    **Arguments:**

    - `preset`: problem name (`"paper"`, `"ideal"`, `"distorted"`).
    - `method`: `"grad"` (L-BFGS), `"rl"` (PPO), `"compare"` (both, equal budgets) or
      `"sim-to-real"`.
    - `budget`: simulator evaluations per run (for `"sim-to-real"`: per RL fine-tuning run).
      PPO spends all of it: its epochs are `ceil(budget / evaluations_per_epoch)`
      (`PPOConfig.with_budget`); a budget whose last epoch could not hold two candidates is
      refused. L-BFGS stops earlier only when it has converged.
    - `seeds`: number of seeds (0, 1, ..., seeds - 1); for `"sim-to-real"` the number of RL
      fine-tuning runs (its gradient runs are deterministic).
    - `out`: output folder (created if missing).
    - `gradient_budget`: evaluations per gradient run in a comparison (default `budget`);
      only with `"compare"`.
    - `shots`: PPO learns from rewards measured with this many shots per candidate
      (`PPOConfig.n_shots`; default: exact rewards). Not for `"grad"`: the gradient method
      uses the model's exact values.
    - `ppo_settings`: PPO's named settings, `"tutorial"` (default) or `"hardware"`
      (`PPOConfig.named`). Not for `"grad"`.
    - `progress`: called as `progress(method, seed, record)` after every step or epoch.

    **Returns:** the report written to `out/<method>.json`, with the settings used and the
    command that reproduces it. Raises `ValidationError` for a bad argument, naming it.
    """
    ppo_config = check_arguments(
        preset, method, budget, seeds, out, gradient_budget=gradient_budget, shots=shots, ppo_settings=ppo_settings
    )
    if method == "device-study":
        report = device_study(
            out, seeds=seeds, budget=budget, shots_per_evaluation=shots or DEVICE_SHOTS, ppo_config=ppo_config
        )
        report["command"] = _command(preset, method, budget, seeds, out, gradient_budget, shots, ppo_settings)
        write_json(report, os.path.join(os.fspath(out), "study.json"))
        return report
    out = os.fspath(out)
    checkpoints = os.path.join(out, "checkpoints")
    os.makedirs(checkpoints, exist_ok=True)
    problem = get_problem(preset)
    report_path = os.path.join(out, f"{method.replace('-', '_')}.json")

    if method == "compare":
        report = compare(
            problem,
            budget=budget,
            seeds=tuple(range(seeds)),
            gradient_budget=gradient_budget,
            ppo_config=ppo_config,
            progress=progress,
            checkpoint_dir=checkpoints,
        )
        plot_comparison(report, os.path.join(out, "compare.png"))
    elif method == "sim-to-real":
        report = sim_to_real(problem, ppo_config=ppo_config, rl_budget=budget, rl_seeds=tuple(range(seeds)))
    else:
        report = _single(problem, method, budget, seeds, ppo_config, checkpoints, progress)
    report["command"] = _command(preset, method, budget, seeds, out, gradient_budget, shots, ppo_settings)
    write_json(report, report_path)
    return report


def _command(preset, method, budget, seeds, out, gradient_budget, shots, ppo_settings) -> str:
    """The command line that reproduces a run."""
    command = f"chiraljax optimize --preset {preset} --method {method} --budget {budget} --seeds {seeds}"
    if gradient_budget is not None:
        command += f" --gradient-budget {gradient_budget}"
    if shots is not None:
        command += f" --shots {shots}"
    if ppo_settings is not None:
        command += f" --ppo-settings {ppo_settings}"
    return f"{command} --out {out}"


def check_arguments(
    preset: str,
    method: str,
    budget: int,
    seeds: int,
    out: str | os.PathLike,
    *,
    gradient_budget: int | None = None,
    shots: int | None = None,
    ppo_settings: str | None = None,
) -> PPOConfig | None:
    """Check the arguments of `run_optimize` before anything is computed or written.

    **Arguments:** those of `run_optimize` (without `progress`).

    **Returns:** the `PPOConfig` the run will use (`None` for `"grad"`). Raises
    `ValidationError` naming the option at fault (as on the command line) and what to change.
    """
    require(preset in PROBLEMS, f"--preset {preset!r}: choose one of {', '.join(PROBLEMS)}")
    require(method in METHODS, f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "device-study":
        return _check_device_study(preset, budget, seeds, out, gradient_budget, shots, ppo_settings)
    require(
        isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1,
        f"--budget {budget!r}: must be a positive number of simulator evaluations",
    )
    require(
        isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1, f"--seeds {seeds!r}: must be at least 1"
    )
    if gradient_budget is not None:
        require(
            method == "compare",
            f"--gradient-budget applies to --method compare only; with --method {method} use --budget",
        )
        require(
            isinstance(gradient_budget, int) and not isinstance(gradient_budget, bool) and gradient_budget >= 1,
            f"--gradient-budget {gradient_budget!r}: must be a positive number of simulator evaluations",
        )
    if method in ("grad", "compare"):
        option, value = ("--gradient-budget", gradient_budget) if gradient_budget is not None else ("--budget", budget)
        step_cost = 1 + default_gradient_config(value).max_linesearch_steps
        require(
            value >= step_cost,
            f"{option} {value}: one L-BFGS step may cost up to {step_cost} simulator evaluations; give at least "
            f"{step_cost}",
        )
    if shots is not None:
        require(
            isinstance(shots, int) and not isinstance(shots, bool) and shots >= 1,
            f"--shots {shots!r}: must be a positive number of shots per candidate",
        )
        require(
            method in _PPO_METHODS,
            "--shots applies to PPO (--method rl, compare or sim-to-real); the gradient method uses the "
            "model's exact values",
        )
    if ppo_settings is not None:
        require(
            ppo_settings in PPO_SETTINGS, f"--ppo-settings {ppo_settings!r}: choose one of {', '.join(PPO_SETTINGS)}"
        )
        require(method in _PPO_METHODS, "--ppo-settings applies to PPO (--method rl, compare or sim-to-real)")
    ppo_config = None
    if method in _PPO_METHODS:
        try:
            ppo_config = PPOConfig.named(ppo_settings or "tutorial", n_shots=shots).with_budget(budget)
        except ValidationError as err:
            raise ValidationError(str(err).replace(f"budget={budget}", f"--budget {budget}", 1)) from None
    out = os.fspath(out)
    require(
        not os.path.exists(out) or os.path.isdir(out),
        f"--out {out!r}: exists and is not a folder; choose a folder path",
    )
    return ppo_config


def _single(problem, method, budget, seeds, ppo_config, checkpoints, progress) -> dict[str, Any]:
    runs = []
    gradient_config = default_gradient_config(budget)
    for seed in range(seeds):
        x0 = start_point(problem, seed)
        report = (lambda rec, s=seed: progress(method, s, rec)) if progress else None
        ckpt = os.path.join(checkpoints, f"{method}-seed{seed}.ckpt")
        if method == "grad":
            result = gradient_optimize(
                problem.objective, x0, gradient_config, budget=budget, checkpoint=ckpt, callback=report
            )
            best_x, best, evaluations = result.best_x, result.best_score, result.evaluations
            curve = {"evaluations": result.history.evaluations.tolist(), "best": result.history.best_score.tolist()}
        else:
            result = ppo_optimize(
                batch_reward(problem.objective),
                x0,
                problem.rl_scale,
                ppo_config,
                jax.random.key(seed),
                budget=budget,
                checkpoint=ckpt,
                callback=report,
            )
            best_x, best, evaluations = result.best_x, result.best_reward, result.evaluations
            curve = {
                "evaluations": result.history.evaluations.tolist(),
                "best": result.history.best_reward.tolist(),
                "mean_reward": result.history.mean_reward.tolist(),
                "measured_reward": result.history.measured_reward.tolist(),
                "final_mean": float(problem.objective(result.mean_x)),
                "mean_x": np.asarray(result.mean_x).tolist(),
            }
        runs.append(
            {
                "seed": seed,
                "final_best": float(best),
                "total_evaluations": int(evaluations),
                "stop_reason": result.stop_reason,
                "best_x": np.asarray(best_x).tolist(),
                **curve,
                "start_score": float(problem.objective(x0)),
            }
        )
    report = {
        "problem": problem.name,
        "method": method,
        "budget": budget,
        "seeds": list(range(seeds)),
        "runs": runs,
        "final_best_mean": float(np.mean([r["final_best"] for r in runs])),
    }
    if method == "grad":
        report["gradient_config"] = config_fields(gradient_config)
    else:
        report.update(
            {
                "final_mean_mean": float(np.mean([r["final_mean"] for r in runs])),
                **ppo_record(ppo_config),
                "rl_scale": np.broadcast_to(
                    np.asarray(problem.rl_scale, np.float64), (problem.objective.size,)
                ).tolist(),
            }
        )
    return report


#: Shots per candidate of the model-free methods in the device study (`--shots`).
DEVICE_SHOTS = 1000


def _check_device_study(preset, budget, seeds, out, gradient_budget, shots, ppo_settings) -> PPOConfig:
    """The device study's arguments: `--budget` is device shots per run, `--shots` the shots per
    candidate of the model-free methods; PPO runs the hardware script's settings
    (`PPOConfig.hardware()`) unless `--ppo-settings` names others."""
    require(preset == "paper", f"--preset {preset!r}: the device study runs on the paper preset's transfer")
    require(gradient_budget is None, "--gradient-budget applies to --method compare only")
    require(
        isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1, f"--seeds {seeds!r}: must be at least 1"
    )
    if shots is not None:
        require(
            isinstance(shots, int) and not isinstance(shots, bool) and shots >= 1,
            f"--shots {shots!r}: must be a positive number of shots per candidate",
        )
    minimum = ModelBasedSettings().first_round()
    require(
        isinstance(budget, int) and not isinstance(budget, bool) and budget >= minimum,
        f"--budget {budget!r}: the device study needs at least {minimum} device shots per run",
    )
    out = os.fspath(out)
    require(not os.path.exists(out) or os.path.isdir(out), f"--out {out!r}: exists and is not a folder")
    require(
        ppo_settings is None or ppo_settings in PPO_SETTINGS,
        f"--ppo-settings {ppo_settings!r}: choose one of {', '.join(PPO_SETTINGS)}",
    )
    return PPOConfig.named(ppo_settings or "hardware", epochs=10**6)
