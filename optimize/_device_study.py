r"""The device study: absorption efficiency against device shots for three ways of working.

For each hidden device (drawn from the prior with `draw_device(nominal, d)`, `d` in
`devices`) and each seed, every method of `chiraljax.optimize._device_methods` starts from
the scripted drive with the same shot budget on its own `SimulatedDevice` (same hidden
parameters, independent shot noise). Written into `out`:

- `runs/device<d>-<method>-seed<s>.json`: each finished run (atomically; a repeated command
  reads finished runs back and repeats only unfinished ones);
- `study.json`: settings, the hidden devices, every run, and a summary per device and method
  (final absorption efficiency, shots to reach the target, the ratio of the best model-free
  method's shots to the model-based loop's);
- `study.png`: efficiency against shots, one panel per device;
- `waveform.npz` and `waveform.csv`: the model-based pulse of the first device and seed, as
  the AWG's samples (`chiraljax.optimize._awg.save_waveform`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from chiraljax._errors import require
from chiraljax._files import require_writable, save_figure, write_text_atomic
from chiraljax._provenance import provenance

from . import _device_methods as device_methods
from ._awg import save_waveform
from ._device import PRIOR, DeviceModel, SimulatedDevice, draw_device
from ._device_methods import DeviceRun, ModelBasedSettings
from ._ppo import PPOConfig

__all__ = ["STUDY_METHODS", "TARGET", "device_study"]

STUDY_METHODS = ("model-based", "cmaes", "nelder-mead", "ppo", "ppo-tutorial")
MODEL_FREE = ("cmaes", "nelder-mead", "ppo", "ppo-tutorial")
#: The PPO settings of the method "ppo-tutorial" (quantum-control-rl's tutorial; epochs follow the budget).
TUTORIAL_PPO = PPOConfig.named("tutorial", epochs=10**6)
#: The absorption efficiency the study asks each method to reach (the paper's "above 60 %").
TARGET = 0.60
_FORMAT = "chiraljax-device-run"
_VERSION = 1


def _run_method(method: str, device, model, x0, budget: int, seed: int, shots: int, ppo: PPOConfig, say) -> DeviceRun:
    if method == "model-based":
        return device_methods.model_based_on_device(
            device, model, x0, budget, seed, settings=ModelBasedSettings(), progress=say
        )
    if method == "cmaes":
        return device_methods.cmaes_on_device(device, model, x0, budget, seed, shots_per_evaluation=shots)
    if method == "nelder-mead":
        return device_methods.nelder_mead_on_device(device, model, x0, budget, seed, shots_per_evaluation=shots)
    config = TUTORIAL_PPO if method == "ppo-tutorial" else ppo
    return device_methods.ppo_on_device(device, model, x0, budget, seed, config=config, shots_per_evaluation=shots)


def device_study(
    out: str | os.PathLike,
    *,
    devices: tuple[int, ...] = (1, 2),
    seeds: int = 3,
    budget: int = 600_000,
    shots_per_evaluation: int = 1000,
    methods: tuple[str, ...] = STUDY_METHODS,
    ppo_config: PPOConfig | None = None,
    model: DeviceModel | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the study (module docstring) and write it into `out`.

    **Arguments:**

    - `out`: output folder (created if missing).
    - `devices`: seeds of the hidden devices drawn from the prior.
    - `seeds`: runs per method and device (seeds 0 .. seeds - 1).
    - `budget`: device shots per run, the same for every method.
    - `shots_per_evaluation`: shots per candidate of the model-free methods.
    - `methods`: a subset of `STUDY_METHODS`.
    - `ppo_config`: PPO settings of the method "ppo" (default: `PPOConfig.hardware()`, the
      hardware script's, with epochs left to the budget); "ppo-tutorial" runs the tutorial's.
    - `model`: the `DeviceModel` (default: the `paper` preset's transfer).
    - `progress`: called with a line of text as runs start and finish.

    **Returns:** the report written to `out/study.json`.
    """
    unknown = [m for m in methods if m not in STUDY_METHODS]
    require(
        not unknown, f"device study: unknown method(s) {', '.join(unknown)}; choose from {', '.join(STUDY_METHODS)}"
    )
    require(len(methods) >= 1, "device study: give at least one method")
    require(isinstance(seeds, int) and seeds >= 1, f"--seeds {seeds!r}: at least 1")
    require(
        len(devices) >= 1 and all(isinstance(d, int) and d >= 0 for d in devices),
        f"devices {devices!r}: non-negative integers",
    )
    require(
        isinstance(shots_per_evaluation, int) and shots_per_evaluation >= 1,
        f"shots per evaluation {shots_per_evaluation!r}: a positive integer",
    )
    minimum = ModelBasedSettings().first_round() if "model-based" in methods else 3 * shots_per_evaluation
    require(
        isinstance(budget, int) and budget >= minimum,
        f"--budget {budget!r}: the device study needs at least {minimum} shots per run",
    )
    out = Path(out)
    require(not out.exists() or out.is_dir(), f"--out {out}: exists and is not a folder")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    require_writable(out / "study.json", f"--out {out}")
    say = progress or (lambda line: None)
    model = DeviceModel() if model is None else model
    ppo = PPOConfig.named("hardware", epochs=10**6) if ppo_config is None else ppo_config
    x0 = np.zeros(model.size)
    nominal = model.nominal
    settings = {
        "preset": model.preset_name,
        "devices": list(devices),
        "seeds": seeds,
        "budget_shots": budget,
        "shots_per_evaluation": shots_per_evaluation,
        "methods": list(methods),
        "target": TARGET,
        "ppo": ppo.fingerprint(),
        "ppo_tutorial": TUTORIAL_PPO.fingerprint(),
        "model_based": ModelBasedSettings().__dict__,
        "awg": {"sample_rate_gsps": model.awg.sample_rate, "bits": model.awg.bits, "full_scale": model.awg.full_scale},
    }
    report: dict[str, Any] = {
        "settings": settings,
        "nominal": nominal.as_dict(),
        "prior_std": {k: v.__dict__ for k, v in PRIOR.items()},
        "devices": {},
        "runs": [],
        "provenance": provenance(),
    }
    report["optimum"] = {}
    for d in devices:
        hidden = draw_device(nominal, d)
        report["devices"][str(d)] = hidden.as_dict()
        report["optimum"][str(d)] = _optimum(model, hidden, out / "runs" / f"device{d}-optimum.json", say)
        for method in methods:
            for seed in range(seeds):
                identity = _identity(method, d, seed, hidden, settings)
                path = out / "runs" / f"device{d}-{method}-seed{seed}.json"
                run = _read_run(path, identity)
                if run is None:
                    say(f"device {d}, {method}, seed {seed}: running")
                    device = SimulatedDevice(model, hidden, seed=1000 * d + 100 * STUDY_METHODS.index(method) + seed)
                    run = _run_method(method, device, model, x0, budget, seed, shots_per_evaluation, ppo, say)
                    write_text_atomic(
                        path,
                        json.dumps(
                            {"format": _FORMAT, "version": _VERSION, "identity": identity, "run": run.to_json()}
                        ),
                    )
                    if method == "model-based" and d == devices[0] and seed == 0:
                        waveform = model.waveform(model.samples(np.asarray(run.x)))
                        save_waveform(out / "waveform.npz", waveform)
                        save_waveform(out / "waveform.csv", waveform)
                say(
                    f"device {d}, {method}, seed {seed}: final {run.final:.4f} after {run.shots_used} shots, "
                    f"{TARGET:.2f} reached after {run.shots_to_reach(TARGET)} shots"
                )
                run.method = method  # the study's name (both PPO settings run through ppo_on_device)
                report["runs"].append({"device": d, **run.to_json()})
    report["summary"] = summarize(report["runs"], devices, methods)
    write_text_atomic(out / "study.json", json.dumps(report, indent=1, default=float))
    plot_study(report, out / "study.png")
    return report


def _optimum(model: DeviceModel, hidden, path: Path, say) -> dict[str, Any]:
    """The best absorption efficiency the hidden device allows with the shaped drive (L-BFGS on
    its hidden parameters, from the scripted drive): the ceiling the methods are scored against.
    No method sees it. Cached in `path`."""
    from ._device_methods import FittedAbsorption
    from ._gradient import GradientConfig, gradient_optimize

    identity = {"hidden": hidden.as_dict(), "preset": model.preset_name, "knots": model.size}
    try:
        data = json.loads(path.read_text())
        if data.get("identity") == identity:
            return data["optimum"]
    except (OSError, ValueError):
        pass
    say("the hidden device's own optimum (for scoring only)")
    oracle = FittedAbsorption(model, hidden, model.incident(hidden))
    x0 = np.zeros(model.size)
    best = gradient_optimize(oracle, x0, GradientConfig(method="lbfgs", max_steps=100, patience=15, tolerance=1e-7))
    optimum = {"scripted": float(oracle(x0)), "optimum": float(best.best_value), "evaluations": int(best.evaluations)}
    write_text_atomic(path, json.dumps({"identity": identity, "optimum": optimum}))
    return optimum


def _identity(method: str, d: int, seed: int, hidden, settings: dict) -> dict[str, Any]:
    """What a run depends on: the device, seed, budget and AWG, and its own method's settings
    (a change to one method's settings repeats that method's runs only)."""
    own = {
        "model-based": ("model_based",),
        "ppo": ("ppo", "shots_per_evaluation"),
        "ppo-tutorial": ("ppo_tutorial", "shots_per_evaluation"),
    }.get(method, ("shots_per_evaluation",))
    return {
        "device": d,
        "hidden": hidden.as_dict(),
        "method": method,
        "seed": seed,
        **{k: settings[k] for k in ("preset", "budget_shots", "awg", *own)},
    }


def _read_run(path: Path, identity: dict) -> DeviceRun | None:
    """A finished run with the same identity, or None (missing, damaged or foreign: run again)."""
    try:
        data = json.loads(path.read_text())
        if data.get("format") != _FORMAT or data.get("identity") != json.loads(json.dumps(identity)):
            return None
        return DeviceRun(**data["run"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _reach(run: dict) -> int | None:
    return next((s for s, a in zip(run["shots"], run["absorption"]) if a >= TARGET), None)


def summarize(runs: list[dict], devices, methods) -> dict[str, Any]:
    """Per device and method: final efficiency (mean, min, max over seeds), shots to reach the
    target (per seed; None if never) and their median over seeds (a seed that never reaches it
    counts as infinitely many; None when the median is), and the ratio of the best model-free
    method's median to the model-based loop's (infinite when no model-free median is finite)."""
    summary: dict[str, Any] = {}
    for d in devices:
        rows: dict[str, Any] = {}
        for method in methods:
            mine = [r for r in runs if r["device"] == d and r["method"] == method]
            finals = [r["absorption"][-1] for r in mine]
            reach = [_reach(r) for r in mine]
            median = float(np.median([math.inf if s is None else s for s in reach]))
            rows[method] = {
                "final_mean": float(np.mean(finals)),
                "final_min": float(np.min(finals)),
                "final_max": float(np.max(finals)),
                "shots_used": [r["shots_used"] for r in mine],
                "shots_to_target": reach,
                "median_shots_to_target": None if math.isinf(median) else median,
                "stop_reasons": [r["stop_reason"] for r in mine],
            }
        if "model-based" in rows:
            mb = rows["model-based"]["median_shots_to_target"]
            free = [rows[m]["median_shots_to_target"] for m in MODEL_FREE if m in rows]
            reached_free = [s for s in free if s is not None]
            rows["ratio_best_model_free_to_model_based"] = (
                min(reached_free) / mb if (mb and reached_free) else (math.inf if mb and free else None)
            )
            rows["model_based_ends_at_or_above_model_free"] = all(
                rows["model-based"]["final_mean"] >= rows[m]["final_mean"] for m in MODEL_FREE if m in rows
            )
        summary[str(d)] = rows
    return summary


def plot_study(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Absorption efficiency of the deployable pulse against device shots, one panel per device."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = report["settings"]["devices"]
    colours = {"model-based": "C3", "cmaes": "C0", "nelder-mead": "C2", "ppo": "C1", "ppo-tutorial": "C4"}
    fig, axes = plt.subplots(1, len(devices), figsize=(5.5 * len(devices), 4), squeeze=False)
    for ax, d in zip(axes[0], devices):
        ceiling = report.get("optimum", {}).get(str(d))
        if ceiling:
            ax.axhline(ceiling["optimum"], color="0.4", lw=0.8, ls=":", label="device optimum (hidden)")
            ax.axhline(ceiling["scripted"], color="0.7", lw=0.8, ls=":", label="scripted drive")
        for method in report["settings"]["methods"]:
            for k, run in enumerate(r for r in report["runs"] if r["device"] == d and r["method"] == method):
                keep = np.asarray(run["shots"]) > 0  # the start, before any shot, is the scripted line
                shots = np.asarray(run["shots"], dtype=float)[keep]
                run = {**run, "absorption": np.asarray(run["absorption"])[keep]}
                style = dict(marker="o", ms=4) if method == "model-based" else {}
                ax.plot(
                    shots,
                    run["absorption"],
                    color=colours[method],
                    lw=1,
                    alpha=0.8,
                    label=method if k == 0 else None,
                    **style,
                )
        ax.axhline(TARGET, color="k", lw=0.8, ls="--", label=f"target {TARGET:.2f}")
        ax.set_xscale("log")
        ax.set_xlabel("device shots spent")
        ax.set_ylabel("absorption efficiency (hidden device)")
        ax.set_title(f"hidden device {d}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, path, dpi=120)
    plt.close(fig)


#: The command behind the stored study (`optimize/results/device_study/`).
STUDY_COMMAND = "chiraljax optimize --preset paper --method device-study --budget 600000 --seeds 3 --out optimize/results/device_study"


def stored_summary() -> dict[str, Any] | None:
    """The summary of the stored device study shipped with the package, with a one-paragraph
    `quote` of its outcome (None when the file is absent)."""
    from importlib import resources

    try:
        text = resources.files("chiraljax.optimize").joinpath("results/device_study/study.json").read_text()
        report = json.loads(text)
        summary, settings = report["summary"], report["settings"]
    except (OSError, ValueError, KeyError):
        return None
    parts = []
    for d, rows in summary.items():
        mb = rows.get("model-based", {})
        free = {m: rows[m] for m in MODEL_FREE if m in rows}
        best = min(
            (m for m in free if free[m]["median_shots_to_target"] is not None),
            key=lambda m: free[m]["median_shots_to_target"],
            default=None,
        )
        reach = mb.get("median_shots_to_target")
        text = f"hidden device {d}: model-based {mb.get('final_mean', math.nan):.3f} final"
        text += (
            f", {TARGET:.2f} after {reach:.0f} shots (median of {settings['seeds']} seeds)"
            if reach
            else ", target not reached"
        )
        if best is not None:
            text += (
                f"; best model-free ({best}) {free[best]['final_mean']:.3f} final, {TARGET:.2f} after "
                f"{free[best]['median_shots_to_target']:.0f} shots"
            )
        else:
            text += "; no model-free method reached the target in every seed"
        parts.append(text)
    quote = (
        f"Device study (stored; `{STUDY_COMMAND}`): pulses shaped on hidden devices through {settings['budget_shots']} "
        "device shots per method, efficiency of each method's deployable pulse on the hidden device. "
        + "; ".join(parts)
        + "."
    )
    return {"summary": summary, "settings": settings, "quote": quote}
