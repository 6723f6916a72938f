"""The `reproduce` report: PNG figures (matplotlib, Agg backend) and a markdown summary.

Figures: the drives of the transfer (pulse shapes and couplings, with the frequency shift the
coupler induces), the populations over time, the photon flux of directional emission and
transfer, the W-state fidelity bars beside the measured values, the error budget, the receiver
shaping runs (best absorption efficiency against simulator evaluations) and the hardware sweep
(a heatmap of the W fidelity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from chiraljax._files import save_figure, write_text_atomic  # noqa: E402
from chiraljax.network._pulses import AbstractPulse  # noqa: E402
from chiraljax.solve._result import Result  # noqa: E402

_US = 1e-3  # ns -> us
_MHZ = 1.0 / (2 * np.pi * 1e-3)  # rad/ns -> MHz


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    save_figure(fig, path, dpi=130)
    plt.close(fig)
    return path.name


def plot_pulses(drives: dict[str, AbstractPulse], shift: float, span: tuple[float, float], path: Path) -> str:
    """The drive u(t) of each named pulse (the data qubits' exchange) in MHz over time (us); the
    right axis reads the same curves as the coupler-induced frequency shift delta = shift * u."""
    fine = np.linspace(span[0], span[1], 1500)
    fig, ax = plt.subplots(figsize=(6.6, 3.8))
    styles = iter(["-", "--", "-", ":"])
    for label, pulse in drives.items():
        u = np.asarray(jax.vmap(pulse)(jnp.asarray(fine)))
        ax.plot(fine * _US, np.abs(u) * _MHZ, next(styles, "-"), label=label)
    ax.set_xlabel("time (us)")
    ax.set_ylabel("exchange |g(t)| / 2pi (MHz)")
    ax.set_title("Transfer drives: emission, scripted and shaped time-reversed absorption", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    if shift:
        right = ax.twinx()
        lo, hi = ax.get_ylim()
        right.set_ylim(lo * shift, hi * shift)
        right.set_ylabel(f"coupler shift delta / 2pi (MHz), shift = {shift:g}")
    return _save(fig, path)


def plot_populations(result: Result, groups: dict[str, tuple[str, ...]], path: Path, title: str) -> str:
    """Summed excitation of each group of emitters over time."""
    ts = np.asarray(result.ts) * _US
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, names in groups.items():
        ax.plot(ts, sum(np.asarray(result.population(n)) for n in names), label=label)
    ax.set_xlabel("time (us)")
    ax.set_ylabel("population")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_flux(results: dict[str, Result], path: Path) -> str:
    """Photon flux out of the right and left ends (per us) for each named run."""
    fig, axes = plt.subplots(1, len(results), figsize=(4.0 * len(results), 3.4), sharey=True, squeeze=False)
    for ax, (label, res) in zip(axes[0], results.items()):
        ts = np.asarray(res.ts) * _US
        for end, style in (("right", "-"), ("left", "--")):
            ax.plot(ts, np.asarray(res.flux(end)) / _US, style, label=f"out {end}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("time (us)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("photon flux (1/us)")
    axes[0][0].legend(frameon=False)
    return _save(fig, path)


def plot_w_bars(modelled: dict[str, dict[str, float]], measured: dict[str, tuple[float, float]], path: Path) -> str:
    """Bars of the modelled W fidelities ({series: {direction: F}}) beside the measured ones
    (with their errors), per direction of the photon."""
    labels = ["left", "right"]
    x = np.arange(len(labels))
    series = list(modelled) + ["measured (paper)"]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for k, name in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        if name in modelled:
            values = [modelled[name].get(d, np.nan) for d in labels]
            bars = ax.bar(x + offset, values, width, label=f"model, {name}")
        else:
            meas = [measured.get(d, (np.nan, 0.0)) for d in labels]
            values = [m[0] for m in meas]
            bars = ax.bar(x + offset, values, width, yerr=[m[1] for m in meas], capsize=4, label=name, color="0.35")
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.axhspan(0.55, 0.70, color="grey", alpha=0.12, label="target band 0.55-0.70")
    ax.set_xticks(x, [f"photon travelling {d}" for d in labels])
    ax.set_ylim(0, 1)
    ax.set_ylabel("W-state fidelity")
    ax.legend(frameon=False, fontsize=7, loc="upper left", ncol=2)
    return _save(fig, path)


def plot_shaping(shaping: dict[str, Any], path: Path) -> str:
    """Best absorption efficiency so far against simulator evaluations for the shaping runs
    that recorded a curve (gradient and PPO on one budget), with the scripted start."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for m in shaping["methods"]:
        if "curve" in m:
            ax.plot(m["curve"]["evaluations"], m["curve"]["best"], marker="o", ms=2.5, label=m["method"])
    ax.axhline(shaping["start"], color="grey", ls=":", label="scripted drive")
    ax.set_xscale("log")
    ax.set_xlabel("simulator evaluations")
    ax.set_ylabel("best absorption efficiency so far")
    ax.set_title("Receiver shaping on one budget (photon travelling right)", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_sweep_map(sweep: dict[str, Any], path: Path) -> str:
    """Heatmap of the W fidelity over the two swept hardware parameters, with the contours of
    the paper's band (0.55 and 0.70) and the preset's point."""
    xs = np.asarray(sweep["values"][0], float)
    ys = np.asarray(sweep["values"][1], float) * _MHZ
    grid = np.asarray(sweep["w_fidelity"], float).T  # rows: y, columns: x
    fig, ax = plt.subplots(figsize=(6.2, 4.2))

    def edges(v):
        mid = 0.5 * (v[1:] + v[:-1])
        return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])

    mesh = ax.pcolormesh(edges(xs), edges(ys), grid, cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, label="W-state fidelity")
    lines = ax.contour(xs, ys, grid, levels=[0.55, 0.70], colors="white", linewidths=1.2)
    ax.clabel(lines, fmt="%.2f", fontsize=8)
    ax.plot(sweep["nominal"][0], sweep["nominal"][1] * _MHZ, "r*", ms=12, label="preset")
    ax.set_xlabel(sweep["labels"][0])
    ax.set_ylabel(sweep["labels"][1])
    ax.set_title("W fidelity (photon travelling right, shaped drive held fixed)", fontsize=10)
    ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    return _save(fig, path)


def plot_budget(budget: dict[str, Any], path: Path) -> str:
    """Horizontal bars of the error budget (Shapley shares and the residual)."""
    shares = dict(budget["shares"])
    shares["residual"] = budget["residual"]
    names = list(shares)
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.barh(names, [shares[n] for n in names], color="tab:red")
    ax.invert_yaxis()
    ax.set_xlabel(f"share of the infidelity 1 - F = {budget['total']:.3f}")
    ax.set_title("W-state error budget")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "-" if v is None else str(v)


def write_markdown(path: Path, results: dict[str, Any], figures: dict[str, str]) -> None:
    """The markdown report: comparison table, error budget, optimisation, notes, figures."""
    lines = [
        f"# chiraljax reproduce: preset `{results['preset']}`",
        "",
        results.get("description", ""),
        "",
        f"Preset file: `{results.get('source', '')}` (its comments say which numbers come from the "
        "paper, which are assumptions and which were tuned; tuned: "
        f"{', '.join(results.get('tuned', [])) or 'none'}).",
        "",
        "## Modelled beside measured",
        "",
        "| quantity | model | paper |",
        "|---|---|---|",
    ]
    for row in results["table"]:
        lines.append(f"| {row['quantity']} | {_fmt(row['model'])} | {row['paper']} |")
    budget = results.get("error_budget")
    if budget:
        lines += [
            "",
            f"## Error budget of the W state (photon travelling right, {budget.get('receiver_drive', '')})",
            "",
            "Each source is switched off in all combinations (2^5 runs); its share is the mean gain "
            "from switching it off over all orders (Shapley), so the shares and the residual add up to "
            "the infidelity exactly.",
            "",
            "| source | share of 1 - F | gain if fixed alone |",
            "|---|---|---|",
        ]
        for k, v in budget["shares"].items():
            lines.append(f"| {k} | {v:.4f} | {budget['alone'][k]:.4f} |")
        lines.append(f"| residual (no listed source) | {budget['residual']:.4f} | |")
        lines.append(f"| **total 1 - F** | **{budget['total']:.4f}** | |")
    opt = results.get("optimisation")
    if opt:
        lines += ["", "## Pulse shaping of the receiver", ""]
        if opt.get("note"):
            lines.append(opt["note"])
        if opt.get("methods"):
            lines += [
                "",
                f"Start (scripted drive): absorption efficiency {opt['start']:.3f}.",
                "",
                "| method | photon travelling | simulator evaluations | best absorption efficiency | seconds |",
                "|---|---|---|---|---|",
            ]
            for m in opt["methods"]:
                lines.append(
                    f"| {m['method']} | {m['direction']} | {m['evaluations']} | {m['value']:.3f} | {m['seconds']:.1f} |"
                )
    sweep = results.get("sweep")
    if sweep:
        fid = np.asarray(sweep["w_fidelity"])
        lines += [
            "",
            "## Hardware sweep",
            "",
            f"W fidelity (photon travelling right, the best receiver drive held fixed) on a "
            f"{fid.shape[0]} x {fid.shape[1]} grid of `{sweep['parameters'][0]}` (link power transmission, "
            f"{min(sweep['values'][0]):.2f} to {max(sweep['values'][0]):.2f}) and `{sweep['parameters'][1]}` "
            f"(receiver detuning, {min(sweep['values'][1]) * _MHZ:+.2f} to {max(sweep['values'][1]) * _MHZ:+.2f} "
            f"MHz x 2pi): from {fid.min():.3f} to {fid.max():.3f}; inside the 0.55-0.70 band at "
            f"{int(((fid >= 0.55) & (fid <= 0.70)).sum())} of {fid.size} points.",
        ]
    timing = results.get("timing")
    if timing:
        lines += ["", "## Run time", "", ", ".join(f"{k} {v:.0f} s" for k, v in timing.items()) + "."]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in results.get("notes", [])]
    lines += ["", "## Figures", ""]
    for caption, name in figures.items():
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    write_text_atomic(path, "\n".join(lines) + "\n")
