"""`chiraljax reproduce`: the paper's protocols end to end on a preset, with a report.

Steps: directional emission both ways; the state transfer with the receiver's scripted
(unshaped) pulse; a short gradient shaping run and a short reinforcement-learning run on the
same budget of simulator evaluations (when `chiraljax.optimize` is installed); the W state both
ways with the best receiver pulse; the error budget of the W state. Prints the modelled values
beside the measured ones and writes results.json, report.md and PNG figures to --out.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

_HELP = (
    "Reproduce the chiral-interconnect experiment on a preset: directional emission both ways, state "
    "transfer, receiver pulse shaping (gradient and reinforcement learning on one budget), the W state both "
    "ways and its error budget. Prints modelled against measured values and writes results.json, "
    "report.md and figures to --out."
)


def _optimisers_available() -> bool:
    return importlib.util.find_spec("chiraljax.optimize._gradient") is not None


def _shape_receiver(preset, budget: int, seed: int) -> dict[str, Any]:
    """Gradient (Adam) and PPO on the receiver's (log kappa ratio, timing) with one budget."""
    import jax
    import jax.numpy as jnp

    from .. import optimize
    from .._protocols import receiver_objective

    f, x0 = receiver_objective(preset.line, preset.sender, preset.receiver, preset.plan)
    out = []
    t = time.perf_counter()
    grad = optimize.gradient_optimize(jax.jit(f), np.asarray(x0), optimize.GradientConfig(learning_rate=0.1),
                                      budget=budget)
    out.append({"method": "gradient (Adam)", "x": np.asarray(grad.best_x).tolist(), "value": float(grad.best_score),
                "evaluations": int(grad.evaluations), "seconds": time.perf_counter() - t})
    t = time.perf_counter()
    batch = jax.jit(jax.vmap(f))
    ppo = optimize.ppo_optimize(lambda xs: batch(jnp.asarray(xs)), np.asarray(x0), 0.3,
                                optimize.PPOConfig(batch_size=10), jax.random.key(seed), budget=budget)
    out.append({"method": "reinforcement learning (PPO)", "x": np.asarray(ppo.best_x).tolist(),
                "value": float(ppo.best_reward), "evaluations": int(ppo.evaluations),
                "seconds": time.perf_counter() - t})
    return {"methods": out}


def run_reproduce(preset_name: str, out: Path, quick: bool, console: Console, shape: bool = False) -> dict[str, Any]:
    """Run the protocols of `preset_name`, write the report into `out`, return the results."""
    from .._metrics import w_fidelity_halted
    from .._presets import load_preset
    from .._protocols import directional_emission, error_budget, transfer, w_state, with_receiver
    from .. import _report

    preset = load_preset(preset_name)
    require_receiver = preset.receiver is not None
    plan = preset.plan.replace(n_save=101 if quick else 241)
    preset = type(preset)(**{**preset.__dict__, "plan": plan})
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"preset": preset.name, "description": preset.description, "source": preset.source,
                               "tuned": list(preset.tuned), "quick": quick, "notes": [], "table": []}
    measured = preset.measured
    figures: dict[str, str] = {}
    steps = ["emission"] + (["transfer", "shaping", "w_state"] if require_receiver else []) + (
        ["budget"] if require_receiver and not quick else []) + ["report"]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task("starting", total=len(steps))

        def step(label):
            progress.update(task, description=label)

        step("directional emission (right, left)")
        emission = {d: directional_emission(preset.line, preset.sender, d, plan) for d in ("right", "left")}
        results["emission"] = {d: {"p_right": e.p_right, "p_left": e.p_left, "directionality": e.directionality}
                               for d, e in emission.items()}
        for d, e in emission.items():
            results["table"].append({"quantity": f"directionality ({d})", "model": e.directionality,
                                     "paper": "> 0.96 (2023 device)"})
        progress.advance(task)
        if require_receiver:
            step("state transfer (scripted receiver pulse)")
            tr = transfer(preset.line, preset.sender, preset.receiver, plan)
            results["transfer"] = {"transfer_efficiency": tr.transfer_efficiency, "incident": tr.incident,
                                   "absorption_efficiency": tr.absorption_efficiency,
                                   "link_transmission": tr.link_transmission}
            progress.advance(task)

            step("receiver pulse shaping")
            best_plan, eps_best = plan, tr.absorption_efficiency
            if quick or not shape:
                results["optimisation"] = {"note": "Not run (pass --shape for the short gradient and "
                                                   "reinforcement-learning runs): the scripted pulses are used."}
            elif not _optimisers_available():
                results["optimisation"] = {"note": "chiraljax.optimize has no gradient shaping installed: the "
                                                   "scripted pulses are used."}
            else:
                try:
                    opt = _shape_receiver(preset, budget=40, seed=0)
                    for m in opt["methods"]:
                        m["absorption_efficiency"] = m["value"] / tr.incident
                    best = max(opt["methods"], key=lambda m: m["value"])
                    if best["value"] > tr.transfer_efficiency:
                        best_plan, eps_best = with_receiver(plan, best["x"]), best["value"] / tr.incident
                    opt["note"] = ("Parameters: the receiver drive's bandwidth and timing, "
                                   "x = (log(kappa_rx/kappa), kappa * t_rx); objective: the transfer efficiency "
                                   "(the incident photon does not depend on x). Same start, same budget.")
                    results["optimisation"] = opt
                except Exception as err:  # the optimisation package is optional; report, don't fail
                    results["optimisation"] = {"note": f"Pulse shaping failed ({type(err).__name__}: {err}); "
                                                       "the scripted pulses are used."}
            results["absorption_efficiency_shaped"] = eps_best
            results["table"].append({"quantity": "absorption efficiency (scripted pulse)",
                                     "model": tr.absorption_efficiency, "paper": ""})
            results["table"].append({"quantity": "absorption efficiency (shaped)", "model": eps_best,
                                     "paper": "> 0.60" if measured else ""})
            results["table"].append({"quantity": "transfer efficiency (end to end)", "model": tr.transfer_efficiency,
                                     "paper": ""})
            progress.advance(task)

            step("W state (right, left)")
            w_right = w_state(preset.line, preset.sender, preset.receiver, best_plan)
            w_left = w_state(preset.line, preset.receiver, preset.sender, best_plan)
            results["w_state"] = {d: {"fidelity": w.fidelity, "chi": w.chi, "kept": w.kept, "received": w.received}
                                  for d, w in (("right", w_right), ("left", w_left))}
            meas = {"right": (measured.get("w_fidelity_right"), measured.get("w_fidelity_right_err")),
                    "left": (measured.get("w_fidelity_left"), measured.get("w_fidelity_left_err"))}
            for d, w in (("left", w_left), ("right", w_right)):
                m = meas[d]
                results["table"].append({"quantity": f"W fidelity ({d})", "model": w.fidelity,
                                         "paper": f"{m[0]:.3f} +- {m[1]:.3f}" if m[0] is not None else ""})
            eta_eps = tr.link_transmission * eps_best
            results["w_state"]["closed_form_eta_eps"] = float(w_fidelity_halted(eta_eps))
            progress.advance(task)

            if not quick:
                step("error budget (32 runs)")
                b = error_budget(preset.line, preset.sender, preset.receiver, best_plan, "w_state")
                results["error_budget"] = {"value": b.value, "ideal": b.ideal, "shares": b.shares, "alone": b.alone,
                                           "residual": b.residual, "total": b.total, "closure": b.closure()}
                progress.advance(task)

        step("figures and report")
        if require_receiver:
            sender, receiver = preset.line.module(preset.sender), preset.line.module(preset.receiver)
            figures["Drives of the transfer: emission (sender) and time-reversed absorption (receiver)"] = \
                _report.plot_pulses(tr.network, tr.result, {f"sender {preset.sender}": f"{preset.sender}.drive",
                                                            f"receiver {preset.receiver}": f"{preset.receiver}.drive"},
                                    out / "pulses.png")
            groups = {f"{preset.sender} storage": sender.storage, f"{preset.sender} waveguide qubits":
                      tuple(q for q in sender.qubits if q not in sender.storage) or sender.storage,
                      f"{preset.receiver} storage": receiver.storage}
            figures["Populations during the transfer"] = _report.plot_populations(
                tr.result, groups, out / "populations.png", "Transfer: excitation over time")
            figures["Populations during the W-state protocol (right)"] = _report.plot_populations(
                w_right.result, groups, out / "populations_w.png", "W state (halted emission): excitation over time")
            figures["Photon flux out of the waveguide ends"] = _report.plot_flux(
                {"emit right": emission["right"].result, "emit left": emission["left"].result,
                 "transfer": tr.result}, out / "flux.png")
            figures["W-state fidelity, model and experiment"] = _report.plot_w_bars(
                {"left": w_left.fidelity, "right": w_right.fidelity},
                {k: v for k, v in meas.items() if v[0] is not None}, out / "w_fidelity.png")
            if "error_budget" in results:
                figures["Error budget of the W state"] = _report.plot_budget(results["error_budget"],
                                                                            out / "error_budget.png")
        else:
            figures["Photon flux out of the waveguide ends"] = _report.plot_flux(
                {"emit right": emission["right"].result, "emit left": emission["left"].result}, out / "flux.png")
        results["notes"] += [
            f"Representation: {preset.line.representation}. In the Markov representation the delays are shifted "
            "out (each module runs on its own clock) and each joint of reflection r counts as the extra loss "
            "1 - |r|^2; echoes between joints are not modelled there.",
            "W fidelity convention: F = <W|rho|W> on the single-excitation block of the four storage qubits, "
            "maximised over the local phase chi between the modules.",
            "The hardware sweep (chiraljax.sweep over loss, mismatch and T1) is not part of this run yet.",
        ]
        results["figures"] = figures
        _report.write_markdown(out / "report.md", results, figures)
        (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2))
        progress.advance(task)
    return results


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def _print_table(results: dict[str, Any], console: Console) -> None:
    table = Table(title=f"chiraljax reproduce: preset {results['preset']}")
    table.add_column("quantity")
    table.add_column("model", justify="right")
    table.add_column("paper (measured)", justify="right")
    for row in results["table"]:
        table.add_row(row["quantity"], f"{row['model']:.3f}", row["paper"])
    console.print(table)
    budget = results.get("error_budget")
    if budget:
        bt = Table(title=f"W-state error budget (1 - F = {budget['total']:.3f})")
        bt.add_column("source")
        bt.add_column("share", justify="right")
        bt.add_column("gain if fixed alone", justify="right")
        for k, v in budget["shares"].items():
            bt.add_row(k, f"{v:.4f}", f"{budget['alone'][k]:.4f}")
        bt.add_row("residual", f"{budget['residual']:.4f}", "")
        console.print(bt)


def reproduce_command(
    preset: str = typer.Option("paper", "--preset", "-p", help="Embedded preset name or a preset .toml file."),
    out: Path = typer.Option(Path("reproduce_out"), "--out", "-o", help="Output folder for the report."),
    quick: bool = typer.Option(False, "--quick", help="Smoke test: fewer points, no shaping, no error budget."),
    shape: bool = typer.Option(False, "--shape", help="Also shape the receiver pulse by gradient and by "
                                                      "reinforcement learning on one budget (slower)."),
) -> None:
    console = Console(stderr=True)
    t = time.perf_counter()
    results = run_reproduce(preset, out, quick, console, shape)
    _print_table(results, Console())
    Console().print(f"wrote {out / 'results.json'}, {out / 'report.md'} and figures "
                    f"({time.perf_counter() - t:.0f} s)")


def register(app: typer.Typer) -> None:
    app.command("reproduce", help=_HELP)(reproduce_command)
