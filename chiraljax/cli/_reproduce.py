"""`chiraljax reproduce`: the experiment's protocols end to end on a preset, with a report
(the pipeline is `chiraljax.experiment._reproduce.run_reproduce`)."""

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

_HELP = (
    "Reproduce the chiral-interconnect experiment on a preset: directional emission both ways, state "
    "transfer, receiver pulse shaping (gradient and reinforcement learning on one budget of simulator "
    "evaluations), the W state both ways with the best receiver drive, its error budget and a hardware "
    "sweep. Prints modelled against measured values and writes results.json, report.md and figures to --out."
)


def _print_table(results: dict[str, Any], console: Console) -> None:
    table = Table(title=f"chiraljax reproduce: preset {results['preset']}")
    table.add_column("quantity")
    table.add_column("model", justify="right")
    table.add_column("paper (measured)", justify="right")
    for row in results["table"]:
        table.add_row(row["quantity"], f"{row['model']:.3f}", row["paper"])
    console.print(table)
    opt = results.get("optimisation", {})
    if opt.get("methods"):
        ot = Table(title=f"Receiver shaping (start: absorption efficiency {opt['start']:.3f})")
        for column in ("method", "direction", "evaluations", "best absorption efficiency", "seconds"):
            ot.add_column(column, justify="left" if column in ("method", "direction") else "right")
        for m in opt["methods"]:
            ot.add_row(m["method"], m["direction"], str(m["evaluations"]), f"{m['value']:.3f}", f"{m['seconds']:.1f}")
        console.print(ot)
    budget = results.get("error_budget")
    if budget:
        bt = Table(title=f"W-state error budget (1 - F = {budget['total']:.3f}, {budget['receiver_drive']})")
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
    quick: bool = typer.Option(False, "--quick", help="Smoke test: fewer points; no shaping, error budget or sweep."),
    budget: int = typer.Option(120, "--budget", min=20, help="Simulator evaluations for each shaping run."),
) -> None:
    from chiraljax.experiment._reproduce import run_reproduce

    console = Console(stderr=True)
    results = run_reproduce(preset, out, quick, console, budget)
    _print_table(results, Console())
    Console().print(
        f"wrote {out / 'results.json'}, {out / 'report.md'} and figures ({results['timing']['total']:.0f} s)"
    )


def register(app: typer.Typer) -> None:
    app.command("reproduce", help=_HELP)(reproduce_command)
