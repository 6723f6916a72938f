"""`run_optimize`: the work behind `chiraljax optimize` (gradient, RL, comparison, sim-to-real).

Every run writes into one output folder: a JSON report, a PNG plot for comparisons, and
per-run checkpoints under `checkpoints/`. Repeating the same command resumes: finished runs are
read back, an interrupted one continues from its last step or epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
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
    result_record,
    sim_to_real,
    start_point,
    write_json,
)
from ._device_methods import ModelBasedSettings
from ._device_study import device_study
from ._gradient import gradient_optimize
from ._ppo import PPO_SETTINGS, PPOConfig, ppo_optimize
from ._problems import PROBLEMS, get_problem

__all__ = ["METHODS", "OptimizeArguments", "check_arguments", "run_optimize"]

METHODS = ("grad", "rl", "compare", "sim-to-real", "device-study")
_PPO_METHODS = ("rl", "compare", "sim-to-real")
#: Shots per candidate of the model-free methods in the device study (`--shots`).
DEVICE_SHOTS = 1000


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
    arguments = OptimizeArguments(
        preset, method, budget, seeds, out, gradient_budget=gradient_budget, shots=shots, ppo_settings=ppo_settings
    )
    ppo_config = arguments.check()
    out = os.fspath(out)
    if method == "device-study":
        report = device_study(
            out, seeds=seeds, budget=budget, shots_per_evaluation=shots or DEVICE_SHOTS, ppo_config=ppo_config
        )
        report_path = os.path.join(out, "study.json")
    else:
        checkpoints = os.path.join(out, "checkpoints")
        os.makedirs(checkpoints, exist_ok=True)
        report = _optimize(arguments, ppo_config, checkpoints, progress)
        report_path = os.path.join(out, f"{method.replace('-', '_')}.json")
    report["command"] = arguments.command()
    write_json(report, report_path)
    return report


def _optimize(arguments: OptimizeArguments, ppo_config, checkpoints: str, progress) -> dict[str, Any]:
    """The report of a gradient, RL, comparison or sim-to-real run."""
    method, budget, seeds = arguments.method, arguments.budget, arguments.seeds
    problem = get_problem(arguments.preset)
    if method == "compare":
        report = compare(
            problem,
            budget=budget,
            seeds=tuple(range(seeds)),
            gradient_budget=arguments.gradient_budget,
            ppo_config=ppo_config,
            progress=progress,
            checkpoint_dir=checkpoints,
        )
        plot_comparison(report, os.path.join(os.fspath(arguments.out), "compare.png"))
        return report
    if method == "sim-to-real":
        return sim_to_real(problem, ppo_config=ppo_config, rl_budget=budget, rl_seeds=tuple(range(seeds)))
    return _single(problem, method, budget, seeds, ppo_config, checkpoints, progress)


def check_arguments(*args: Any, **kwargs: Any) -> PPOConfig | None:
    """Check the arguments of `run_optimize` before anything is computed or written.

    **Arguments:** those of `run_optimize` without `progress` (the fields of
    `OptimizeArguments`): `preset`, `method`, `budget`, `seeds`, `out`, and by keyword
    `gradient_budget`, `shots`, `ppo_settings`.

    **Returns:** the `PPOConfig` the run will use (`None` for `"grad"`). Raises
    `ValidationError` naming the option at fault (as on the command line) and what to change.
    """
    return OptimizeArguments(*args, **kwargs).check()


def _count(value: Any, minimum: int = 1) -> bool:
    """Whether `value` is an integer (not a bool) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class OptimizeArguments:
    """The arguments of `run_optimize` without `progress`: what `chiraljax optimize` was given.

    `check()` refuses a bad one before anything is computed or written, naming the option as on
    the command line; `command()` is the command line that reproduces the run.
    """

    preset: str
    method: str
    budget: int
    seeds: int
    out: str | os.PathLike
    _: KW_ONLY
    gradient_budget: int | None = None
    shots: int | None = None
    ppo_settings: str | None = None

    def command(self) -> str:
        """The command line that reproduces the run."""
        command = f"chiraljax optimize --preset {self.preset} --method {self.method} --budget {self.budget}"
        command += f" --seeds {self.seeds}"
        for name in ("gradient_budget", "shots", "ppo_settings"):
            value = getattr(self, name)
            if value is not None:
                command += f" --{name.replace('_', '-')} {value}"
        return f"{command} --out {self.out}"

    def check(self) -> PPOConfig | None:
        """The `PPOConfig` the run will use (`None` for `"grad"`), after checking every argument
        (`check_arguments`)."""
        preset, method, budget, seeds = self.preset, self.method, self.budget, self.seeds
        gradient_budget, shots, ppo_settings = self.gradient_budget, self.shots, self.ppo_settings
        require(preset in PROBLEMS, f"--preset {preset!r}: choose one of {', '.join(PROBLEMS)}")
        require(method in METHODS, f"--method {method!r}: choose one of {', '.join(METHODS)}")
        if method == "device-study":
            return self._check_device_study()
        require(_count(budget), f"--budget {budget!r}: must be a positive number of simulator evaluations")
        require(_count(seeds), f"--seeds {seeds!r}: must be at least 1")
        if gradient_budget is not None:
            require(
                method == "compare",
                f"--gradient-budget applies to --method compare only; with --method {method} use --budget",
            )
            require(
                _count(gradient_budget),
                f"--gradient-budget {gradient_budget!r}: must be a positive number of simulator evaluations",
            )
        if method in ("grad", "compare"):
            option, value = (
                ("--gradient-budget", gradient_budget) if gradient_budget is not None else ("--budget", budget)
            )
            step_cost = 1 + default_gradient_config(value).max_linesearch_steps
            require(
                value >= step_cost,
                f"{option} {value}: one L-BFGS step may cost up to {step_cost} simulator evaluations; give at least "
                f"{step_cost}",
            )
        if shots is not None:
            require(_count(shots), f"--shots {shots!r}: must be a positive number of shots per candidate")
            require(
                method in _PPO_METHODS,
                "--shots applies to PPO (--method rl, compare or sim-to-real); the gradient method uses the "
                "model's exact values",
            )
        if ppo_settings is not None:
            require(
                ppo_settings in PPO_SETTINGS,
                f"--ppo-settings {ppo_settings!r}: choose one of {', '.join(PPO_SETTINGS)}",
            )
            require(method in _PPO_METHODS, "--ppo-settings applies to PPO (--method rl, compare or sim-to-real)")
        ppo_config = None
        if method in _PPO_METHODS:
            try:
                ppo_config = PPOConfig.named(ppo_settings or "tutorial", n_shots=shots).with_budget(budget)
            except ValidationError as err:
                raise ValidationError(str(err).replace(f"budget={budget}", f"--budget {budget}", 1)) from None
        out = os.fspath(self.out)
        require(
            not os.path.exists(out) or os.path.isdir(out),
            f"--out {out!r}: exists and is not a folder; choose a folder path",
        )
        return ppo_config

    def _check_device_study(self) -> PPOConfig:
        """The device study's arguments: `--budget` is device shots per run, `--shots` the shots
        per candidate of the model-free methods; PPO runs the hardware script's settings
        (`PPOConfig.hardware()`) unless `--ppo-settings` names others."""
        budget, seeds, shots, ppo_settings = self.budget, self.seeds, self.shots, self.ppo_settings
        require(
            self.preset == "paper", f"--preset {self.preset!r}: the device study runs on the paper preset's transfer"
        )
        require(self.gradient_budget is None, "--gradient-budget applies to --method compare only")
        require(_count(seeds), f"--seeds {seeds!r}: must be at least 1")
        if shots is not None:
            require(_count(shots), f"--shots {shots!r}: must be a positive number of shots per candidate")
        minimum = ModelBasedSettings().first_round()
        require(
            _count(budget, minimum),
            f"--budget {budget!r}: the device study needs at least {minimum} device shots per run",
        )
        out = os.fspath(self.out)
        require(not os.path.exists(out) or os.path.isdir(out), f"--out {out!r}: exists and is not a folder")
        require(
            ppo_settings is None or ppo_settings in PPO_SETTINGS,
            f"--ppo-settings {ppo_settings!r}: choose one of {', '.join(PPO_SETTINGS)}",
        )
        return PPOConfig.named(ppo_settings or "hardware", epochs=10**6)


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
            curve = {
                "evaluations": result.history.evaluations.tolist(),
                "best": result.history.best_reward.tolist(),
                "mean_reward": result.history.mean_reward.tolist(),
                "measured_reward": result.history.measured_reward.tolist(),
                "final_mean": float(problem.objective(result.final_x)),
                "mean_x": np.asarray(result.final_x).tolist(),
            }
        runs.append({"seed": seed, **result_record(result), **curve, "start_score": float(problem.objective(x0))})
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
