"""`chiraljax simulate FILE`: simulate a network file, print a summary, save the result as JSON."""

import dataclasses
import json
import time
from pathlib import Path

import typer

from chiraljax._errors import require

_HELP = (
    "Simulate the network in FILE over its time window and print a summary.\n\n"
    "The summary lists the final excitation of every emitter (and virtual cavity), the photon number "
    "that left through each output channel ('right', 'left', 'loss:link{i}:{R|L}', 'decay:{emitter}'), "
    "the conservation error, the representation used and the wall time. With --out, the same scalars "
    "and the time traces (t, population:*, flux:*) go to a JSON file."
)

_EPILOG = (
    "Network files are TOML or JSON (docs/network-format.md; schema in chiraljax/schema/"
    "network.schema.json). Exit codes: 0 ok, 2 bad input (missing or unparsable file, schema or "
    "physics validation error, with a one-line reason on stderr), 1 failure during the run."
)


def simulate_command(
    network_file: Path = typer.Argument(
        ..., metavar="FILE", show_default=False, help="Network file, *.toml or *.json."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="RESULT.json",
        help="Write the final scalars and the time traces to this JSON file.",
    ),
    representation: str | None = typer.Option(
        None,
        "--representation",
        "-r",
        metavar="auto|sector|full|delay",
        help="Solver representation; overrides simulation.representation in the file (default 'auto').",
    ),
    t_span: tuple[float, float] | None = typer.Option(
        None, "--t-span", metavar="T0 T1", help="Time window; overrides simulation.t_span in the file."
    ),
    n_save: int | None = typer.Option(
        None, "--n-save", min=2, help="Number of save times; overrides simulation.n_save in the file."
    ),
) -> None:
    """Simulate a network file, print a summary and optionally save the result as JSON."""
    from rich.console import Console

    from chiraljax._files import require_writable, write_text_atomic
    from chiraljax._provenance import provenance
    from chiraljax.network._network_io import load_network
    from chiraljax.solve._simulate import simulate

    network, settings = load_network(network_file)
    overrides = {"representation": representation, "t_span": t_span, "n_save": n_save}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    require(
        settings.t_span is not None,
        f"{network_file}: no time window; give t_span = [t0, t1] in the file's [simulation] table "
        "or --t-span T0 T1 on the command line",
    )
    if out is not None:
        require_writable(out, f"--out {out}", (".json",))
    start = time.perf_counter()
    with Console(stderr=True).status(
        f"simulating {network_file} over t = {settings.t_span[0]:g} .. "
        f"{settings.t_span[1]:g} (compiling on a first run)"
    ):
        result = simulate(network, settings.t_span, **settings.simulate_kwargs())
    scalars = result.scalars()
    wall = time.perf_counter() - start

    console = Console(highlight=False)
    console.print(_summary(network_file, result, scalars, settings.t_span, wall))
    if out is not None:
        payload = {
            "network": str(network_file),
            "representation": result.representation,
            "t_span": [float(x) for x in settings.t_span],
            "wall_time_s": wall,
            "channels": dict(zip(result.channel_names, result.channel_kinds)),
            "scalars": scalars,
            "traces": result.traces(),
            "written_by": provenance(),
        }
        write_text_atomic(out, json.dumps(payload, indent=1) + "\n")
        console.print(f"result written to {out}")


def _summary(path: Path, result, scalars: dict[str, float], t_span, wall: float):
    from rich.console import Group
    from rich.table import Table

    populations = Table(title="final populations", title_justify="left")
    populations.add_column("subsystem")
    populations.add_column("population", justify="right")
    for name in result.names:
        populations.add_row(name, f"{scalars[f'population:{name}']:.8f}")

    outputs = Table(title="photon number out per channel", title_justify="left")
    outputs.add_column("channel")
    outputs.add_column("kind")
    outputs.add_column("output", justify="right")
    for name, kind in zip(result.channel_names, result.channel_kinds):
        if f"output:{name}" in scalars:
            outputs.add_row(name, kind, f"{scalars[f'output:{name}']:.8f}")

    facts = Table.grid(padding=(0, 2))
    for label, value in (
        ("network", str(path)),
        ("representation", result.representation),
        ("t_span", f"[{t_span[0]:g}, {t_span[1]:g}]"),
        ("in flight", f"{scalars['in_flight']:.3e}"),
        ("conservation error", f"{scalars['conservation_error']:.3e}"),
        ("wall time", f"{wall:.2f} s (compilation included)"),
    ):
        facts.add_row(label, value)
    return Group(populations, outputs, facts)


def register(app: typer.Typer) -> None:
    """Add the `simulate` command to the chiraljax app."""
    app.command("simulate", help=_HELP, epilog=_EPILOG)(simulate_command)
