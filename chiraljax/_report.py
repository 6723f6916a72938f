"""The `reproduce` report: PNG figures (matplotlib, Agg backend) and a markdown summary.

Figures: the drives of the transfer (pulse shapes and couplings), the populations over time,
the photon flux of directional emission and transfer, the W-state fidelity bars beside the
measured values, and the error budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._network import Network  # noqa: E402
from ._result import Result  # noqa: E402

_US = 1e-3  # ns -> us
_MHZ = 1.0 / (2 * np.pi * 1e-3)  # rad/ns -> MHz


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path.name


def plot_pulses(network: Network, result: Result, drives: dict[str, str], path: Path) -> str:
    """Drive u(t) of each named control (sender and receiver) in MHz over time (us)."""
    ts = np.asarray(result.ts)
    fine = np.linspace(ts[0], ts[-1], 1500)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, control in drives.items():
        u = np.asarray([complex(network.controls[control](t)) for t in fine])
        ax.plot(fine * _US, np.abs(u) * _MHZ, label=label)
    ax.set_xlabel("time (us)")
    ax.set_ylabel("coupling |g(t)| / 2pi (MHz)")
    ax.set_title("Transfer: emission drive and time-reversed absorption drive")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
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


def plot_w_bars(modelled: dict[str, float], measured: dict[str, tuple[float, float]], path: Path) -> str:
    """Bars of the modelled W fidelities beside the measured ones (with their errors)."""
    labels = list(modelled)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    ax.bar(x - 0.2, [modelled[k] for k in labels], 0.4, label="model")
    meas = [measured.get(k, (np.nan, 0.0)) for k in labels]
    ax.bar(x + 0.2, [m[0] for m in meas], 0.4, yerr=[m[1] for m in meas], capsize=4, label="measured (paper)")
    ax.axhspan(0.55, 0.70, color="grey", alpha=0.12, label="target band")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("W-state fidelity")
    ax.legend(frameon=False, fontsize=8, loc="upper right")
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
    lines = [f"# chiraljax reproduce: preset `{results['preset']}`", "",
             results.get("description", ""), "",
             f"Preset file: `{results.get('source', '')}` (its comments say which numbers come from the "
             "paper, which are assumptions and which were tuned; tuned: "
             f"{', '.join(results.get('tuned', [])) or 'none'}).", "",
             "## Modelled beside measured", "", "| quantity | model | paper |", "|---|---|---|"]
    for row in results["table"]:
        lines.append(f"| {row['quantity']} | {_fmt(row['model'])} | {row['paper']} |")
    budget = results.get("error_budget")
    if budget:
        lines += ["", "## Error budget of the W state (photon travelling right)", "",
                  "Each source is switched off in all combinations (2^5 runs); its share is the mean gain "
                  "from switching it off over all orders (Shapley), so the shares and the residual add up to "
                  "the infidelity exactly.", "", "| source | share of 1 - F | gain if fixed alone |", "|---|---|---|"]
        for k, v in budget["shares"].items():
            lines.append(f"| {k} | {v:.4f} | {budget['alone'][k]:.4f} |")
        lines.append(f"| residual (no listed source) | {budget['residual']:.4f} | |")
        lines.append(f"| **total 1 - F** | **{budget['total']:.4f}** | |")
    opt = results.get("optimisation")
    if opt:
        lines += ["", "## Pulse shaping of the receiver", ""]
        if opt.get("note"):
            lines.append(opt["note"])
        for m in opt.get("methods", []):
            lines.append(f"- {m['method']}: absorption efficiency {m['absorption_efficiency']:.3f} after "
                         f"{m['evaluations']} simulator evaluations ({m['seconds']:.1f} s)")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in results.get("notes", [])]
    lines += ["", "## Figures", ""]
    for caption, name in figures.items():
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    path.write_text("\n".join(lines) + "\n")
