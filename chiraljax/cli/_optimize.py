"""`chiraljax optimize --preset NAME --method grad|rl|compare|sim-to-real ...`: pulse shaping."""

from __future__ import annotations

from pathlib import Path

import typer

_HELP = (
    "Shape the receiver's pulses of a transfer problem by gradient (L-BFGS through the "
    "differentiable simulator), by the model-free PPO baseline, or compare both on equal budgets "
    "of simulator evaluations over several seeds (JSON report and PNG plot in --out). "
    "'sim-to-real' optimises on the nominal model and scores on a perturbed one, with and "
    "without the robust (ensemble) objective, plus RL fine-tuning on the perturbed model.\n\n"
    "PPO spends the whole --budget (its epochs are sized to it) and reports both the best candidate it "
    "sampled and the exact score of its final policy mean, the pulse it would deploy. --shots N makes PPO "
    "learn from rewards measured with N shots per candidate; the gradient method has no shots (it "
    "differentiates the model).\n\n"
    "'device-study' shapes the receiver's drive on hidden devices that answer in single shots: PPO, CMA-ES, "
    "Nelder-Mead and the model-based loop (calibrate, fit, shape by gradient, verify) on the same budget of "
    "--budget device shots per run (--shots: shots per candidate of the model-free methods, default 1000).\n\n"
    "Checkpoints are written to OUT/checkpoints after every step; the same command resumes an "
    "interrupted run."
)

_EPILOG = "Exit codes: 0 ok, 2 bad input (one-line reason on stderr), 1 failure during the run."


def optimize_command(
    preset: str = typer.Option(
        ..., "--preset", help="Problem: paper (the paper preset's transfer), ideal or distorted."
    ),
    method: str = typer.Option(
        "compare", "--method", help="grad, rl, compare, sim-to-real or device-study (--budget in device shots)."
    ),
    budget: int = typer.Option(
        ..., "--budget", help="Simulator evaluations per run (sim-to-real: per RL fine-tuning run); PPO spends all."
    ),
    seeds: int = typer.Option(
        3, "--seeds", help="Number of seeds (runs per method; sim-to-real: RL fine-tuning runs)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    gradient_budget: int | None = typer.Option(
        None, "--gradient-budget", help="Evaluations per gradient run in a comparison (default: --budget)."
    ),
    shots: int | None = typer.Option(
        None,
        "--shots",
        help="PPO learns from rewards measured with this many shots per candidate (default: exact rewards).",
    ),
    ppo_settings: str | None = typer.Option(
        None,
        "--ppo-settings",
        help="PPO's named settings: tutorial (default; batch 50, lr 2.5e-3) or hardware (batch 10, lr 1e-3).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
) -> None:
    """Optimise pulses and write the report."""
    from rich.console import Console

    from chiraljax.optimize._run import check_arguments, run_optimize

    console = Console(stderr=True, highlight=False)
    last: dict = {}

    def show(name: str, seed: int, record) -> None:
        key = (name, seed)
        best = getattr(record, "best_score", getattr(record, "best_reward", float("nan")))
        if last.get(key) != record.evaluations:
            last[key] = record.evaluations
            console.print(f"{name} seed {seed}: {record.evaluations} evaluations, best {best:.6f}")

    check_arguments(
        preset, method, budget, seeds, out, gradient_budget=gradient_budget, shots=shots, ppo_settings=ppo_settings
    )
    if method == "device-study":
        from chiraljax.optimize._device_study import device_study
        from chiraljax.optimize._run import DEVICE_SHOTS

        config = check_arguments(preset, method, budget, seeds, out, shots=shots, ppo_settings=ppo_settings)
        console.print(f"device study on {preset}: {budget} device shots per run, {seeds} seed(s), output {out}")
        report = device_study(
            out,
            seeds=seeds,
            budget=budget,
            shots_per_evaluation=shots or DEVICE_SHOTS,
            ppo_config=config,
            progress=console.print if progress else None,
        )
        for d, rows in report["summary"].items():
            ratio = rows.get("ratio_best_model_free_to_model_based")
            console.print(
                f"hidden device {d}: "
                + ", ".join(f"{m} {r['final_mean']:.4f}" for m, r in rows.items() if isinstance(r, dict))
                + (f"; shots to {0.6:.2f}: best model-free / model-based = {ratio:.1f}" if ratio else "")
            )
        console.print(f"report written to {out}")
        return
    noise = f", PPO with {shots} shots per candidate" if shots is not None else ""
    console.print(f"optimize {preset} with {method}: budget {budget}, {seeds} seed(s){noise}, output {out}")
    report = run_optimize(
        preset,
        method,
        budget,
        seeds,
        out,
        gradient_budget=gradient_budget,
        shots=shots,
        ppo_settings=ppo_settings,
        progress=show if progress else None,
    )
    summary = report.get("summary")
    if summary is not None:
        for name in ("grad", "rl"):
            if name in summary:
                line = f"{name}: final best {summary[name]['final_best_mean']:.6f}"
                if "final_mean_mean" in summary[name]:
                    line += f", policy mean {summary[name]['final_mean_mean']:.6f}"
                console.print(f"{line} (mean over seeds)")
    elif "final_mean_mean" in report:
        console.print(
            f"rl: final best {report['final_best_mean']:.6f}, policy mean {report['final_mean_mean']:.6f} "
            "(mean over seeds)"
        )
    console.print(f"report written to {out}")


def register(app: typer.Typer) -> None:
    """Add the `optimize` command to the chiraljax app."""
    app.command("optimize", help=_HELP, epilog=_EPILOG)(optimize_command)
