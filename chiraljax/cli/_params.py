"""`chiraljax params FILE`: the parameter names of a network file, for sweeps and `with_parameters`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

_HELP = (
    "List every parameter of the network in FILE under the name a sweep spec, --at of plot and "
    "Network.with_parameters accept, with its current value, its physical range and its units.\n\n"
    "Derived names (links.N.loss_db, emitters.X.t1) set the base parameter shown in the last "
    "column. A '*' in place of a name sweeps every match (emitters.*.dephasing)."
)


def _number(value) -> str:
    if isinstance(value, complex):
        return f"{value.real:.6g}" if value.imag == 0 else f"{value.real:.6g}{value.imag:+.6g}j"
    if isinstance(value, list):
        return json.dumps(value)
    return f"{value:.6g}"


def _range(low, high) -> str:
    if low is None and high is None:
        return "any"
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


def params_command(
    network_file: Path = typer.Argument(
        ..., metavar="FILE", show_default=False, help="Network file, *.toml or *.json."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON (one object per parameter)."),
) -> None:
    """List a network file's parameters with values, ranges and units."""
    from chiraljax.network._network_io import load_network
    from chiraljax.sweeps._sweep_model import parameter_table

    network, _ = load_network(network_file)
    rows = parameter_table(network)
    if as_json:
        print(
            json.dumps(
                [
                    {**row, "value": _number(row["value"]) if isinstance(row["value"], complex) else row["value"]}
                    for row in rows
                ],
                indent=1,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"parameters of {network_file}", title_justify="left")
    table.add_column("name", no_wrap=True)
    for column, justify in (("value", "right"), ("range", "left"), ("units", "left"), ("sets", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(
            row["name"], _number(row["value"]), _range(row["low"], row["high"]), row["units"] or "", row["sets"] or ""
        )
    Console(highlight=False).print(table)


def register(app: typer.Typer) -> None:
    """Add the `params` command to the chiraljax app."""
    app.command("params", help=_HELP)(params_command)
