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

from chiraljax._errors import require

from ._compare import batch_reward, compare, plot_comparison, sim_to_real, start_point, write_json
from ._gradient import GradientConfig, gradient_optimize
from ._ppo import PPOConfig, ppo_optimize
from ._problems import PROBLEMS, get_problem

__all__ = ["METHODS", "run_optimize"]

METHODS = ("grad", "rl", "compare", "sim-to-real")


def run_optimize(
    preset: str,
    method: str,
    budget: int,
    seeds: int,
    out: str | os.PathLike,
    *,
    gradient_budget: int | None = None,
    progress: Callable[[str, int, Any], None] | None = None,
) -> dict[str, Any]:
    """Optimise the pulses of a problem and write the report into `out`.

    **Arguments:**

    - `preset`: problem name (`"paper"`, `"ideal"`, `"distorted"`).
    - `method`: `"grad"` (L-BFGS), `"rl"` (PPO, published settings), `"compare"` (both,
      equal budgets) or `"sim-to-real"`.
    - `budget`: simulator evaluations per run (for `"sim-to-real"`: the RL fine-tuning budget).
    - `seeds`: number of seeds (0, 1, ..., seeds - 1).
    - `out`: output folder (created if missing).
    - `gradient_budget`: evaluations per gradient run in a comparison (default `budget`).
    - `progress`: called as `progress(method, seed, record)` after every step or epoch.

    **Returns:** the report written to `out/<method>.json`.
    """
    require(preset in PROBLEMS, f"--preset {preset!r}: choose one of {', '.join(PROBLEMS)}")
    require(method in METHODS, f"--method {method!r}: choose one of {', '.join(METHODS)}")
    require(
        isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1,
        f"--budget {budget!r}: must be a positive number of simulator evaluations",
    )
    require(isinstance(seeds, int) and seeds >= 1, f"--seeds {seeds!r}: must be at least 1")
    out = os.fspath(out)
    require(
        not os.path.exists(out) or os.path.isdir(out),
        f"--out {out!r}: exists and is not a folder; choose a folder path",
    )
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
            progress=progress,
            checkpoint_dir=checkpoints,
        )
        plot_comparison(report, os.path.join(out, "compare.png"))
    elif method == "sim-to-real":
        report = sim_to_real(problem, rl_budget=budget)
    else:
        report = _single(problem, method, budget, seeds, checkpoints, progress)
    report["command"] = (
        f"chiraljax optimize --preset {preset} --method {method} --budget {budget} --seeds {seeds} --out {out}"
    )
    write_json(report, report_path)
    return report


def _single(problem, method, budget, seeds, checkpoints, progress) -> dict[str, Any]:
    runs = []
    for seed in range(seeds):
        x0 = start_point(problem, seed)
        report = (lambda rec, s=seed: progress(method, s, rec)) if progress else None
        ckpt = os.path.join(checkpoints, f"{method}-seed{seed}.ckpt")
        if method == "grad":
            config = GradientConfig(method="lbfgs", max_steps=10_000, patience=40)
            result = gradient_optimize(problem.objective, x0, config, budget=budget, checkpoint=ckpt, callback=report)
            best_x, best, evaluations = result.best_x, result.best_score, result.evaluations
            curve = {"evaluations": result.history.evaluations.tolist(), "best": result.history.best_score.tolist()}
        else:
            result = ppo_optimize(
                batch_reward(problem.objective),
                x0,
                problem.rl_scale,
                PPOConfig(),
                jax.random.key(seed),
                budget=budget,
                checkpoint=ckpt,
                callback=report,
            )
            best_x, best, evaluations = result.best_x, result.best_reward, result.evaluations
            curve = {"evaluations": result.history.evaluations.tolist(), "best": result.history.best_reward.tolist()}
        runs.append(
            {
                "seed": seed,
                "final_best": float(best),
                "evaluations": int(evaluations),
                "best_x": np.asarray(best_x).tolist(),
                **curve,
                "start_score": float(problem.objective(x0)),
            }
        )
    return {
        "problem": problem.name,
        "method": method,
        "budget": budget,
        "runs": runs,
        "final_best_mean": float(np.mean([r["final_best"] for r in runs])),
    }
