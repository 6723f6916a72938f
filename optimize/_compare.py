r"""Gradient shaping against the PPO baseline on the same footing, and the sim-to-real test.

**Comparison.** For every seed `s`, both methods start from the same pulse
`x_s = x0 + 0.02 ξ_s` (`ξ_s ~ N(0, 1)` from the seed; the jitter makes the gradient runs
differ between seeds as the RL runs do), use the same parameterisation and objective, and get
the same budget of simulator evaluations (one simulator evaluation = one forward solve for RL
and one value_and_grad for the gradient method; the measured cost ratio of the two is
reported so the budgets can also be compared in forward-solve equivalents). Both are compiled
before timing, so the wall-time curves exclude compilation. Reported per method and seed: the
best metric versus evaluations and versus wall time; summarised over seeds: the final best
metric, and the evaluations the gradient method needed to reach the RL baseline's final value.

**Sim-to-real.** Optimise on the nominal model; score on a perturbed "true" model (the
experiment's device as opposed to its model), with and without the robust objective (mean over
a sampled hardware ensemble), and fine-tune with RL on the true model as a black box (what an
experiment can do). The robust and nominal optima are also scored on a fresh test ensemble from
the same distribution: its mean and worst member.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from chiraljax._errors import require
from chiraljax._files import save_figure, write_text_atomic
from chiraljax._precision import real_dtype
from chiraljax._provenance import provenance

from ._gradient import GradientConfig, gradient_optimize, measure_cost_ratio, value_and_grad
from ._objectives import Objective, sample_ensemble
from ._ppo import PPOConfig, ppo_optimize
from ._problems import Problem

__all__ = ["batch_reward", "compare", "plot_comparison", "sim_to_real", "write_json"]

_JITTER = 0.02


@eqx.filter_jit
def _batch_scores(objective: Objective, xs):
    return jax.vmap(objective)(xs)


def batch_reward(objective: Objective) -> Callable[[Any], np.ndarray]:
    """The objective as a black-box reward for RL: parameters (B, P) -> scores (B,), one
    compiled, vmapped forward solve per batch, no gradients."""

    def reward(xs):
        return np.asarray(_batch_scores(objective, jnp.asarray(xs, real_dtype())))

    return reward


def start_point(problem: Problem, seed: int) -> np.ndarray:
    x0 = np.asarray(problem.x0, np.float64)
    xi = np.asarray(jax.random.normal(jax.random.key(seed), x0.shape, real_dtype()))
    return x0 + _JITTER * xi


def _gradient_run(objective, x0, config, budget, progress, checkpoint):
    result = gradient_optimize(objective, x0, config, budget=budget, callback=progress, checkpoint=checkpoint)
    h = result.history
    wall = float(h.wall_time[-1]) if h.wall_time.size else 0.0
    return {
        "evaluations": h.evaluations.tolist(),
        "best": h.best_score.tolist(),
        "wall_time": h.wall_time.tolist(),
        "final_best": float(result.best_score),
        "total_evaluations": int(result.evaluations),
        "total_wall_time": wall,
        "stop_reason": result.stop_reason,
        "best_x": np.asarray(result.best_x).tolist(),
    }


def _ppo_run(objective, x0, scale, config, seed, budget, progress, checkpoint):
    times: list[float] = []
    t0 = time.perf_counter()
    if checkpoint is not None and os.path.exists(checkpoint):
        # Epochs before a resume have no wall time on record.
        done = json.loads(open(checkpoint, "rb").readline())["epoch"]
        times = [math.nan] * int(done)

    def callback(epoch):
        times.append(time.perf_counter() - t0)
        if progress is not None:
            progress(epoch)

    result = ppo_optimize(
        batch_reward(objective),
        x0,
        scale,
        config,
        jax.random.key(seed),
        budget=budget,
        callback=callback,
        checkpoint=checkpoint,
    )
    h = result.history
    return {
        "evaluations": h.evaluations.tolist(),
        "best": h.best_reward.tolist(),
        "mean_reward": h.mean_reward.tolist(),
        "wall_time": times,
        "final_best": float(result.best_reward),
        "total_evaluations": int(result.evaluations),
        "total_wall_time": times[-1] if times else 0.0,
        "wall_time_note": "NaN for epochs run before a resume",
        "stop_reason": result.stop_reason,
        "best_x": np.asarray(result.best_x).tolist(),
    }


def _evaluations_to_reach(run: dict, level: float) -> int | None:
    for n, b in zip(run["evaluations"], run["best"]):
        if b >= level:
            return int(n)
    return None


def compare(
    problem: Problem,
    *,
    budget: int,
    seeds: Sequence[int] = (0, 1, 2),
    gradient_config: GradientConfig = GradientConfig(method="lbfgs", max_steps=10_000, patience=40),
    ppo_config: PPOConfig = PPOConfig(),
    gradient_budget: int | None = None,
    scale: float | Any = None,
    methods: Sequence[str] = ("grad", "rl"),
    progress: Callable[[str, int, Any], None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the gradient method and the PPO baseline on one problem over several seeds.

    **Arguments:**

    - `problem`: a `Problem` (objective and starting parameters).
    - `budget`: simulator evaluations per run for the RL baseline.
    - `seeds`: one run of each method per seed.
    - `gradient_config`, `ppo_config`: the methods' settings (PPO: published defaults).
    - `gradient_budget`: evaluations per gradient run (default `budget`).
    - `scale`: RL action unit per parameter (default `problem.rl_scale`).
    - `methods`: which of `"grad"`, `"rl"` to run.
    - `progress`: called as `progress(method, seed, step_record)` after every step or epoch.
    - `checkpoint_dir`: folder for per-run checkpoints and finished runs; a repeated call with
      the same arguments skips finished runs and resumes an interrupted one.

    **Returns:** a JSON-ready dictionary: problem, settings, the cost ratio, per-seed curves
    and a summary.
    """
    require(isinstance(budget, int) and budget >= 1, f"budget={budget!r}: must be a positive integer")
    require(len(seeds) >= 1, "seeds: give at least one seed")
    unknown = [m for m in methods if m not in ("grad", "rl")]
    require(not unknown, f"methods {unknown}: choose from 'grad', 'rl'")
    objective = problem.objective
    scale = np.broadcast_to(np.asarray(problem.rl_scale if scale is None else scale, np.float64), (objective.size,))
    gradient_budget = budget if gradient_budget is None else int(gradient_budget)
    x_start = np.asarray(problem.x0, np.float64)

    # Compile everything before any timing.
    start_score = float(objective(jnp.asarray(x_start)))
    value_and_grad(objective, x_start)
    if "rl" in methods:
        warm_up = PPOConfig(**{**{f: getattr(ppo_config, f) for f in ppo_config.__dataclass_fields__}, "epochs": 1})
        ppo_optimize(batch_reward(objective), x_start, scale, warm_up, jax.random.key(0))
    cost = measure_cost_ratio(objective, x_start, repeats=5)
    if "grad" in methods:
        warm_up = GradientConfig(**{**_config_fields(gradient_config), "max_steps": 2})
        gradient_optimize(objective, x_start, warm_up)

    if checkpoint_dir is not None:
        require(os.path.isdir(checkpoint_dir), f"checkpoint_dir: folder {checkpoint_dir!r} does not exist")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in seeds:
        x0 = start_point(problem, seed)
        for method in methods:
            done_file = ckpt = None
            identity = _run_identity(
                problem,
                method,
                seed,
                x0,
                scale,
                budget if method == "rl" else gradient_budget,
                gradient_config if method == "grad" else ppo_config,
            )
            if checkpoint_dir is not None:
                done_file = os.path.join(checkpoint_dir, f"{method}-seed{seed}.json")
                ckpt = os.path.join(checkpoint_dir, f"{method}-seed{seed}.ckpt")
                finished = _finished_run(done_file, identity)
                if finished is not None:
                    runs[method].append(finished)
                    continue
            report = (lambda rec, m=method, s=seed: progress(m, s, rec)) if progress else None
            if method == "grad":
                run = _gradient_run(objective, x0, gradient_config, gradient_budget, report, ckpt)
            else:
                run = _ppo_run(objective, x0, scale, ppo_config, seed, budget, report, ckpt)
            run["seed"] = int(seed)
            run["start_score"] = float(objective(jnp.asarray(x0)))
            run["identity"] = identity
            if done_file is not None:
                write_json(run, done_file)
            runs[method].append(run)

    summary: dict[str, Any] = {"unoptimised": start_score}
    for method, method_runs in runs.items():
        finals = np.asarray([r["final_best"] for r in method_runs])
        summary[method] = {
            "final_best_mean": float(finals.mean()),
            "final_best_min": float(finals.min()),
            "final_best_max": float(finals.max()),
            "evaluations_mean": float(np.mean([r["total_evaluations"] for r in method_runs])),
            "wall_time_mean_s": float(np.mean([r["total_wall_time"] for r in method_runs])),
        }
    if "grad" in runs and "rl" in runs:
        reach = []
        for g, r in zip(runs["grad"], runs["rl"]):
            n = _evaluations_to_reach(g, r["final_best"])
            reach.append(
                {
                    "seed": g["seed"],
                    "rl_final_best": r["final_best"],
                    "rl_evaluations": r["total_evaluations"],
                    "grad_evaluations_to_reach": n,
                    "ratio": None if n is None else r["total_evaluations"] / n,
                    "ratio_forward_equivalent": None if n is None else r["total_evaluations"] / (n * cost["ratio"]),
                }
            )
        summary["grad_vs_rl"] = reach
        ratios = [x["ratio"] for x in reach]
        summary["min_evaluation_ratio"] = None if None in ratios else float(min(ratios))
        fwd = [x["ratio_forward_equivalent"] for x in reach]
        summary["min_evaluation_ratio_forward_equivalent"] = None if None in fwd else float(min(fwd))
        summary["rl_gain_over_unoptimised"] = summary["rl"]["final_best_min"] - start_score
    return {
        "problem": problem.name,
        "description": problem.description,
        "parameters": int(objective.size),
        "budget": budget,
        "gradient_budget": gradient_budget,
        "seeds": [int(s) for s in seeds],
        "cost_convention": (
            "one simulator evaluation = one forward solve (RL) or one value_and_grad (gradient), per ensemble member"
        ),
        "cost": cost,
        "gradient_config": _config_fields(gradient_config),
        "ppo_config": {"epochs": int(ppo_config.epochs), **ppo_config.fingerprint()},
        "rl_scale": scale.tolist(),
        "runs": runs,
        "summary": summary,
    }


def _config_fields(config: GradientConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


def _run_identity(problem: Problem, method: str, seed: int, x0, scale, budget: int, config) -> dict[str, Any]:
    """What a finished run depends on (JSON-ready): reused only when all of it matches."""
    settings = {f: getattr(config, f) for f in config.__dataclass_fields__}
    return json.loads(
        json.dumps(
            {
                "problem": problem.name,
                "method": method,
                "seed": int(seed),
                "budget": int(budget),
                "x0": np.asarray(x0, np.float64).tolist(),
                "scale": np.asarray(scale, np.float64).tolist(),
                "settings": settings,
            },
            default=_json_default,
        )
    )


def _finished_run(path: str, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The finished run saved at `path` if it is the run `identity` describes (a file of another
    problem, budget or setting, or a damaged one, is recomputed and replaced)."""
    try:
        with open(path) as f:
            run = json.load(f)
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) and run.get("identity") == identity else None


def plot_comparison(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Best metric versus simulator evaluations and versus wall time, every seed, as a PNG.

    **Arguments:**

    - `report`: the dictionary returned by `compare`.
    - `path`: the PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"grad": "tab:blue", "rl": "tab:orange"}
    labels = {"grad": "gradient (L-BFGS)", "rl": "PPO baseline"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, runs in report["runs"].items():
        for k, run in enumerate(runs):
            label = labels.get(method, method) if k == 0 else None
            axes[0].plot(run["evaluations"], run["best"], color=colours.get(method), alpha=0.8, label=label)
            axes[1].plot(run["wall_time"], run["best"], color=colours.get(method), alpha=0.8, label=label)
    start = report["summary"]["unoptimised"]
    for ax, xlabel in zip(axes, ("simulator evaluations", "wall time (s, compiled)")):
        ax.axhline(start, color="grey", ls=":", label="unoptimised")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("best metric so far")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle(f"{report['problem']}: {report['parameters']} pulse parameters, seeds {report['seeds']}")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def sim_to_real(
    problem: Problem,
    *,
    ensemble_size: int = 8,
    gradient_config: GradientConfig = GradientConfig(method="lbfgs", max_steps=60, patience=15),
    ppo_config: PPOConfig = PPOConfig(epochs=20),
    rl_budget: int | None = 1000,
    seed: int = 0,
    scale: Any = None,
    temperature: float = 0.005,
) -> dict[str, Any]:
    """Optimise on the nominal model, score on the perturbed "true" one.

    Runs (all from `problem.x0`): gradient on the nominal objective; gradient on the robust
    objective (mean, and soft minimum, over an `ensemble_size`-member ensemble drawn from
    `problem.ensemble_spreads`); PPO fine-tuning on the true model from the nominal optimum;
    gradient on the true model (the reference a perfect model would give). Every optimum is
    scored on the true model, on the training ensemble and on a fresh 32-member test ensemble
    from the same distribution (mean and worst member of each).

    **Arguments:**

    - `problem`: a `Problem` with `ensemble_spreads` and `true_parameters`.
    - `ensemble_size`: training-ensemble members E for the robust objective.
    - `gradient_config`, `ppo_config`, `rl_budget`: the optimisers' settings.
    - `seed`: seeds the ensembles and the RL run.
    - `scale`: RL action unit (default `problem.rl_scale`).
    - `temperature`: τ of the soft-minimum robust objective.

    **Returns:** a JSON-ready dictionary of scores per strategy.
    """
    objective = problem.objective
    network = objective.network
    true_network = network.with_parameters(problem.true_parameters)
    key_train, key_test = jax.random.split(jax.random.key(seed))
    train = sample_ensemble(network, problem.ensemble_spreads, ensemble_size, key_train)
    test = sample_ensemble(network, problem.ensemble_spreads, 32, key_test)
    robust = objective.with_ensemble(train)
    true = objective.with_network(true_network)
    tested = objective.with_ensemble(test)
    scale = np.broadcast_to(np.asarray(problem.rl_scale if scale is None else scale, np.float64), (objective.size,))

    def score(x) -> dict[str, Any]:
        on_train, on_test = robust.report(x), tested.report(x)
        return {
            "nominal": float(objective.report(x)["metric_mean"]),
            "true": float(true.report(x)["metric_mean"]),
            "train_ensemble_mean": on_train["metric_mean"],
            "train_ensemble_worst": on_train["metric_worst"],
            "test_ensemble_mean": on_test["metric_mean"],
            "test_ensemble_worst": on_test["metric_worst"],
            "x": np.asarray(x).tolist(),
        }

    x0 = np.asarray(problem.x0, np.float64)
    out: dict[str, Any] = {
        "problem": problem.name,
        "true_parameters": problem.true_parameters,
        "ensemble_spreads": problem.ensemble_spreads,
        "ensemble_size": ensemble_size,
    }
    out["unoptimised"] = score(x0)
    nominal = gradient_optimize(objective, x0, gradient_config)
    out["grad_nominal"] = {**score(nominal.best_x), "evaluations": nominal.evaluations}
    rob = gradient_optimize(robust, x0, gradient_config)
    out["grad_robust"] = {**score(rob.best_x), "evaluations": rob.evaluations, "aggregate": "mean"}
    soft = gradient_optimize(robust.with_aggregate("softmin", temperature), x0, gradient_config)
    out["grad_robust_softmin"] = {
        **score(soft.best_x),
        "evaluations": soft.evaluations,
        "aggregate": f"softmin, temperature {temperature}",
    }
    if rl_budget:
        fine = ppo_optimize(
            batch_reward(true), np.asarray(nominal.best_x), scale, ppo_config, jax.random.key(seed), budget=rl_budget
        )
        out["rl_finetune_on_true"] = {
            **score(fine.best_x),
            "evaluations": int(fine.evaluations),
            "start": "grad_nominal",
        }
    ideal = gradient_optimize(true, x0, gradient_config)
    out["grad_on_true_reference"] = {**score(ideal.best_x), "evaluations": ideal.evaluations}
    return out


def write_json(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a report as indented JSON (atomically, never through a symlink)."""
    write_text_atomic(path, json.dumps({**data, "written_by": provenance()}, indent=1, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.generic, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
