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

**What PPO reports.** Two results per run: the best candidate it sampled (`final_best`, scored
and selected by the exact reward; with shot noise an experiment could not select it, since it
sees only the measured rewards) and its final policy mean `x0 + scale ⊙ μ_θ` (`final_mean`,
the pulse it would deploy, scored exactly once for the report, outside the budget). With
`n_shots`, PPO learns from rewards measured with that many shots per candidate,
`Binomial(n_shots, r) / n_shots`; the gradient method has no shots: it differentiates the
model, whose values are exact.

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

from chiraljax._errors import ValidationError, require
from chiraljax._files import save_figure, write_text_atomic
from chiraljax._precision import real_dtype
from chiraljax._provenance import provenance

from ._gradient import GradientConfig, gradient_optimize, measure_cost_ratio, value_and_grad
from ._objectives import Objective, sample_ensemble
from ._ppo import PPOConfig, ppo_optimize
from ._problems import Problem
from ._results import OptimizeResult

__all__ = ["batch_reward", "compare", "plot_comparison", "sim_to_real", "write_json"]

_JITTER = 0.02
#: Steps of the default L-BFGS run: at least one evaluation a step, so a budget up to this is
#: never cut by the step count (a larger budget raises it to the budget).
_GRADIENT_STEPS = 10_000
SHOTS_NOTE = (
    "shot noise applies to PPO only: it learns from rewards measured with n_shots shots per candidate; "
    "the gradient method differentiates the model and has no measurement"
)
RESULTS_NOTE = (
    "PPO: final_best is the best candidate sampled, selected and scored with the exact reward (with shot noise "
    "an experiment could not select it); final_mean is the exact score of the final policy mean, the pulse PPO "
    "would deploy (one evaluation for the report, outside the budget)"
)


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
    """The start of seed `seed`: `problem.x0 + 0.02 ξ`, `ξ ~ N(0, 1)` drawn from the seed."""
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
        **result_record(result),
        "total_wall_time": wall,
    }


def result_record(result: OptimizeResult) -> dict[str, Any]:
    """What a report keeps of every run, whatever its method: `final_best` (the best value),
    `total_evaluations`, `stop_reason` and `best_x`, JSON-ready."""
    return {
        "final_best": float(result.best_value),
        "total_evaluations": int(result.evaluations),
        "stop_reason": result.stop_reason,
        "best_x": np.asarray(result.best_x).tolist(),
    }


def default_gradient_config(budget: int) -> GradientConfig:
    """L-BFGS with patience 40 and `max(10000, budget)` steps: a step costs at least one
    evaluation, so the budget (or convergence), never the step count, ends the run."""
    return GradientConfig(method="lbfgs", max_steps=max(_GRADIENT_STEPS, int(budget)), patience=40)


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
        "measured_reward": h.measured_reward.tolist(),
        "wall_time": times,
        **result_record(result),
        "final_mean": float(objective(jnp.asarray(result.final_x))),
        "total_wall_time": times[-1] if times else 0.0,
        "wall_time_note": "NaN for epochs run before a resume",
        "mean_x": np.asarray(result.final_x).tolist(),
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
    gradient_config: GradientConfig | None = None,
    ppo_config: PPOConfig | None = None,
    gradient_budget: int | None = None,
    scale: float | Any = None,
    methods: Sequence[str] = ("grad", "rl"),
    progress: Callable[[str, int, Any], None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the gradient method and the PPO baseline on one problem over several seeds.

    **Arguments:**

    - `problem`: a `Problem` (objective and starting parameters).
    - `budget`: simulator evaluations per run for the RL baseline; PPO spends all of it.
    - `seeds`: one run of each method per seed.
    - `gradient_config`: the gradient method's settings (default: L-BFGS, patience 40, as
      many steps as the budget allows, `default_gradient_config`).
    - `ppo_config`: PPO's settings (default: `PPOConfig.tutorial().with_budget(budget)`).
      Its `n_shots` sets the shot noise of the rewards PPO learns from.
    - `gradient_budget`: evaluations per gradient run (default `budget`); the gradient
      method may stop earlier when it converges (its `stop_reason` says so).
    - `scale`: RL action unit per parameter (default `problem.rl_scale`).
    - `methods`: which of `"grad"`, `"rl"` to run.
    - `progress`: called as `progress(method, seed, step_record)` after every step or epoch.
    - `checkpoint_dir`: folder for per-run checkpoints and finished runs; a repeated call with
      the same arguments skips finished runs and resumes an interrupted one.

    **Returns:** a JSON-ready dictionary: problem, settings actually used, the cost ratio,
    per-seed curves (PPO: best sample and policy mean) and a summary. Raises
    `ValidationError` if PPO could not spend `budget` with `ppo_config` (too few epochs, or a
    last epoch too short to hold two candidates), naming the limit and what to change.
    """
    require(
        isinstance(budget, (int, np.integer)) and not isinstance(budget, bool) and budget >= 1,
        f"budget={budget!r}: must be a positive integer",
    )
    budget = int(budget)
    require(len(seeds) >= 1, "seeds: give at least one seed")
    unknown = [m for m in methods if m not in ("grad", "rl")]
    require(not unknown, f"methods {unknown}: choose from 'grad', 'rl'")
    gradient_budget = budget if gradient_budget is None else int(gradient_budget)
    gradient_config = default_gradient_config(gradient_budget) if gradient_config is None else gradient_config
    require(
        isinstance(gradient_config, GradientConfig),
        f"gradient_config: expected a GradientConfig, got {type(gradient_config).__name__}",
    )
    ppo_config = PPOConfig.tutorial().with_budget(budget) if ppo_config is None else ppo_config
    require(isinstance(ppo_config, PPOConfig), f"ppo_config: expected a PPOConfig, got {type(ppo_config).__name__}")
    if "rl" in methods:
        require_full_budget(ppo_config, budget, "budget")
    objective = problem.objective
    scale = np.broadcast_to(np.asarray(problem.rl_scale if scale is None else scale, np.float64), (objective.size,))
    x_start = np.asarray(problem.x0, np.float64)

    # Compile everything before any timing.
    start_score = float(objective(jnp.asarray(x_start)))
    value_and_grad(objective, x_start)
    if "rl" in methods:
        warm_up = PPOConfig(**{**{f: getattr(ppo_config, f) for f in ppo_config.__dataclass_fields__}, "epochs": 1})
        ppo_optimize(batch_reward(objective), x_start, scale, warm_up, jax.random.key(0))
    cost = measure_cost_ratio(objective, x_start, repeats=5)
    if "grad" in methods:
        warm_up = GradientConfig(**{**config_fields(gradient_config), "max_steps": 2})
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
        summary[method] = {
            **_spread("final_best", [r["final_best"] for r in method_runs]),
            "evaluations_mean": float(np.mean([r["total_evaluations"] for r in method_runs])),
            "wall_time_mean_s": float(np.mean([r["total_wall_time"] for r in method_runs])),
            "stop_reasons": [r["stop_reason"] for r in method_runs],
        }
        if method == "rl":
            summary[method].update(_spread("final_mean", [r["final_mean"] for r in method_runs]))
    if "grad" in runs and "rl" in runs:
        reach = []
        for g, r in zip(runs["grad"], runs["rl"]):
            n = _evaluations_to_reach(g, r["final_best"])
            n_mean = _evaluations_to_reach(g, r["final_mean"])
            reach.append(
                {
                    "seed": g["seed"],
                    "rl_final_best": r["final_best"],
                    "rl_final_mean": r["final_mean"],
                    "rl_evaluations": r["total_evaluations"],
                    "grad_evaluations_to_reach": n,
                    "grad_evaluations_to_reach_rl_mean": n_mean,
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
        "gradient_config": config_fields(gradient_config),
        **ppo_record(ppo_config),
        "rl_scale": scale.tolist(),
        "runs": runs,
        "summary": summary,
    }


def require_full_budget(config: PPOConfig, budget: int, name: str) -> None:
    """Refuse a `budget` that a PPO run with `config` would not spend in full.

    **Arguments:**

    - `config`: the `PPOConfig`.
    - `budget`: the evaluation budget.
    - `name`: how the budget is called where it was given (for the message).

    Raises `ValidationError` naming the limit (`config.epochs x evaluations_per_epoch`, or a
    last epoch too short) and what to change.
    """
    spent = config.evaluations_within(budget)
    if spent == budget:
        return
    if budget > config.max_evaluations:
        raise ValidationError(
            f"{name}={budget}: PPO with epochs={config.epochs} and batch_size={config.batch_size} spends at most "
            f"{config.max_evaluations} evaluations ({config.evaluations_per_epoch} an epoch); give a config with "
            f"epochs={-(-budget // config.evaluations_per_epoch)} (config.with_budget({budget})) or a budget of "
            f"{config.max_evaluations}"
        )
    config.with_budget(budget)  # raises: the last epoch would be too short
    raise ValidationError(f"{name}={budget}: PPO with this config spends {spent}; give a budget of {spent}")


def _spread(name: str, values: Sequence[float]) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    return {
        f"{name}_mean": float(values.mean()),
        f"{name}_min": float(values.min()),
        f"{name}_max": float(values.max()),
    }


def ppo_record(ppo_config: PPOConfig) -> dict[str, Any]:
    """What a report records of PPO's settings: their name, every field, the shots, and the notes
    on shots and on how results are picked."""
    return {
        "ppo_settings": ppo_config.settings_name(),
        "ppo_config": {"epochs": int(ppo_config.epochs), **ppo_config.fingerprint()},
        "shots": None if ppo_config.n_shots is None else int(ppo_config.n_shots),
        "shots_note": SHOTS_NOTE,
        "results_note": RESULTS_NOTE,
    }


def config_fields(config: GradientConfig) -> dict[str, Any]:
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
    """Best metric versus simulator evaluations and versus wall time, every seed, as a PNG;
    for PPO also the exact metric of the policy mean at each epoch (dashed).

    **Arguments:**

    - `report`: the dictionary returned by `compare`.
    - `path`: the PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"grad": "tab:blue", "rl": "tab:orange"}
    labels = {"grad": "gradient (L-BFGS)", "rl": "PPO, best sample"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, runs in report["runs"].items():
        for k, run in enumerate(runs):
            label = labels.get(method, method) if k == 0 else None
            axes[0].plot(run["evaluations"], run["best"], color=colours.get(method), alpha=0.8, label=label)
            axes[1].plot(run["wall_time"], run["best"], color=colours.get(method), alpha=0.8, label=label)
            if "mean_reward" in run:
                label = "PPO policy mean" if k == 0 else None
                for ax, x in zip(axes, (run["evaluations"], run["wall_time"])):
                    ax.plot(x, run["mean_reward"], color=colours.get(method), alpha=0.6, ls="--", label=label)
    start = report["summary"]["unoptimised"]
    for ax, xlabel in zip(axes, ("simulator evaluations", "wall time (s, compiled)")):
        ax.axhline(start, color="grey", ls=":", label="unoptimised")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("metric (best so far; PPO mean dashed)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    shots, settings = report.get("shots"), report.get("ppo_settings")
    noise = (f", PPO {settings} settings" if settings else "") + (f", {shots} shots per candidate" if shots else "")
    fig.suptitle(f"{report['problem']}: {report['parameters']} pulse parameters, seeds {report['seeds']}{noise}")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def sim_to_real(
    problem: Problem,
    *,
    ensemble_size: int = 8,
    gradient_config: GradientConfig = GradientConfig(method="lbfgs", max_steps=60, patience=15),
    ppo_config: PPOConfig | None = None,
    rl_budget: int | None = 1000,
    seed: int = 0,
    rl_seeds: Sequence[int] = (0,),
    scale: Any = None,
    temperature: float = 0.005,
) -> dict[str, Any]:
    """Optimise on the nominal model, score on the perturbed "true" one.

    Runs (all from `problem.x0`): gradient on the nominal objective; gradient on the robust
    objective (mean, and soft minimum, over an `ensemble_size`-member ensemble drawn from
    `problem.ensemble_spreads`); PPO fine-tuning on the true model from the nominal optimum,
    once per seed of `rl_seeds`; gradient on the true model (the reference a perfect model
    would give). Every optimum is scored on the true model, on the training ensemble and on a
    fresh 32-member test ensemble from the same distribution (mean and worst member of each).
    The gradient runs are deterministic given the ensembles, so only PPO has seeds.

    **Arguments:**

    - `problem`: a `Problem` with `ensemble_spreads` and `true_parameters`.
    - `ensemble_size`: training-ensemble members E for the robust objective.
    - `gradient_config`: the gradient runs' settings.
    - `ppo_config`: PPO's settings (default `PPOConfig.tutorial().with_budget(rl_budget)`);
      its `n_shots` sets the shot noise of the rewards PPO measures on the true device.
    - `rl_budget`: evaluations of each PPO fine-tuning run, spent in full (`None` or 0: no
      fine-tuning).
    - `seed`: seeds the two ensembles.
    - `rl_seeds`: one PPO fine-tuning run per seed.
    - `scale`: RL action unit (default `problem.rl_scale`).
    - `temperature`: τ of the soft-minimum robust objective.

    **Returns:** a JSON-ready dictionary of scores per strategy and the settings used. For
    PPO: per seed, the scores of the best candidate sampled and of the final policy mean; at
    the top level of `rl_finetune_on_true`, the best candidates' scores averaged over the
    seeds. Raises `ValidationError` if PPO could not spend `rl_budget` with `ppo_config`.
    """
    require(
        isinstance(ensemble_size, (int, np.integer)) and not isinstance(ensemble_size, bool) and ensemble_size >= 1,
        f"ensemble_size={ensemble_size!r}: must be a positive integer",
    )
    require(
        len(rl_seeds) >= 1 and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in rl_seeds),
        f"rl_seeds={rl_seeds!r}: give at least one integer seed",
    )
    if rl_budget:
        ppo_config = PPOConfig.tutorial().with_budget(rl_budget) if ppo_config is None else ppo_config
        require(isinstance(ppo_config, PPOConfig), f"ppo_config: expected a PPOConfig, got {type(ppo_config).__name__}")
        require_full_budget(ppo_config, rl_budget, "rl_budget")
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
        "ensemble_seed": int(seed),
        "gradient_config": config_fields(gradient_config),
        "temperature": temperature,
    }
    if rl_budget:
        out.update(
            {
                "rl_budget": int(rl_budget),
                "rl_seeds": [int(k) for k in rl_seeds],
                **ppo_record(ppo_config),
                "rl_scale": scale.tolist(),
            }
        )
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
        runs = []
        for rl_seed in rl_seeds:
            fine = ppo_optimize(
                batch_reward(true),
                np.asarray(nominal.best_x),
                scale,
                ppo_config,
                jax.random.key(int(rl_seed)),
                budget=int(rl_budget),
            )
            runs.append(
                {
                    "seed": int(rl_seed),
                    "evaluations": int(fine.evaluations),
                    "stop_reason": fine.stop_reason,
                    "best": score(fine.best_x),
                    "policy_mean": score(fine.final_x),
                }
            )
        names = [k for k in runs[0]["best"] if k != "x"]
        out["rl_finetune_on_true"] = {
            **{k: float(np.mean([r["best"][k] for r in runs])) for k in names},
            "policy_mean": {k: float(np.mean([r["policy_mean"][k] for r in runs])) for k in names},
            "evaluations": int(rl_budget),
            "start": "grad_nominal",
            "averaged_over": "the seeds of runs (best candidate at the top level, final policy mean under policy_mean)",
            "runs": runs,
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
